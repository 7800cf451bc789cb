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
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if set(cluster) - {"worker"}:
      raise ValueError(
        f"TF_CONFIG's cluster has tasks {sorted(cluster)}; only 'worker' tasks are "
        "accepted (worker 0 is the chief)"
      )
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


def worker_role(strategy):
  """(number of workers, this worker's index) under `strategy`; (1, 0) on one machine.

  Worker 0 is the chief: it alone writes the run's files (see Trainer).
  """
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return 1, 0
  return resolver.cluster_spec().num_tasks("worker"), resolver.task_id or 0


def barrier(strategy):
  """Returns on each worker once every worker has reached it (one all-reduce)."""
  if strategy.num_replicas_in_sync > 1:
    one = strategy.run(lambda: tf.constant(1.0))
    strategy.reduce(tf.distribute.ReduceOp.SUM, one, axis=None)
