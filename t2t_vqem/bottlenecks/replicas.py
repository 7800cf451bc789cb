"""Cross-replica collectives for bottleneck state under a tf.distribute strategy.

Keras 3 mirrored variables do not synchronise an `assign` made in replica
context, so a bottleneck keeps its replicas identical itself: it all-reduces
its batch statistics before the M step, and broadcasts every random choice
(codebook seeding, dead-code restart) from one replica; then every replica
assigns the same values to its own copy. Collectives never sit inside a
tf.cond (they may not, inside strategy.run).

Random draws take their seeds from a layer's keras.random.SeedGenerator
(`next_seed`), whose state the trainer checkpoints: a resumed run draws what an
unbroken one would. Its state variable (aggregation "none") is advanced by
each replica on its own copy, alike, so it stays identical on all replicas.
"""

import tensorflow as tf


def context():
  """The replica context when more than one replica runs in sync, else None."""
  if not tf.distribute.has_strategy():
    return None
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync == 1:
    return None
  return ctx


def next_seed(generator, per_replica=True):
  """The next stateless seed of a keras.random.SeedGenerator: int32 [2].

  The generator advances one step, as in a keras.random op (on one device the
  seed is the one keras.random would use). With more than one replica in sync,
  per_replica=True folds in the replica id: each replica draws independently
  for its own examples, as one device does for the whole batch; per_replica=False
  gives every replica the same seed (a draw made once per step, a temperature).
  """
  seed = generator.next()
  seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)  # as keras.random
  ctx = context()
  if per_replica and ctx is not None:
    seed = tf.random.experimental.stateless_fold_in(
      seed, tf.cast(ctx.replica_id_in_sync_group, tf.int32)
    )
  return seed


def all_reduce_sum(ctx, tensors):
  """The sum of `tensors` (a tensor or a nest) over all replicas; as is without ctx."""
  if ctx is None:
    return tensors
  return ctx.all_reduce(tf.distribute.ReduceOp.SUM, tensors)


def broadcast_from_first_with_data(ctx, value, has_data):
  """Every replica gets `value` of the lowest replica whose has_data is True.

  Returns:
    (value, whether any replica has data), identical on all replicas; two
    all-reduces, no control flow.
  """
  if ctx is None:
    return value, has_data
  num = ctx.num_replicas_in_sync
  rid = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
  flags = ctx.all_reduce(
    tf.distribute.ReduceOp.SUM, tf.one_hot(rid, num) * tf.cast(has_data, tf.float32)
  )
  first = tf.argmax(flags, output_type=tf.int32)  # 0 if nobody has data
  value = ctx.all_reduce(
    tf.distribute.ReduceOp.SUM, tf.where(tf.equal(rid, first), value, tf.zeros_like(value))
  )
  return value, tf.reduce_max(flags) > 0.0


def sample_rows(x, keep, num, seed):
  """`num` random kept rows of x [N, D], without replacement while there are enough.

  The kept rows come in a random order from `seed` (int32 [2], e.g. `next_seed`):
  the argsort of one uniform key per row, the rows not kept keyed last. Every shape
  is static, so XLA compiles it. Under a strategy each replica picks from its own
  rows, and `broadcast_from_first_with_data` makes them agree.

  Returns:
    (rows [num, D], has_data scalar bool); rows are 0 when no row is kept
    (also when x has no row).
  """
  n_all = tf.shape(x)[0]
  keys = tf.random.stateless_uniform([n_all], seed)  # in [0, 1)
  if keep is None:
    n = n_all
  else:
    keys = tf.where(keep, keys, 2.0)
    n = tf.reduce_sum(tf.cast(keep, tf.int32))
  order = tf.concat([tf.argsort(keys), [n_all]], axis=0)
  padded = tf.concat([x, tf.zeros([1, tf.shape(x)[1]], x.dtype)], axis=0)  # row n_all: 0
  pick = tf.where(n > 0, tf.range(num) % tf.maximum(n, 1), n_all)
  return tf.gather(padded, tf.gather(order, pick)), n > 0
