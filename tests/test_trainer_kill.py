"""The trainer command killed with SIGKILL at several points, then rerun, ends as a run
never killed, bit for bit.

Each run is the real command (python -m t2t_vqem.cli.trainer) in a subprocess.
One run is killed three times in a row, each time the moment a file it writes
appears, and rerun after each kill: just after checkpoint 20 is listed (before
its evaluation), while checkpoint 40's shards are being written, and just after
checkpoint 40 is listed. Its last checkpoint's every tensor and its evaluation
history equal those of a run never killed, made in another process: so two runs
of the same config and seed are bit-identical too.
"""

import os
import subprocess

import numpy as np
import subprocesses
import tensorflow as tf
import tiny

CONFIG = (
  tiny.TRANSFORMER
  + """
Trainer.train_steps = 60
Trainer.checkpoint_every = 20
Trainer.keep_checkpoints = 2
Trainer.eval_every = 20
Trainer.eval_bleu_examples = 4
Trainer.log_every = 10
transformer.dropout = 0.2
make_optimizer.warmup_steps = 5
"""
)


def command(tmp, output_dir):
  gin_file = os.path.join(tmp, "tiny.gin")
  if not os.path.exists(gin_file):
    with open(gin_file, "w") as f:
      f.write(CONFIG)
  return subprocesses.trainer_command(gin_file, output_dir, os.path.join(tmp, "data"))


def final_state(output_dir):
  """Every tensor of the run's newest checkpoint (weights, Adam slots, data position,
  random state) and its evaluation history."""
  path = tf.train.latest_checkpoint(os.path.join(output_dir, "checkpoints"))
  with open(os.path.join(output_dir, "eval_history.csv")) as f:
    history = f.read()
  return os.path.basename(path), subprocesses.checkpoint_tensors(path), history


def assert_same(a, b):
  assert a[0] == b[0]
  assert sorted(a[1]) == sorted(b[1])
  for name in a[1]:
    np.testing.assert_array_equal(a[1][name], b[1][name], err_msg=name)
  assert a[2] == b[2]


def test_killed_three_times_then_rerun_ends_as_a_run_never_killed(tmp_path):
  tmp = str(tmp_path)
  subprocesses.run(command(tmp, os.path.join(tmp, "unbroken")))
  expected = final_state(os.path.join(tmp, "unbroken"))
  # The check could fail: the evaluation history holds BLEU and losses at 3 steps.
  assert expected[2].count("\n") == 4 and len(expected[1]) > 10

  output_dir = os.path.join(tmp, "killed")
  checkpoints = os.path.join(output_dir, "checkpoints")
  kill_points = [
    ("ckpt-20", lambda: subprocesses.listed(checkpoints, "ckpt-20")),
    ("ckpt-20", lambda: os.path.exists(os.path.join(checkpoints, "ckpt-40_temp"))),
    ("ckpt-40", lambda: subprocesses.listed(checkpoints, "ckpt-40")),
  ]
  for newest, seen in kill_points:
    process = subprocess.Popen(
      command(tmp, output_dir),
      env=subprocesses.environment(),
      stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL,
    )
    assert subprocesses.kill_when([process], seen), "the run ended before its kill point"
    # The rerun resumes from the newest checkpoint listed, not from scratch.
    assert tf.train.latest_checkpoint(checkpoints).endswith(newest)
  subprocesses.run(command(tmp, output_dir))
  assert_same(expected, final_state(output_dir))
