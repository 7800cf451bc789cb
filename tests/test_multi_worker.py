"""Two trainer processes on loopback ports under MultiWorkerMirroredStrategy (TF_CONFIG).

One worker is killed after the first checkpoint (the other is stopped too),
then both are started again: they resume from that checkpoint and finish; only
the chief (worker 0) wrote the run's files; and the chief's last checkpoint
equals a one-process run whose two replicas are fed each worker's batches
(the same global batches), which also shows that each worker's data position
was resumed exactly.
"""

import json
import os
import subprocess

import gin
import numpy as np
import pytest
import subprocesses
import tiny

from t2t_vqem import constants
from t2t_vqem.train import trainer as trainer_lib

CONFIG = tiny.TRANSFORMER + "Trainer.train_steps = 4\nTrainer.checkpoint_every = 2\n"


def start_workers(tmp, output_dir, stderr=subprocess.PIPE):
  ports = subprocesses.free_ports(2)
  cluster = {"worker": [f"localhost:{port}" for port in ports]}
  command = subprocesses.trainer_command(
    os.path.join(tmp, "tiny.gin"), output_dir, os.path.join(tmp, "data")
  )
  return [
    subprocess.Popen(
      command,
      env=subprocesses.environment(
        TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
      ),
      stdout=subprocess.DEVNULL,
      stderr=stderr,
      text=True,
    )
    for i in range(2)
  ]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
  """A 2-worker run killed after checkpoint 2, then rerun to its end: (output_dir, logs)."""
  tmp = str(tmp_path_factory.mktemp("workers"))
  with open(os.path.join(tmp, "tiny.gin"), "w") as f:
    f.write(CONFIG)
  output_dir = os.path.join(tmp, "run")
  chief_dir = os.path.join(output_dir, "checkpoints")
  workers = start_workers(tmp, output_dir, stderr=subprocess.DEVNULL)

  def both_saved():
    return subprocesses.listed(chief_dir, "ckpt-2") and subprocesses.listed(
      os.path.join(chief_dir, "worker-1"), "ckpt-2"
    )

  # Worker 1 killed; the chief cannot go on without it and is stopped as well.
  assert subprocesses.kill_when(workers[1:], both_saved), "the run ended before ckpt-2"
  subprocesses.kill_when(workers[:1], lambda: True)
  assert not subprocesses.listed(chief_dir, "ckpt-4")
  workers = start_workers(tmp, output_dir)
  logs = [w.communicate(timeout=subprocesses.TIMEOUT)[1] for w in workers]
  for w, log in zip(workers, logs):
    assert w.returncode == 0, log[-3000:]
  return tmp, output_dir, logs


def test_both_workers_resume_from_the_last_checkpoint_and_finish(resumed):
  _, output_dir, logs = resumed
  for log in logs:
    assert "with 2 replica(s) from step 2 to 4" in log
  assert "Resumed from " + os.path.join(output_dir, "checkpoints", "ckpt-2") in logs[0]
  assert "Resumed from " + os.path.join(output_dir, "checkpoints", "worker-1", "ckpt-2") in logs[1]


def test_only_the_chief_writes_the_runs_files(resumed):
  _, output_dir, _ = resumed
  assert sorted(os.listdir(output_dir)) == [
    "checkpoints",
    "eval",
    "eval_history.csv",
    "operative_config.gin",
    "run_info.json",
    "train",
  ]
  # One events file in each per run of the command (killed, then rerun): the other
  # worker wrote none (it would have added two more).
  for folder in ("train", "eval"):
    assert len(os.listdir(os.path.join(output_dir, folder))) == 2
  # The final evaluation, once (the other worker took part in it, and wrote nothing).
  with open(os.path.join(output_dir, "eval_history.csv")) as f:
    assert [line.split(",")[:2] for line in f.read().splitlines()[1:]] == [["4", "dev"]]
  # The other worker's folder holds only its checkpoints, with its data position.
  worker = os.path.join(output_dir, "checkpoints", "worker-1")
  assert {name.split(".")[0] for name in os.listdir(worker)} == {"checkpoint", "ckpt-2", "ckpt-4"}


def test_the_chiefs_checkpoint_equals_one_process_on_the_same_global_batches(resumed, tmp_path):
  tmp, output_dir, _ = resumed
  gin.clear_config()
  gin.parse_config(
    CONFIG
    + "make_strategy.name = 'mirrored'\nmake_strategy.devices = ['CPU:0', 'CPU:1']\n"
    + "Trainer.checkpoint_data = False\n"
  )
  try:
    trainer = trainer_lib.Trainer(str(tmp_path), data_dir=os.path.join(tmp, "data"))
    # Replica i gets worker i's batches: its share of the pairs, half the tokens. Only
    # the 4 batches trained on are made: no endless prefetching input pipelines are left
    # running beside the step's tracing, or to be torn down after it.
    shares = [
      trainer.problem.batches(
        constants.TRAIN, 128, shuffle=True, repeat=True, seed=1, shard=(2, i)
      ).take(4)
      for i in range(2)
    ]
    for batches in zip(*shares):
      trainer.train_step(list(batches))
    assert trainer.step == 4
    trainer.save(4)
  finally:
    gin.clear_config()
  model_and_optimizer = lambda name: name.startswith(("model/", "optimizer/"))  # noqa: E731
  expected = subprocesses.checkpoint_tensors(
    os.path.join(tmp_path, "checkpoints", "ckpt-4"), model_and_optimizer
  )
  found = subprocesses.checkpoint_tensors(
    os.path.join(output_dir, "checkpoints", "ckpt-4"), model_and_optimizer
  )
  assert sorted(found) == sorted(expected) and len(found) > 10
  for name in expected:
    np.testing.assert_allclose(found[name], expected[name], rtol=1e-6, atol=1e-7, err_msg=name)
