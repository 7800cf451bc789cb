"""Compress / decompress stacks of the Latent Transformer's target autoencoder.

Text (Kaiser et al. 2018, §5.1 of the paper): residual convolutions, then
`compress_steps` (n_c) strided convolutions, each halving the length, so a
target of length T gives ceil(T / 2^n_c) latents; decompression mirrors it
with depth-to-space steps (a 1x1 convolution to twice the width, then each
position split in two), each preceded by residual convolutions.

Every convolution output is multiplied by the position mask, so padding never
leaks into real positions: a sequence gives the same result alone or padded
in a batch.
"""

import keras
import tensorflow as tf


def _apply_mask(x, mask):
  return x if mask is None else x * tf.cast(mask, x.dtype)[..., None]


def downsample_mask(mask, steps):
  """bool [B, T] -> [B, ceil(T / 2^steps)]: a latent is real if its first position is."""
  return mask[:, ::2 ** steps]


def upsample_mask(mask, steps):
  """bool [B, L] -> [B, L * 2^steps]."""
  return tf.repeat(mask, 2 ** steps, axis=1)


class ResidualConv1D(keras.layers.Layer):
  """x + dropout(conv(relu(norm(x)))), repeated `num_layers` times (T2T residual_conv)."""

  def __init__(self, hidden_size, num_layers=1, kernel_size=3, dropout=0.0, **kwargs):
    super().__init__(**kwargs)
    self.hidden_size, self.num_layers = hidden_size, num_layers
    for i in range(num_layers):
      setattr(self, f"norm_{i}", keras.layers.LayerNormalization(epsilon=1e-6))
      setattr(self, f"conv_{i}", keras.layers.Conv1D(hidden_size, kernel_size, padding="same"))
    self.dropout = keras.layers.Dropout(dropout)

  def build(self, input_shape=None):
    for i in range(self.num_layers):
      getattr(self, f"norm_{i}").build((None, None, self.hidden_size))
      getattr(self, f"conv_{i}").build((None, None, self.hidden_size))

  def call(self, x, padding_mask=None, training=False):
    mask = padding_mask
    for i in range(self.num_layers):
      y = getattr(self, f"conv_{i}")(tf.nn.relu(getattr(self, f"norm_{i}")(x)))
      x = _apply_mask(x + self.dropout(y, training=training), mask)
    return x


class Compress1D(keras.layers.Layer):
  """[B, T, H] -> [B, T / 2^n_c, H] (T must be a multiple of 2^n_c; see `pad_to_multiple`)."""

  def __init__(self, hidden_size, compress_steps=3, residual_layers=1, kernel_size=3,
               dropout=0.0, **kwargs):
    super().__init__(**kwargs)
    self.hidden_size, self.compress_steps = hidden_size, compress_steps
    self.residual = ResidualConv1D(hidden_size, residual_layers, kernel_size, dropout)
    for i in range(compress_steps):
      setattr(self, f"stride_{i}", keras.layers.Conv1D(
          hidden_size, kernel_size, strides=2, padding="same", activation="relu"))
    self.norm = keras.layers.LayerNormalization(epsilon=1e-6)

  def build(self, input_shape=None):
    self.residual.build()
    for i in range(self.compress_steps):
      getattr(self, f"stride_{i}").build((None, None, self.hidden_size))
    self.norm.build((None, None, self.hidden_size))

  def call(self, x, padding_mask=None, training=False):
    mask = padding_mask
    x = self.residual(_apply_mask(x, mask), padding_mask=mask, training=training)
    for i in range(self.compress_steps):
      mask = None if mask is None else downsample_mask(mask, 1)
      x = _apply_mask(getattr(self, f"stride_{i}")(x), mask)
    return _apply_mask(self.norm(x), mask)


class Decompress1D(keras.layers.Layer):
  """[B, L, H] -> [B, L * 2^n_c, H]: residual conv + depth-to-space, n_c times."""

  def __init__(self, hidden_size, compress_steps=3, residual_layers=1, kernel_size=3,
               dropout=0.0, **kwargs):
    super().__init__(**kwargs)
    self.hidden_size, self.compress_steps = hidden_size, compress_steps
    for i in range(compress_steps):
      setattr(self, f"residual_{i}", ResidualConv1D(hidden_size, residual_layers,
                                                    kernel_size, dropout))
      setattr(self, f"widen_{i}", keras.layers.Dense(2 * hidden_size))

  def build(self, input_shape=None):
    for i in range(self.compress_steps):
      getattr(self, f"residual_{i}").build()
      getattr(self, f"widen_{i}").build((None, None, self.hidden_size))

  def call(self, x, padding_mask=None, training=False):
    mask = padding_mask
    x = _apply_mask(x, mask)
    for i in range(self.compress_steps):
      x = getattr(self, f"residual_{i}")(x, padding_mask=mask, training=training)
      x = getattr(self, f"widen_{i}")(tf.nn.relu(x) if i else x)
      shape = tf.shape(x)
      x = tf.reshape(x, [shape[0], shape[1] * 2, self.hidden_size])
      mask = None if mask is None else upsample_mask(mask, 1)
      x = _apply_mask(x, mask)
    return x


def pad_to_multiple(x, multiple, axis=1):
  """Pads `x` with zeros along `axis` up to a multiple of `multiple`."""
  length = tf.shape(x)[axis]
  extra = (-length) % multiple
  paddings = [[0, 0]] * len(x.shape)
  paddings[axis] = [0, extra]
  return tf.pad(x, paddings)
