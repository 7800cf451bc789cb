"""Training batches made per worker and per replica, from a checkpointable iterator.

Worker w of W reads only its share of the training pairs (or pictures):
`Problem.batches(..., shard=(W, w))` keeps every W-th example before any
tokenization, and batches them into batches of batch_tokens / W tokens (or
batch_size / W pictures), each a multiple of the worker's r replicas. Each such
batch is cut into r contiguous slices, one per local replica, and each replica
receives only its own slice. The global batch of a step is the union of the
workers' batches: batch_tokens (batch_size) in all. On one worker this is the
same global batch, cut the same way, as one replica would see (the trainer's
"N replicas follow one replica" property).

tf.distribute's own distributed iterators cannot be checkpointed in TF 2.21, so
each worker keeps a plain tf.data iterator over its stream of replica slices
(slice i of a batch is element r * k + i) and places the r slices of a step on
its replicas with `experimental_distribute_values_from_function`. That iterator
is saved with the checkpoint, so a resumed run sees exactly the batches an
uninterrupted one would.
"""

import tensorflow as tf

from t2t_vqem import constants
from t2t_vqem.train import strategy as strategy_lib


def cut_into_slices(features, parts):
  """A batch {name: [B, ...]} -> dataset of `parts` batches of B / parts rows, in order."""
  cut = lambda x: tf.reshape(x, tf.concat([[parts, -1], tf.shape(x)[1:]], axis=0))  # noqa: E731
  return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(cut, features))


class ReplicaBatches:
  """This worker's training batches, one slice per local replica (see the module docstring).

  Args:
    strategy: the tf.distribute strategy the batches are for.
    problem: the registered problem (its `batches` takes `shard`).
    amount: the global batch amount (tokens or pictures, Problem.batch_amount).
    multiple: every global batch size is a multiple of this (a multiple of the
      strategy's replicas).
    seed: the data order's seed.

  `next()` gives the list of this worker's r slices of the next step (plain
  tensors); `place(slices)` makes them the strategy's per-replica value.
  `iterator` is the checkpointable tf.data iterator.
  """

  def __init__(self, strategy, problem, amount, multiple, seed):
    self.strategy = strategy
    self.num_workers, self.worker = strategy_lib.worker_role(strategy)
    replicas = strategy.num_replicas_in_sync
    self.num_local = replicas // self.num_workers  # this worker's replicas
    if multiple % replicas:
      raise ValueError(f"the batch multiple {multiple} is not a multiple of {replicas} replicas")
    if amount < self.num_workers:
      raise ValueError(f"a global batch of {amount} cannot be shared by {self.num_workers} workers")
    dataset = problem.batches(
      constants.TRAIN,
      amount // self.num_workers,
      shuffle=True,
      repeat=True,
      num_replicas=multiple // self.num_workers,
      seed=seed,
      shard=(self.num_workers, self.worker) if self.num_workers > 1 else None,
    )
    if self.num_local > 1:
      dataset = dataset.flat_map(lambda f: cut_into_slices(f, self.num_local))
    self.dataset = dataset.prefetch(tf.data.AUTOTUNE)
    self.iterator = iter(self.dataset)

  @property
  def element_spec(self):
    """The slices' specs, with every dimension but the last ones of pictures unknown."""
    return [
      tf.nest.map_structure(
        lambda s: tf.TensorSpec([None] + s.shape[1:], s.dtype), self.dataset.element_spec
      )
    ] * self.num_local

  def __iter__(self):
    return self

  def __next__(self):
    return [next(self.iterator) for _ in range(self.num_local)]

  def place(self, slices):
    """This worker's slices -> the per-replica value strategy.run takes (in a tf.function)."""
    if self.strategy.num_replicas_in_sync == 1:
      return slices[0]
    first = self.worker * self.num_local  # the global id of this worker's first replica
    return self.strategy.experimental_distribute_values_from_function(
      lambda ctx: slices[ctx.replica_id_in_sync_group - first]
    )
