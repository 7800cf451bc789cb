"""Benchmark: what the input path alone costs a step, per-replica slices vs replica slicing.

benchmarks/scale.py found 2 replicas with per-replica slices (t2t_vqem/train/inputs.py)
3-5% slower per step than the old replica slicing (every replica receives the whole
global batch and slices its share). This isolates the input path: the quickstart's
bucketed training batches (translate_grammar_ende, the same global batch of
--batch_tokens) reach 2 replicas of a MirroredStrategy over 2 logical CPUs, each
replica computes only the sum of its slice's tokens, and the host reads the sums.
Timed per step, from taking the batch off the iterator to the host having the sums:

  slices:  ReplicaBatches: 2 next() calls, one per replica slice, placed with
           experimental_distribute_values_from_function (the trainer's path);
  slicing: one next() of the whole batch, given to strategy.run, each replica
           taking rows [i * B / 2, (i + 1) * B / 2) (the old trainer's replica_shard);
  1 replica: one next(), the default strategy (the floor).

The three run in one process in turn, --rounds rounds of --steps steps, order
rotating. The figure to read is each path's median ms per step beside a whole
training step's time on the same stream (BENCHMARKS.md, "Replicas, workers, precision").

  python benchmarks/input_cost.py --data_dir=/tmp/input_cost
"""

import os
import statistics
import time

from absl import app
from absl import flags

flags.DEFINE_string("data_dir", "/tmp/input_cost", "Where the embedded problem's data goes.")
flags.DEFINE_integer("batch_tokens", 2048, "The global batch (the quickstart's).")
flags.DEFINE_integer("rounds", 5, "Rounds; each path runs --steps steps per round.")
flags.DEFINE_integer("steps", 100, "Steps per path per round.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from t2t_vqem import config as config_lib  # pylint: disable=import-outside-toplevel
  from t2t_vqem import constants  # pylint: disable=import-outside-toplevel
  from t2t_vqem import registry  # pylint: disable=import-outside-toplevel
  from t2t_vqem.train import inputs  # pylint: disable=import-outside-toplevel

  config_lib.register_everything()
  config_lib.parse_gin(["transformer_quickstart.gin"], [])
  problem = registry.build_problem("translate_grammar_ende", data_dir=FLAGS.data_dir)
  mirrored = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
  one = tf.distribute.get_strategy()
  tokens = lambda f: tf.reduce_sum(tf.cast(f["targets"] > 0, tf.int32))  # noqa: E731

  slices = inputs.ReplicaBatches(mirrored, problem, FLAGS.batch_tokens, 2, seed=1)

  @tf.function(reduce_retracing=True)
  def run_slices(parts):
    return mirrored.reduce("SUM", mirrored.run(tokens, (slices.place(parts),)), axis=None)

  whole = iter(
    problem.batches(
      constants.TRAIN, FLAGS.batch_tokens, shuffle=True, repeat=True, num_replicas=2, seed=1
    ).prefetch(tf.data.AUTOTUNE)
  )

  def own_rows(features):
    ctx = tf.distribute.get_replica_context()
    size = tf.shape(features["targets"])[0] // 2
    start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * size
    return tokens({"targets": features["targets"][start : start + size]})

  @tf.function(reduce_retracing=True)
  def run_slicing(batch):
    return mirrored.reduce("SUM", mirrored.run(own_rows, (batch,)), axis=None)

  single = iter(
    problem.batches(
      constants.TRAIN, FLAGS.batch_tokens, shuffle=True, repeat=True, seed=1
    ).prefetch(tf.data.AUTOTUNE)
  )

  @tf.function(reduce_retracing=True)
  def run_single(batch):
    return one.run(tokens, (batch,))

  paths = {
    "slices (2 replicas, ReplicaBatches)": lambda: int(run_slices(next(slices))),
    "slicing (2 replicas, whole batch, old)": lambda: int(run_slicing(next(whole))),
    "1 replica": lambda: int(run_single(next(single))),
  }
  times = {name: [] for name in paths}
  for name, fn in paths.items():  # warm-up: tracing every batch shape
    for _ in range(30):
      fn()
  names = list(paths)
  for r in range(FLAGS.rounds):
    for name in names[r % len(names) :] + names[: r % len(names)]:
      for _ in range(FLAGS.steps):
        t0 = time.perf_counter()
        paths[name]()
        times[name].append(time.perf_counter() - t0)
    print(f"round {r + 1}/{FLAGS.rounds} done", flush=True)
  print("\n| input path | median ms/step | p90 ms/step | steps |\n|---|---|---|---|")
  for name, values in times.items():
    values = sorted(values)
    p90 = values[int(0.9 * (len(values) - 1))]
    print(f"| {name} | {1e3 * statistics.median(values):.2f} | {1e3 * p90:.2f} | {len(values)} |")


if __name__ == "__main__":
  app.run(main)
