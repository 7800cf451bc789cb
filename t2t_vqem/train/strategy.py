"""Choice of tf.distribute strategy."""

import json
import os

import gin
import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


@gin.configurable
def make_strategy(name="auto", devices=None):
  """The tf.distribute strategy called `name`.

  Args:
    name: "auto" (MultiWorkerMirroredStrategy when TF_CONFIG names several
      workers; MirroredStrategy over the visible GPUs when there are any; the
      default strategy on a CPU-only machine), "default", "mirrored" (over
      `devices`, or every GPU, or every logical CPU when there is no GPU) or
      "multi_worker".
    devices: device names for "mirrored", e.g. ["CPU:0", "CPU:1"].
  """
  if name not in STRATEGIES:
    raise ValueError(f"unknown strategy {name!r}; accepted: {', '.join(STRATEGIES)}")
  if name == "auto":
    workers = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {}).get("worker", [])
    if len(workers) > 1:
      name = "multi_worker"
    elif tf.config.list_logical_devices("GPU"):
      name = "mirrored"
    else:
      name = "default"
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if devices is None:
    devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
      d.name for d in tf.config.list_logical_devices("CPU")
    ]
  cross_device_ops = None
  if not any("GPU" in d.upper() for d in devices):
    # Between CPU devices a plain reduction is as fast as collectives, and it
    # avoids collective-key clashes between several strategies in one process
    # ("Shape mismatch in the collective instance").
    cross_device_ops = tf.distribute.ReductionToOneDevice()
  return tf.distribute.MirroredStrategy(list(devices), cross_device_ops=cross_device_ops)
