"""Adam with linear warm-up then exponential decay (the paper, §5)."""

import gin
import keras
import tensorflow as tf


class WarmupExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up to `peak`, then continuous exponential decay.

  With n = step + 1, the 1-based number of the update being made (Keras calls
  the schedule with `optimizer.iterations`, which counts the updates already
  applied, so the first update sees step 0):

    lr(step) = peak * min(1, n / warmup_steps)
                    * decay_rate ** (max(0, n - warmup_steps) / decay_steps)

  So the first update already gets peak / warmup_steps (T2T's linear warm-up
  on its 0-based global step would give 0 there and waste it), the rate grows
  linearly to `peak` at the warmup_steps-th update (step = warmup_steps - 1)
  and from there is multiplied by decay_rate every decay_steps updates.
  warmup_steps = 0 means no warm-up (peak from the first update).
  """

  def __init__(self, peak, warmup_steps, decay_rate, decay_steps):
    self.peak = peak
    self.warmup_steps = warmup_steps
    self.decay_rate = decay_rate
    self.decay_steps = decay_steps

  def __call__(self, step):
    n = tf.cast(step, tf.float32) + 1.0  # the 1-based number of this update
    warmup = tf.minimum(1.0, n / max(self.warmup_steps, 1))
    decayed = tf.maximum(0.0, n - self.warmup_steps) / self.decay_steps
    return self.peak * warmup * tf.pow(self.decay_rate, decayed)

  def get_config(self):
    return {
      "peak": self.peak,
      "warmup_steps": self.warmup_steps,
      "decay_rate": self.decay_rate,
      "decay_steps": self.decay_steps,
    }


@gin.configurable
def make_optimizer(
  name="adam",
  learning_rate=1e-3,
  warmup_steps=4000,
  decay_rate=0.5,
  decay_steps=50000,
  beta_1=0.9,
  beta_2=0.997,
  epsilon=1e-9,
  clipnorm=None,
):
  """The optimizer, with the warm-up + exponential-decay learning rate.

  Args:
    name: "adam" (the paper's) or "sgd".
    learning_rate: peak learning rate, reached at the end of warm-up (the
      warmup_steps-th update); see `WarmupExponentialDecay`.
    warmup_steps: linear warm-up steps (the first update gets
      learning_rate / warmup_steps).
    decay_rate, decay_steps: after warm-up the rate is multiplied by
      decay_rate every decay_steps steps (continuously).
  """
  schedule = WarmupExponentialDecay(learning_rate, warmup_steps, decay_rate, decay_steps)
  if name == "adam":
    return keras.optimizers.Adam(
      schedule, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, clipnorm=clipnorm
    )
  if name == "sgd":
    return keras.optimizers.SGD(schedule, clipnorm=clipnorm)
  raise ValueError(f"unknown optimizer {name!r}; accepted: adam, sgd")
