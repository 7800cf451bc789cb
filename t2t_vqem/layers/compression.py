"""Compress / decompress stacks of the Latent Transformer's target autoencoder.

Text (Kaiser et al. 2018, §5.1 of the paper), as the reference code
(Tensor2Tensor's transformer_nat.py) has them: `residual_layers` residual
blocks (layer norm, then `residual_convs` ReLU + kernel-3 convolutions, dropout,
added to the input), then `compress_steps` (n_c) strided convolutions (ReLU,
then kernel 2, stride 2), each halving the length, so a target of length T
gives ceil(T / 2^n_c) latents. Decompression mirrors it: n_c times one
residual block, then a depth-to-space step (a 1x1 convolution to twice the
width, preceded by a ReLU after the first step, each position split in two).

Every convolution output is multiplied by the position mask, so padding never
leaks into real positions: a sequence gives the same result alone or padded
in a batch.

Images (§5.2): `Compress2D` is 4 convolutions with 5x5 kernels (the first
`compress_steps` with stride 2, the rest stride 1), 2 residual layers and a
dense layer to `latents_per_position` vectors per position; `Decompress2D`
mirrors it (dense, 2 residual layers, 4 transposed 5x5 convolutions, the last
`compress_steps` with stride 2) and ends in 256 logits per sub-pixel.
"""

import keras
import numpy as np
import tensorflow as tf

from t2t_vqem.layers import transformer as layers


def _apply_mask(x, mask):
  return x if mask is None else x * tf.cast(mask, x.dtype)[..., None]


def downsample_mask(mask, steps):
  """bool [B, T] -> [B, ceil(T / 2^steps)]: a latent is real if its first position is."""
  return mask[:, :: 2**steps]


def upsample_mask(mask, steps):
  """bool [B, L] -> [B, L * 2^steps]."""
  return tf.repeat(mask, 2**steps, axis=1)


class ResidualConv1D(keras.layers.Layer):
  """x + dropout(convs(norm(x))), `num_layers` times (T2T's residual_conv).

  convs: `convs` times ReLU then a kernel_size convolution (T2T's conv_block).
  """

  def __init__(self, hidden_size, num_layers=1, convs=3, kernel_size=3, dropout=0.0, **kwargs):
    super().__init__(**kwargs)
    self.hidden_size, self.num_layers, self.convs = hidden_size, num_layers, convs
    for i in range(num_layers):
      setattr(self, f"norm_{i}", layers.LayerNorm(epsilon=1e-6))
      for j in range(convs):
        setattr(
          self, f"conv_{i}_{j}", keras.layers.Conv1D(hidden_size, kernel_size, padding="same")
        )
    self.dropout = keras.layers.Dropout(dropout)

  def build(self, input_shape=None):
    for i in range(self.num_layers):
      getattr(self, f"norm_{i}").build((None, None, self.hidden_size))
      for j in range(self.convs):
        getattr(self, f"conv_{i}_{j}").build((None, None, self.hidden_size))

  def call(self, x, padding_mask=None, training=False):
    mask = padding_mask
    for i in range(self.num_layers):
      y = getattr(self, f"norm_{i}")(x)
      for j in range(self.convs):
        y = _apply_mask(getattr(self, f"conv_{i}_{j}")(tf.nn.relu(y)), mask)
      x = _apply_mask(x + self.dropout(y, training=training), mask)
    return x


class Compress1D(keras.layers.Layer):
  """[B, T, H] -> [B, T / 2^n_c, H] (T must be a multiple of 2^n_c; see `pad_to_multiple`).

  Args:
    hidden_size, compress_steps: H and n_c.
    residual_layers: residual blocks before the strided steps (reference code: n_c).
    residual_convs, kernel_size: convolutions per block and their kernel (3, 3).
    stride_kernel_size: of the strided convolutions (reference code: 2, so each
      latent reads exactly its 2^n_c positions).
    output_norm: layer-normalise the output z_e (ours, not the reference code's).
  """

  def __init__(
    self,
    hidden_size,
    compress_steps=3,
    residual_layers=3,
    residual_convs=3,
    kernel_size=3,
    stride_kernel_size=2,
    output_norm=False,
    dropout=0.0,
    **kwargs,
  ):
    super().__init__(**kwargs)
    self.hidden_size, self.compress_steps = hidden_size, compress_steps
    self.residual = ResidualConv1D(
      hidden_size, residual_layers, residual_convs, kernel_size, dropout, name="residual"
    )
    for i in range(compress_steps):
      setattr(
        self,
        f"stride_{i}",
        keras.layers.Conv1D(hidden_size, stride_kernel_size, strides=2, padding="same"),
      )
    self.norm = layers.LayerNorm(epsilon=1e-6) if output_norm else None

  def build(self, input_shape=None):
    self.residual.build()
    for i in range(self.compress_steps):
      getattr(self, f"stride_{i}").build((None, None, self.hidden_size))
    if self.norm is not None:
      self.norm.build((None, None, self.hidden_size))

  def call(self, x, padding_mask=None, training=False):
    mask = padding_mask
    x = self.residual(_apply_mask(x, mask), padding_mask=mask, training=training)
    for i in range(self.compress_steps):
      mask = None if mask is None else downsample_mask(mask, 1)
      x = _apply_mask(getattr(self, f"stride_{i}")(tf.nn.relu(x)), mask)
    return x if self.norm is None else _apply_mask(self.norm(x), mask)


class Decompress1D(keras.layers.Layer):
  """[B, L, H] -> [B, L * 2^n_c, H]: a residual block + depth-to-space, n_c times."""

  def __init__(
    self, hidden_size, compress_steps=3, residual_convs=3, kernel_size=3, dropout=0.0, **kwargs
  ):
    super().__init__(**kwargs)
    self.hidden_size, self.compress_steps = hidden_size, compress_steps
    for i in range(compress_steps):
      setattr(
        self,
        f"residual_{i}",
        ResidualConv1D(hidden_size, 1, residual_convs, kernel_size, dropout),
      )
      setattr(self, f"widen_{i}", layers.Dense(2 * hidden_size))

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


class ResidualConv2D(keras.layers.Layer):
  """x + conv1x1(relu(conv3x3(relu(x)))), `num_layers` times (the VQ-VAE residual block)."""

  def __init__(self, hidden_size, num_layers=2, **kwargs):
    super().__init__(**kwargs)
    self.hidden_size, self.num_layers = hidden_size, num_layers
    for i in range(num_layers):
      setattr(self, f"conv3_{i}", keras.layers.Conv2D(hidden_size, 3, padding="same"))
      setattr(self, f"conv1_{i}", keras.layers.Conv2D(hidden_size, 1))

  def build(self, input_shape=None):
    for i in range(self.num_layers):
      getattr(self, f"conv3_{i}").build((None, None, None, self.hidden_size))
      getattr(self, f"conv1_{i}").build((None, None, None, self.hidden_size))

  def call(self, x):
    for i in range(self.num_layers):
      y = getattr(self, f"conv3_{i}")(tf.nn.relu(x))
      x = x + getattr(self, f"conv1_{i}")(tf.nn.relu(y))
    return x


def _check_image_sizes(conv_layers, compress_steps):
  if not 0 <= compress_steps <= conv_layers:
    raise ValueError(
      f"compress_steps={compress_steps} must be between 0 and "
      f"conv_layers={conv_layers} (each halving step is one of the convolutions)"
    )


class Compress2D(keras.layers.Layer):
  """Image encoder: [B, H, W, C] float -> [B, H / 2^s, W / 2^s, n, D] (s = compress_steps).

  Each latent vector is layer-normalised (ours, as `Compress1D(output_norm=True)`):
  that sets the scale of the distances of the E step (Eq. 1, 7). Without it
  a freshly initialised encoder gives vectors of squared norm ~0.01, every
  distance is ~0.01 and soft EM draws codes uniformly at random.

  Args:
    hidden_size: channels of the convolutions.
    latent_dim: D, the size of each latent vector (the codebook's width).
    latents_per_position: n latent vectors at each position of the latent grid.
    compress_steps: how many of the convolutions have stride 2 (32x32 -> 8x8: 2).
    conv_layers, kernel_size, residual_layers: the paper's 4, 5 and 2.
  """

  def __init__(
    self,
    hidden_size,
    latent_dim,
    latents_per_position,
    compress_steps=2,
    conv_layers=4,
    kernel_size=5,
    residual_layers=2,
    **kwargs,
  ):
    super().__init__(**kwargs)
    _check_image_sizes(conv_layers, compress_steps)
    self.hidden_size, self.conv_layers = hidden_size, conv_layers
    self.latent_dim, self.latents_per_position = latent_dim, latents_per_position
    for i in range(conv_layers):
      setattr(
        self,
        f"conv_{i}",
        keras.layers.Conv2D(
          hidden_size,
          kernel_size,
          strides=2 if i < compress_steps else 1,
          padding="same",
          activation="relu",
        ),
      )
    self.residual = ResidualConv2D(hidden_size, residual_layers)
    self.to_latents = layers.Dense(latents_per_position * latent_dim)
    self.norm = layers.LayerNorm(epsilon=1e-6)

  def build(self, input_shape=None):
    self.norm.build((None, self.latent_dim))
    channels = input_shape[-1] if input_shape else 3
    for i in range(self.conv_layers):
      getattr(self, f"conv_{i}").build((None, None, None, channels if i == 0 else self.hidden_size))
    self.residual.build()
    self.to_latents.build((None, None, None, self.hidden_size))

  def call(self, x):
    for i in range(self.conv_layers):
      x = getattr(self, f"conv_{i}")(x)
    x = self.to_latents(tf.nn.relu(self.residual(x)))
    shape = tf.shape(x)
    return self.norm(
      tf.reshape(x, [shape[0], shape[1], shape[2], self.latents_per_position, self.latent_dim])
    )


class Decompress2D(keras.layers.Layer):
  """Image decoder: [B, h, w, n, D] -> logits float32 [B, h 2^s, w 2^s, channels, 256].

  ordinal_init (ours, not the paper's): the output layer starts out knowing that
  sub-pixel values are ordered. For channel c three features (a, b, s) = rows 3c,
  3c + 1, 3c + 2 of its kernel get the weights scale * (t_v, -t_v, -t_v^2) for
  value v, t_v = v / 127.5 - 1 (the others keep their random initialisation), so
  logit_v = scale * (-(h_s) (t_v - (h_a - h_b) / (2 h_s))^2) + const: a bump over
  the values centred where the features put it, instead of 256 unrelated
  classes. It needs hidden_size >= 3 * channels.
  """

  def __init__(
    self,
    hidden_size,
    channels=3,
    compress_steps=2,
    conv_layers=4,
    kernel_size=5,
    residual_layers=2,
    num_values=256,
    ordinal_init=0.0,
    **kwargs,
  ):
    super().__init__(**kwargs)
    _check_image_sizes(conv_layers, compress_steps)
    if ordinal_init and hidden_size < 3 * channels:
      raise ValueError(
        f"ordinal_init needs hidden_size >= 3 * channels = {3 * channels}, got {hidden_size}"
      )
    self.ordinal_init = float(ordinal_init)
    self.hidden_size, self.conv_layers = hidden_size, conv_layers
    self.channels, self.num_values = channels, num_values
    self.from_latents = layers.Dense(hidden_size)
    self.residual = ResidualConv2D(hidden_size, residual_layers)
    for i in range(conv_layers):
      upsample = i >= conv_layers - compress_steps
      setattr(
        self,
        f"deconv_{i}",
        keras.layers.Conv2DTranspose(
          hidden_size, kernel_size, strides=2 if upsample else 1, padding="same", activation="relu"
        ),
      )
    self.to_logits = layers.Dense(channels * num_values)

  def build(self, input_shape=None):
    latent_width = input_shape[-2] * input_shape[-1] if input_shape else None
    self.from_latents.build((None, None, None, latent_width))
    self.residual.build()
    for i in range(self.conv_layers):
      getattr(self, f"deconv_{i}").build((None, None, None, self.hidden_size))
    self.to_logits.build((None, None, None, self.hidden_size))
    if self.ordinal_init:
      self.to_logits.kernel.assign(self._ordinal_kernel(self.to_logits.kernel.numpy()))

  def _ordinal_kernel(self, kernel):
    t = np.arange(self.num_values, dtype=np.float32) / ((self.num_values - 1) / 2.0) - 1.0
    kernel = kernel.reshape(self.hidden_size, self.channels, self.num_values).copy()
    for c in range(self.channels):
      kernel[3 * c : 3 * c + 3, c] = self.ordinal_init * np.stack([t, -t, -(t**2)])
    return kernel.reshape(self.hidden_size, self.channels * self.num_values)

  def features(self, z):
    """z [B, h, w, n, D] -> the last transposed convolution's output [B, H, W, hidden]."""
    shape = tf.shape(z)
    x = tf.reshape(z, [shape[0], shape[1], shape[2], z.shape[-2] * z.shape[-1]])
    x = tf.nn.relu(self.residual(self.from_latents(x)))
    for i in range(self.conv_layers):
      x = getattr(self, f"deconv_{i}")(x)
    return x

  def call(self, z):
    logits = tf.cast(self.to_logits(self.features(z)), tf.float32)
    shape = tf.shape(logits)
    return tf.reshape(logits, [shape[0], shape[1], shape[2], self.channels, self.num_values])


def pad_to_multiple(x, multiple, axis=1):
  """Pads `x` with zeros along `axis` up to a multiple of `multiple`."""
  length = tf.shape(x)[axis]
  extra = (-length) % multiple
  paddings = [[0, 0]] * len(x.shape)
  paddings[axis] = [0, extra]
  return tf.pad(x, paddings)
