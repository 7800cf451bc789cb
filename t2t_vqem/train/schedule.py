"""Adam with linear warm-up then exponential decay (the paper, §5)."""

import gin
import keras
import tensorflow as tf


class WarmupExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
  """lr(step) = peak * min(1, step / warmup) * decay_rate ** (max(0, step - warmup) / decay_steps)."""

  def __init__(self, peak, warmup_steps, decay_rate, decay_steps):
    self.peak = peak
    self.warmup_steps = warmup_steps
    self.decay_rate = decay_rate
    self.decay_steps = decay_steps

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warmup = tf.minimum(1.0, (step + 1.0) / max(self.warmup_steps, 1))
    decayed = tf.maximum(0.0, step - self.warmup_steps) / self.decay_steps
    return self.peak * warmup * tf.pow(self.decay_rate, decayed)

  def get_config(self):
    return {"peak": self.peak, "warmup_steps": self.warmup_steps,
            "decay_rate": self.decay_rate, "decay_steps": self.decay_steps}


@gin.configurable
def make_optimizer(name="adam", learning_rate=1e-3, warmup_steps=4000,
                   decay_rate=0.5, decay_steps=50000, beta_1=0.9, beta_2=0.997,
                   epsilon=1e-9, clipnorm=None):
  """The optimizer, with the warm-up + exponential-decay learning rate.

  Args:
    name: "adam" (the paper's) or "sgd".
    learning_rate: peak learning rate, reached at the end of warm-up.
    warmup_steps: linear warm-up steps.
    decay_rate, decay_steps: after warm-up the rate is multiplied by
      decay_rate every decay_steps steps (continuously).
  """
  schedule = WarmupExponentialDecay(learning_rate, warmup_steps, decay_rate, decay_steps)
  if name == "adam":
    return keras.optimizers.Adam(schedule, beta_1=beta_1, beta_2=beta_2,
                                 epsilon=epsilon, clipnorm=clipnorm)
  if name == "sgd":
    return keras.optimizers.SGD(schedule, clipnorm=clipnorm)
  raise ValueError(f"unknown optimizer {name!r}; accepted: adam, sgd")
