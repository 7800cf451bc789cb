"""Finding the checkpoints of a run, its output folder given as an absolute or a relative path."""

import os

import pytest
import tensorflow as tf

from t2t_vqem.train import checkpoints


@pytest.mark.parametrize("relative", [True, False])
def test_listed_checkpoints_are_the_files_the_manager_wrote(tmp_path, monkeypatch, relative):
  monkeypatch.chdir(tmp_path)
  directory = "run/checkpoints" if relative else str(tmp_path / "run" / "checkpoints")
  value = tf.Variable(0.0)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=value), directory, max_to_keep=3)
  for step in (1, 2, 3):
    value.assign(float(step))
    manager.save(checkpoint_number=step)
  found = checkpoints.listed(directory)
  assert [os.path.basename(p) for p in found] == ["ckpt-3", "ckpt-2", "ckpt-1"]
  assert all(os.path.exists(p + ".index") for p in found)
  newest = checkpoints.newest_readable(directory)
  assert os.path.samefile(newest + ".index", tmp_path / "run" / "checkpoints" / "ckpt-3.index")
  value.assign(0.0)
  tf.train.Checkpoint(v=value).restore(newest).expect_partial()
  assert float(value) == 3.0
