"""The one interface every bottleneck implements, and what they share.

A bottleneck is a Keras layer between a continuous encoder output z_e [..., D]
and a decoder. Models use nothing of it but this interface, so any registered
bottleneck plugs into any latent model:

  call(x, training=False, mask=None) -> BottleneckOutput
      x [..., D]; mask [...] (True / nonzero = keep, False / 0 = padding).
      A training call may update the bottleneck's state (EMA codebook, step
      counter) with assign ops, so it works inside tf.function and strategy.run.
  embed(codes) -> [..., D]
      codes int [...] in [0, num_codes) -> the decoder input they stand for
      (codebook rows, product blocks, the embedding of bits). Inference and
      export go through it only.
  encode(x) -> int32 codes [...]
      the most probable code of each position, deterministic, no update.
  num_codes
      the number of distinct codes: the size of the latent predictor's softmax.

A registered bottleneck (`registry.register_bottleneck`) is built by name,
with `embedding_dim` = D and its own arguments, e.g. from Gin:
`latent_transformer.bottleneck = 'semhash'`, `semhash.num_bits = 12`.

Bad input, the same for every bottleneck (tests/test_fuzz_bottlenecks.py):
  * a row of x holding a NaN or an Inf is, for the layer's statistics, a masked
    row: it is left out of perplexity and usage and of any state the call
    updates (an EMA codebook's counts and sums, its seeding). Its code is still
    a valid code. It does count in the loss, which is then not finite where the
    bottleneck has a loss of x (the trainer then skips the step: see
    t2t_vqem.train.trainer, "Non-finite steps"); finite rows get finite outputs.
  * zero rows (x [0, D] or [B, 0, D]) give outputs with zero rows, loss 0,
    perplexity 1 and usage 0; so does an all-masked batch, whose outputs keep
    their shape.
  * x of rank < 2, a last dimension other than D, or a mask whose shape is not
    x's without its last dimension is a ValueError (an InvalidArgumentError
    when the shapes are only known when the graph runs); the message names the
    shapes.
"""

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from t2t_vqem.bottlenecks import equations


class BottleneckOutput(NamedTuple):
  """What every bottleneck's call returns (a NamedTuple: it passes through
  tf.function, tf.nest and strategy.run).

  Attributes:
    quantized: the decoder input, x's shape and dtype; straight-through where
      the bottleneck is discrete (forward value the quantized vector, gradient
      to x).
    codes: int32 [...] in [0, num_codes), one code per position: the nearest
      code in hard EM, the most frequent draw in soft EM; `embed(codes)` is its
      decoder input.
    soft_targets: float32 [..., num_codes], the latent predictor's labels: the
      mean of the sampled one-hots in soft EM (§3.2), one_hot(codes) otherwise.
      Padding positions are not zeroed (the predictor's loss masks them).
      Inside a tf.function it costs nothing unless it is used.
    loss: float32 scalar to add to the model's loss (e.g. beta times Eq. 2's
      commitment loss), averaged over kept positions.
    perplexity: float32 scalar, exp(entropy) of the batch's code histogram
      over kept positions (per block, averaged over blocks).
    usage: float32 scalar, the fraction of codes chosen in the batch.
    draws: int32, the E step's choices in the layer's own layout (for
      VectorQuantizer [...] (+ [num_blocks]) (+ [num_samples]); else codes).
    In training under a strategy, perplexity and usage are over the global
    batch where the bottleneck all-reduces its statistics.
  """

  quantized: tf.Tensor
  codes: tf.Tensor
  soft_targets: tf.Tensor
  loss: tf.Tensor
  perplexity: tf.Tensor
  usage: tf.Tensor
  draws: tf.Tensor


def check_int(name, value, minimum, what):
  """Raises ValueError unless value is an int >= minimum."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name}={value!r} is not accepted: {what} (an int >= {minimum}).")


def check_float(name, value, low, high=None, low_open=False):
  """Raises ValueError unless low <= value (< low if low_open) and value <= high."""
  value = float(value)
  bad = value <= low if low_open else value < low
  if bad or (high is not None and value > high):
    accepted = (f"> {low}" if low_open else f">= {low}") if high is None else f"[{low}, {high}]"
    raise ValueError(f"{name}={value!r} is not accepted; expected {accepted}.")
  return value


def masked_mean(values, weights):
  """Mean of per-position values [N] over kept positions (padding may be NaN); 0 if none."""
  if weights is None:
    return tf.math.divide_no_nan(tf.reduce_sum(values), tf.cast(tf.size(values), values.dtype))
  values = tf.where(weights > 0.0, values * weights, 0.0)
  return tf.math.divide_no_nan(tf.reduce_sum(values), tf.reduce_sum(weights))


def finite_rows(flat, keep):
  """The rows of flat [N, D] that count in the statistics: kept and finite.

  Returns:
    (bool [N], float32 [N] weights): keep (all True if None) and every entry
    of the row finite. One pass over flat.
  """
  finite = tf.reduce_all(tf.math.is_finite(flat), axis=-1)
  if keep is not None:
    finite = tf.logical_and(finite, keep)
  return finite, tf.cast(finite, tf.float32)


def code_metrics(codes, num_codes, weights):
  """(perplexity, usage) of int32 codes [N] over num_codes (kept positions only)."""
  counts = equations.code_histogram(codes[tf.newaxis, :, tf.newaxis], num_codes, weights)
  return equations.perplexity_and_usage(counts)


class Bottleneck(keras.layers.Layer):
  """Base class: input checks, the mask, the flat [N, D] view, the interface.

  A subclass passes `embedding_dim` (None or D) to this __init__, ends its own
  with `self._build_if_dim_known()`, creates its weights in
  `_build_weights(dim)`, starts its call with `self._flatten(x, mask)` and
  implements `num_codes`, `call`, `embed` and `encode`.
  """

  def __init__(self, embedding_dim=None, **kwargs):
    super().__init__(**kwargs)
    self.embedding_dim = None if embedding_dim is None else int(embedding_dim)
    self.supports_masking = True

  @property
  def num_codes(self):
    raise NotImplementedError

  def embed(self, codes):
    raise NotImplementedError

  def encode(self, x):
    raise NotImplementedError

  def _build_if_dim_known(self):
    if self.embedding_dim is not None:
      self.build((None, self.embedding_dim))

  def build(self, input_shape):
    dim = input_shape[-1]
    if dim is None:
      raise ValueError(
        f"{self.name}: the last dimension of the input must be known; got shape {input_shape}."
      )
    self._check_dim(int(dim))
    self._build_weights(int(dim))
    self.embedding_dim = int(dim)
    self.built = True

  def _build_weights(self, dim):
    raise NotImplementedError

  def _check_dim(self, dim):
    if self.embedding_dim is not None and dim != self.embedding_dim:
      raise ValueError(
        f"{self.name} got an input whose last dimension is {dim}; "
        f"the layer was built for D = {self.embedding_dim}."
      )

  def compute_mask(self, inputs, previous_mask):
    return [previous_mask]

  def _add_step_counter(self):
    """A non-trainable count of training calls, for schedules (T2T's global step)."""
    self.step = self.add_weight(
      name="step", shape=(), dtype="float32", initializer="zeros", trainable=False, autocast=False
    )

  def _flatten(self, x, mask):
    """x [..., D], mask [...] -> (x, float32 [N, D], batch shape [...],
    weights float32 [N] or None, keep bool [N] or None)."""
    x = tf.convert_to_tensor(x)
    if x.shape.rank is None or x.shape.rank < 2:
      raise ValueError(
        f"{self.name} got an input of shape {x.shape} (rank "
        f"{x.shape.rank}); expected rank >= 2, [..., D]."
      )
    if x.shape[-1] is not None:
      self._check_dim(int(x.shape[-1]))
    flat = tf.reshape(tf.cast(x, tf.float32), [-1, self.embedding_dim or x.shape[-1]])
    if mask is None:
      return x, flat, tf.shape(x)[:-1], None, None
    mask = tf.convert_to_tensor(mask)
    if not mask.shape.is_compatible_with(x.shape[:-1]):
      raise ValueError(
        f"mask has shape {mask.shape}; expected the input's shape without "
        f"its last dimension, {x.shape[:-1]}."
      )
    if not (mask.shape.is_fully_defined() and x.shape[:-1].is_fully_defined()):
      check = tf.debugging.assert_equal(
        tf.shape(mask),
        tf.shape(x)[:-1],
        message=f"{self.name}: the mask shape must be the input shape without its last dimension",
      )
      with tf.control_dependencies([check]):
        mask = tf.identity(mask)
    keep = tf.reshape(mask, [-1])
    if keep.dtype != tf.bool:
      keep = keep > 0
    return x, flat, tf.shape(x)[:-1], tf.cast(keep, tf.float32), keep

  def get_config(self):
    config = super().get_config()
    config.update(embedding_dim=self.embedding_dim)
    return config


def inverse_exp_decay(max_step, step, min_value=0.01):
  """T2T's schedule: min_value at step 0, rising exponentially to 1 at max_step."""
  inv_base = tf.exp(tf.math.log(min_value) / float(max_step))
  return inv_base ** tf.maximum(float(max_step) - tf.cast(step, tf.float32), 0.0)


def inverse_lin_decay(max_step, step, min_value=0.01):
  """T2T's schedule: min_value at step 0, rising linearly to 1 at max_step."""
  progress = tf.minimum(tf.cast(step, tf.float32) / float(max_step), 1.0)
  return progress * (1.0 - min_value) + min_value
