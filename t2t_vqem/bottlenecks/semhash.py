"""Improved semantic hashing (Kaiser & Bengio 2018), as T2T ran it.

The paper's §5.1.1 baseline (24.1 BLEU in its comparison; Table 1's
"LT + Semhash"), following T2T's `discretization.discrete_bottleneck`
(bottleneck_kind "semhash"):

  c = dense(x) to num_bits pre-activations ("vcc")
  y = saturating_sigmoid(c + n), n ~ TruncatedNormal(0, noise_std) in training
      only; the bits d = 1[y > 0.5], passed on as y_d = d + y - sg(y)
  training: each example (first axis of x) takes y_d with probability
            discrete_mix * inverse_exp_decay(2 * startup_steps), y otherwise;
  inference: y_d (= d)
  decoder input dense_a(v) + dense_b(1 - v) ("vch1a", "vch1b", width
  filter_size), then a linear map to D ("vch_final_linear")

The code of a position is its bits read as an integer (little-endian), so
num_codes = 2^num_bits and embed(codes) feeds the bits of each code. The
schedule counts this layer's training calls (its `step` variable). The noise and
the per-example choice draw from `noise_seed`, a keras.random.SeedGenerator the
trainer checkpoints (a resumed run draws what an unbroken one would).
"""

import keras
import tensorflow as tf

from t2t_vqem import registry
from t2t_vqem.bottlenecks import base
from t2t_vqem.bottlenecks import replicas

MAX_BITS = 24


def saturating_sigmoid(x):
  """max(0, min(1, 1.2 * sigmoid(x) - 0.1)) (Kaiser & Bengio 2018)."""
  return tf.clip_by_value(1.2 * tf.sigmoid(x) - 0.1, 0.0, 1.0)


def bits_to_int(bits):
  """Little-endian bits [..., num_bits] (0/1) -> int32 [...]."""
  powers = tf.constant([2**i for i in range(bits.shape[-1])], tf.int32)
  return tf.reduce_sum(tf.cast(bits, tf.int32) * powers, axis=-1)


def int_to_bits(ints, num_bits):
  """int [...] -> little-endian float32 bits [..., num_bits]."""
  powers = tf.constant([2**i for i in range(num_bits)], tf.int32)
  ints = tf.cast(ints, tf.int32)[..., tf.newaxis]
  return tf.cast(tf.math.floormod(tf.math.floordiv(ints, powers), 2), tf.float32)


@registry.register_bottleneck("semhash")
class SemanticHashing(base.Bottleneck):
  """Improved semantic hashing: num_bits noisy saturating-sigmoid bits (§5.1.1).

  Output (`base.BottleneckOutput`): quantized [..., D]; codes int32 [...] in
  [0, 2^num_bits); soft_targets = one_hot(codes) [..., 2^num_bits]; loss 0;
  perplexity and usage over the 2^num_bits codes; draws = codes.

  Bad input (`base`'s rules): a row holding a NaN or an Inf is left out of
  perplexity and usage; its code is valid (a NaN bit reads as 0), its decoder
  input may not be finite (the loss is 0 whatever the input). The call changes
  no weight but `step` (+1 per training call, whatever the batch). num_bits = 0
  (K = 1) is refused (ValueError).

  Args:
    num_bits: bits per position, 1 <= num_bits <= 24 (T2T's z_size; the paper: 12).
    noise_std: standard deviation of the training noise (T2T's noise_dev: 0.5).
    discrete_mix: the final probability of the discrete value in training
      (T2T's d_mix: 0.5).
    startup_steps: the discrete probability ramps up over 2 * startup_steps
      (T2T: 10000).
    filter_size: width of the bits' embedding before the final linear map
      (T2T: the model's filter size; None = D).
    embedding_dim: optional D; if given the layer is built at construction.
  """

  def __init__(
    self,
    num_bits=12,
    noise_std=0.5,
    discrete_mix=0.5,
    startup_steps=10000,
    filter_size=None,
    embedding_dim=None,
    **kwargs,
  ):
    super().__init__(embedding_dim=embedding_dim, **kwargs)
    base.check_int("num_bits", num_bits, 1, "bits per position")
    if num_bits > MAX_BITS:
      raise ValueError(
        f"num_bits={num_bits!r} is not accepted; expected an int in [1, {MAX_BITS}]."
      )
    base.check_int("startup_steps", startup_steps, 1, "steps of the discrete ramp")
    self.num_bits = int(num_bits)
    self.noise_std = base.check_float("noise_std", noise_std, 0.0)
    self.discrete_mix = base.check_float("discrete_mix", discrete_mix, 0.0, 1.0)
    self.startup_steps = int(startup_steps)
    self.filter_size = None if filter_size is None else int(filter_size)
    self.noise_seed = keras.random.SeedGenerator(name="noise_seed")  # noise, discrete choice
    self._build_if_dim_known()

  @property
  def num_codes(self):
    return 2**self.num_bits

  def _build_weights(self, dim):
    width = self.filter_size or dim
    self.bits_layer = self._dense(self.num_bits, "bits", dim)
    self.embed_on = self._dense(width, "embed_on", self.num_bits)
    self.embed_off = self._dense(width, "embed_off", self.num_bits)
    self.embed_final = self._dense(dim, "embed_final", width)
    self._add_step_counter()

  @staticmethod
  def _dense(units, name, d_in):
    layer = keras.layers.Dense(units, name=name, dtype="float32")
    layer.build((None, d_in))
    return layer

  def discrete_probability(self, step):
    """The probability of the discrete bits in training at `step`."""
    return self.discrete_mix * base.inverse_exp_decay(2 * self.startup_steps, step)

  def embed_bits(self, v):
    """Decoder input [N, D] for bits or soft bits v [N, num_bits]."""
    return self.embed_final(self.embed_on(v) + self.embed_off(1.0 - v))

  def call(self, x, training=None, mask=None):
    x, flat, batch_shape, _, keep = self._flatten(x, mask)
    c = self.bits_layer(flat)
    if training and self.noise_std > 0.0:
      seed = replicas.next_seed(self.noise_seed)
      c += tf.random.stateless_truncated_normal(tf.shape(c), seed, stddev=self.noise_std)
    y = saturating_sigmoid(c)
    bits = tf.cast(y > 0.5, tf.float32)
    v = bits + y - tf.stop_gradient(y)
    if training:  # per example, as T2T: the first axis of x
      examples = batch_shape[0]
      uniform = tf.random.stateless_uniform([examples], replicas.next_seed(self.noise_seed))
      use = uniform < self.discrete_probability(self.step)
      per_row = tf.repeat(use, tf.shape(flat)[0] // tf.maximum(examples, 1))
      v = tf.where(per_row[:, tf.newaxis], v, y)
      self.step.assign(self.step + 1.0)
    codes = bits_to_int(bits)
    perplexity, usage = base.code_metrics(codes, self.num_codes, base.finite_rows(flat, keep)[1])
    codes_out = tf.reshape(codes, batch_shape)
    return base.BottleneckOutput(
      quantized=tf.reshape(tf.cast(self.embed_bits(v), x.dtype), tf.shape(x)),
      codes=codes_out,
      soft_targets=tf.one_hot(codes_out, self.num_codes, dtype=tf.float32),
      loss=tf.constant(0.0),
      perplexity=perplexity,
      usage=usage,
      draws=codes_out,
    )

  def embed(self, codes):
    """codes int [...] -> the embedding of their bits [..., D]."""
    codes = tf.convert_to_tensor(codes, tf.int32)
    q = self.embed_bits(tf.reshape(int_to_bits(codes, self.num_bits), [-1, self.num_bits]))
    return tf.reshape(q, tf.concat([tf.shape(codes), [self.embedding_dim]], axis=0))

  def encode(self, x):
    """The noiseless bits of each position of x [..., D] as codes: int32 [...]."""
    _, flat, batch_shape, _, _ = self._flatten(x, None)
    return tf.reshape(bits_to_int(saturating_sigmoid(self.bits_layer(flat)) > 0.5), batch_shape)

  def get_config(self):
    config = super().get_config()
    config.update(
      num_bits=self.num_bits,
      noise_std=self.noise_std,
      discrete_mix=self.discrete_mix,
      startup_steps=self.startup_steps,
      filter_size=self.filter_size,
    )
    return config
