"""The trainer command killed with SIGKILL at several points, then rerun, ends as a run
never killed, bit for bit.

Each run is the real command (python -m t2t_vqem.cli.trainer) in a subprocess.
One run is killed three times in a row, each time the moment a file it writes
appears, and rerun after each kill: while checkpoint 40's shards are being
written (the rerun resumes from checkpoint 20 beside that partial write), just
after checkpoint 40 is listed (before its evaluation: the rerun evaluates step
40 first), and while the serving SavedModel is written at the end, once its
variables are on disk (the last rerun, already at its last step, exports again
over those leftovers of the killed export). Its last checkpoint's every tensor,
its evaluation history and its export (variables and export_info.json, nothing
left beside it) equal those of a run never killed, made in another process: so
two runs of the same config and seed are bit-identical too.
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
Trainer.export_at_end = True
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


def read(*path):
  with open(os.path.join(*path)) as f:
    return f.read()


def final_state(output_dir):
  """Every tensor of the run's newest checkpoint (weights, Adam slots, data position,
  random state), its evaluation history, its export's variables and export_info.json,
  and what else lies beside the export."""
  path = tf.train.latest_checkpoint(os.path.join(output_dir, "checkpoints"))
  export = os.path.join(output_dir, "export")
  return dict(
    checkpoint=os.path.basename(path),
    tensors=subprocesses.checkpoint_tensors(path),
    history=read(output_dir, "eval_history.csv"),
    export=subprocesses.checkpoint_tensors(os.path.join(export, "variables", "variables")),
    export_info=read(export, "assets.extra", "export_info.json"),
    folder=sorted(name for name in os.listdir(output_dir) if name.startswith("export")),
  )


def assert_same(a, b):
  for part in ("tensors", "export"):
    assert sorted(a[part]) == sorted(b[part]), part
    for name in a[part]:
      np.testing.assert_array_equal(a[part][name], b[part][name], err_msg=name)
  for part in ("checkpoint", "history", "export_info", "folder"):
    assert a[part] == b[part], part


def test_killed_three_times_then_rerun_ends_as_a_run_never_killed(tmp_path):
  tmp = str(tmp_path)
  subprocesses.run(command(tmp, os.path.join(tmp, "unbroken")))
  expected = final_state(os.path.join(tmp, "unbroken"))
  # The checks could fail: the evaluation history holds BLEU and losses at 3 steps, the
  # export the model's weights at step 60 and nothing is left beside it.
  assert expected["history"].count("\n") == 4 and len(expected["tensors"]) > 10
  assert len(expected["export"]) > 10 and '"step": 60' in expected["export_info"]
  assert expected["folder"] == ["export"]

  output_dir = os.path.join(tmp, "killed")
  checkpoints = os.path.join(output_dir, "checkpoints")
  export_variables = os.path.join(output_dir, "export.tmp", "variables", "variables.index")
  # (the newest checkpoint listed after the kill, the moment of the kill)
  kill_points = [
    # Mid checkpoint write: checkpoint 20 listed and evaluated, 40's shards being written.
    ("ckpt-20", lambda: os.path.exists(os.path.join(checkpoints, "ckpt-40_temp"))),
    # Between a checkpoint and its evaluation (the rerun began beside ckpt-40_temp).
    ("ckpt-40", lambda: subprocesses.listed(checkpoints, "ckpt-40")),
    # Mid export, its variables written: the last rerun starts with these leftovers.
    ("ckpt-60", lambda: os.path.exists(export_variables)),
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
