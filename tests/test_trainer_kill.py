"""The trainer command killed with SIGKILL, then rerun, ends as a run never killed; and
two runs of the same config and seed are bit-identical.

Each run is the real command (python -m t2t_vqem.cli.trainer) in a subprocess.
The test waits for a file the run writes (a checkpoint's index, its state
file) and kills the process the moment it appears: between checkpoints, and
while the next checkpoint is being written.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

CONFIG = """
Trainer.model = 'transformer'
Trainer.problem = 'translate_grammar_ende'
Trainer.batch_tokens = 256
Trainer.train_steps = 60
Trainer.checkpoint_every = 20
Trainer.keep_checkpoints = 2
Trainer.eval_every = 20
Trainer.eval_bleu_examples = 4
Trainer.log_every = 10
translate_grammar_ende.num_train = 300
translate_grammar_ende.num_eval = 20
translate_grammar_ende.vocab_size = 300
transformer.hidden_size = 16
transformer.num_layers = 1
transformer.num_heads = 2
transformer.filter_size = 32
transformer.dropout = 0.2
make_optimizer.warmup_steps = 5
"""
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(tmp, output_dir):
  gin_file = os.path.join(tmp, "tiny.gin")
  if not os.path.exists(gin_file):
    with open(gin_file, "w") as f:
      f.write(CONFIG)
  return [
    sys.executable,
    "-m",
    "t2t_vqem.cli.trainer",
    f"--gin_file={gin_file}",
    f"--output_dir={output_dir}",
    f"--data_dir={os.path.join(tmp, 'data')}",
  ]


def environment():
  return dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def run(tmp, output_dir):
  done = subprocess.run(
    command(tmp, output_dir), env=environment(), capture_output=True, text=True, timeout=600
  )
  assert done.returncode == 0, done.stderr[-2000:]


def listed(output_dir, name):
  """Whether the checkpoint state file lists checkpoint `name` (resuming would see it)."""
  try:
    with open(os.path.join(output_dir, "checkpoints", "checkpoint")) as f:
      return f'"{name}"' in f.read()
  except OSError:
    return False


def run_killed_when(tmp, output_dir, seen):
  """Starts the command, SIGKILLs it as soon as seen() holds; True when it was killed."""
  process = subprocess.Popen(
    command(tmp, output_dir),
    env=environment(),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  try:
    while process.poll() is None:
      if seen():
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True
      time.sleep(0.002)
  finally:
    if process.poll() is None:
      process.kill()
  return False


def final_state(output_dir):
  """Every tensor of the run's newest checkpoint (weights, Adam slots, data position,
  random state) and its evaluation history."""
  path = tf.train.latest_checkpoint(os.path.join(output_dir, "checkpoints"))
  reader = tf.train.load_checkpoint(path)
  names = sorted(
    n
    for n, dtype in reader.get_variable_to_dtype_map().items()
    if dtype != tf.variant and "save_counter" not in n
  )
  with open(os.path.join(output_dir, "eval_history.csv")) as f:
    history = f.read()
  return os.path.basename(path), {n: reader.get_tensor(n) for n in names}, history


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
  tmp = str(tmp_path_factory.mktemp("kill"))
  run(tmp, os.path.join(tmp, "unbroken"))
  return tmp, final_state(os.path.join(tmp, "unbroken"))


def assert_same(a, b):
  assert a[0] == b[0]
  assert sorted(a[1]) == sorted(b[1])
  for name in a[1]:
    np.testing.assert_array_equal(a[1][name], b[1][name], err_msg=name)
  assert a[2] == b[2]


def test_same_config_and_seed_give_bit_identical_checkpoints_and_results(unbroken):
  tmp, expected = unbroken
  run(tmp, os.path.join(tmp, "again"))
  assert_same(expected, final_state(os.path.join(tmp, "again")))
  # The check could fail: the evaluation history holds BLEU and losses at 3 steps.
  assert expected[2].count("\n") == 4 and len(expected[1]) > 10


@pytest.mark.parametrize(
  "when",
  [
    "ckpt-20 listed",  # between checkpoints, just after one
    "ckpt-40_temp",  # while ckpt-40's shards are written
    "eval_history.csv",  # inside the first evaluation
  ],
)
def test_killed_then_rerun_ends_as_a_run_never_killed(unbroken, when):
  tmp, expected = unbroken
  output_dir = os.path.join(tmp, "killed-" + when.replace(" ", "-"))
  if when == "ckpt-20 listed":
    seen = lambda: listed(output_dir, "ckpt-20")  # noqa: E731
  else:
    folder = "checkpoints" if when.startswith("ckpt") else ""
    seen = lambda: os.path.exists(os.path.join(output_dir, folder, when))  # noqa: E731
  assert run_killed_when(tmp, output_dir, seen), f"the run ended before {when} was seen"
  # Killed after ckpt-20 was listed: the rerun resumes from it, not from scratch.
  assert listed(output_dir, "ckpt-20") and not listed(output_dir, "ckpt-60")
  run(tmp, output_dir)
  assert_same(expected, final_state(output_dir))
