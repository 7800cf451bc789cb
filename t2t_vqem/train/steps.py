"""The distributed training and evaluation steps.

A model returns its losses as (numerator, denominator) pairs, e.g. the summed
token cross entropy and the number of tokens; each denominator is all-reduced,
so the loss is the mean over the *global* batch, and the replicas' gradients
are summed. N replicas on a global batch therefore follow the trajectory of
one replica on that batch.

A step whose loss or gradients are not finite on any replica applies no
update: the finite flag is all-reduced, the model's own state (the EMA
codebook) is put back, and the optimizer is applied under a cross-replica
tf.cond (see Trainer: non-finite steps).

Mixed precision (`precision`, ours): the model computes in bfloat16 or float16
with float32 weights (Keras mixed precision policies); the bottleneck's
distances and EMA statistics are float32 whatever the policy (bottlenecks cast
their input). With float16 the loss is scaled (keras LossScaleOptimizer) and a
step whose scaled gradients overflow only lowers the scale: it is not counted
as a non-finite step. `jit_compile` compiles each replica's forward and
backward pass with XLA.
"""

import keras
import tensorflow as tf

SUM = tf.distribute.ReduceOp.SUM
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def check_precision(precision):
  if precision not in PRECISIONS:
    raise ValueError(f"unknown precision {precision!r}; accepted: {', '.join(PRECISIONS)}")
  return precision


def replica_shard(features):
  """This replica's contiguous slice of a global evaluation batch (all of it on one replica).

  Every replica receives the whole batch and takes rows [i * b, (i + 1) * b),
  b = ceil(B / replicas), so an evaluation split's last, smaller batch is
  split too. (Training batches are cut per replica beforehand: inputs.py.)
  """
  ctx = tf.distribute.get_replica_context()
  replicas = ctx.num_replicas_in_sync
  if replicas == 1:
    return features
  batch = tf.shape(tf.nest.flatten(features)[0])[0]
  size = (batch + replicas - 1) // replicas
  start = tf.minimum(ctx.replica_id_in_sync_group * size, batch)
  end = tf.minimum(start + size, batch)
  return tf.nest.map_structure(lambda x: x[start:end], features)


def global_mean(terms):
  """(numerator, denominator) pairs -> float32 numerator / all-reduced denominator."""
  ctx = tf.distribute.get_replica_context()
  means = {}
  for name, (num, den) in terms.items():
    num, den = tf.cast(num, tf.float32), tf.cast(den, tf.float32)
    means[name] = num / tf.maximum(ctx.all_reduce(SUM, den), 1.0)
  return means


class Steps:
  """The training and evaluation steps of a model and optimizer under a strategy.

  Args:
    strategy, model, optimizer, problem: as the Trainer builds them (the
      optimizer a keras LossScaleOptimizer under mixed_float16).
    place: slices of this worker -> the strategy's per-replica value
      (inputs.ReplicaBatches.place).
    jit_compile: compile each replica's forward and backward pass with XLA.
  """

  def __init__(self, strategy, model, optimizer, problem, place=lambda x: x, jit_compile=False):
    self.strategy, self.model, self.optimizer, self.problem = strategy, model, optimizer, problem
    self.place = place
    self.scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    self._gradients = self._forward_backward
    if jit_compile:
      self._gradients = tf.function(self._forward_backward, jit_compile=True)

  def _forward_backward(self, features):
    """Loss terms, the total loss and its gradients (of the scaled loss under float16)."""
    with tf.GradientTape() as tape:
      losses, extra = self.model.loss_terms(features, training=True, step=self.optimizer.iterations)
      values = global_mean(losses)
      loss = tf.add_n(list(values.values()))
      scaled = self.optimizer.scale_loss(loss) if self.scaled else loss
    grads = tape.gradient(scaled, self.model.trainable_variables)
    values.update(global_mean(extra))
    return values, loss, grads

  def replica_gradients(self, features):
    """Loss terms and gradients of this replica's slice; the model's state as before when
    any replica's loss or (unscaled) gradients are not finite."""
    state = self.model.non_trainable_variables
    before = [tf.identity(v) for v in state]  # read before the forward pass assigns them
    values, loss, grads = self._gradients(features)
    # Under float16 loss scaling an overflow of the scaled gradients is the
    # optimizer's to handle (it lowers the scale); only the loss is checked here.
    checked = [loss] + ([] if self.scaled else [g for g in grads if g is not None])
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in checked])
    ctx = tf.distribute.get_replica_context()
    finite = tf.equal(ctx.all_reduce(SUM, 1.0 - tf.cast(finite, tf.float32)), 0.0)
    for variable, value in zip(state, before):  # e.g. the EMA codebook's E/M step
      variable.assign(tf.where(finite, variable, value))
    values["loss"] = loss
    values["items"] = self.problem.batch_items(features)
    return grads, values, finite

  def replica_apply(self, grads):
    self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))

  def train_step(self, slices):
    """One step on this worker's replica slices; the global means of the loss terms,
    "items" (tokens or pictures), "finite" (whether the update was applied) and,
    under loss scaling, "overflow" (not applied: the scaled gradients overflowed)."""
    features = self.place(slices)
    grads, per_replica, finite = self.strategy.run(self.replica_gradients, args=(features,))
    finite = self.strategy.experimental_local_results(finite)[0]  # the same on every replica

    def apply():
      self.strategy.run(self.replica_apply, args=(grads,))
      return tf.constant(True)

    before = tf.identity(self.optimizer.iterations) if self.scaled else None
    applied = tf.cond(finite, apply, lambda: tf.constant(False))
    values = {k: self.strategy.reduce(SUM, v, axis=None) for k, v in per_replica.items()}
    if self.scaled:  # the loss scale optimizer skipped an update whose gradients overflowed
      moved = tf.identity(self.optimizer.iterations) > before
      values["overflow"] = tf.logical_and(applied, tf.logical_not(moved))
      applied = tf.logical_and(applied, moved)
    values["finite"] = applied
    return values

  def replica_eval_step(self, features):
    features = replica_shard(features)
    losses, extra = self.model.loss_terms(features, training=False)
    return {
      name: tf.stack([tf.cast(num, tf.float32), tf.cast(den, tf.float32)])
      for name, (num, den) in {**losses, **extra}.items()
    }

  def eval_step(self, features):
    """(numerator, denominator) sums of every loss term over a global evaluation batch."""
    per_replica = self.strategy.run(self.replica_eval_step, args=(features,))
    return {k: self.strategy.reduce(SUM, v, axis=None) for k, v in per_replica.items()}
