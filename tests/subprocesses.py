"""The real commands in subprocesses, for the kill and multi-worker tests."""

import os
import signal
import socket
import subprocess
import sys
import time

import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 600


def trainer_command(gin_file, output_dir, data_dir):
  """The trainer command (python -m t2t_vqem.cli.trainer) on one Gin file."""
  return [
    sys.executable,
    "-m",
    "t2t_vqem.cli.trainer",
    f"--gin_file={gin_file}",
    f"--output_dir={output_dir}",
    f"--data_dir={data_dir}",
  ]


def environment(**extra):
  """This checkout on the path, TensorFlow quiet and on the CPU, plus `extra`."""
  return dict(
    os.environ,
    PYTHONPATH=ROOT,
    PYTHONUNBUFFERED="1",
    TF_CPP_MIN_LOG_LEVEL="2",
    CUDA_VISIBLE_DEVICES="",
    **extra,
  )


def run(command, env=None):
  """Runs `command` to its end and asserts it succeeded; its stderr."""
  done = subprocess.run(
    command, env=env or environment(), capture_output=True, text=True, timeout=TIMEOUT
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stderr


def kill_when(processes, seen):
  """SIGKILLs each of `processes` the moment seen() holds (checked every 2 ms); True when
  they were killed, False when they all ended first."""
  deadline = time.monotonic() + TIMEOUT
  try:
    while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
      if seen():
        for process in processes:
          process.send_signal(signal.SIGKILL)
          process.wait()
        return True
      time.sleep(0.002)
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
        process.wait()
  return False


def listed(checkpoint_dir, name):
  """Whether the checkpoint state file in `checkpoint_dir` lists checkpoint `name`."""
  try:
    with open(os.path.join(checkpoint_dir, "checkpoint")) as f:
      return f'"{name}"' in f.read()
  except OSError:
    return False


def checkpoint_tensors(path, keep=lambda name: True):
  """{name: value} of checkpoint `path`'s tensors (not the data iterator's variant state,
  not the save counter) whose name passes `keep`."""
  reader = tf.train.load_checkpoint(path)
  return {
    name: reader.get_tensor(name)
    for name, dtype in reader.get_variable_to_dtype_map().items()
    if dtype != tf.variant and "save_counter" not in name and keep(name)
  }


def free_ports(count):
  """`count` TCP ports free on the loopback interface just now."""
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports
