"""Gumbel-softmax bottleneck (Jang et al. 2016; Maddison et al. 2016), as T2T ran it.

The paper's §5.1.1 baseline (23.2 BLEU in its comparison), following T2T's
`discretization.gumbel_softmax` (bottleneck_kind "gumbel-softmax"):

  logits = dense(x) over K codes, log_p = log_softmax(logits)
  training: g ~ Gumbel(0, 1) scaled by 0.5 * inverse_exp_decay(warmup / 5),
            temperature T = 1.2 - inverse_lin_decay(warmup) (1.19 -> 0.2),
            but 10% of the steps T ~ Uniform(0.5, 1) ("to keep learning");
            y = softmax((log_p + g) / T), the soft sample, is the decoder input
            and the code is its argmax
  inference: y = one_hot(argmax logits)
  decoder input q = y W + b (T2T's "dae_dense"), so embed(j) = W_j + b
  loss = variance_weight * d_dev + kl_weight * mean(-max_j log_p_j), where
         d_dev = -mean_j Var_i(log_p_ij * 1[j = argmax_k p_ik]) (T2T's terms
         "that prevent too few being used")

The schedules count this layer's training calls (its `step` variable), T2T's
global step. `straight_through=True` (ours, off by default) feeds the hard
one-hot of the sample with the straight-through gradient instead of y. The
noise and the temperature draw from `noise_seed`, a keras.random.SeedGenerator
the trainer checkpoints (a resumed run draws what an unbroken one would); under
a strategy the noise is each replica's own, the temperature one for all.
"""

import keras
import tensorflow as tf

from t2t_vqem import registry
from t2t_vqem.bottlenecks import base
from t2t_vqem.bottlenecks import replicas


@registry.register_bottleneck("gumbel_softmax")
class GumbelSoftmax(base.Bottleneck):
  """Gumbel-softmax over K codes with T2T's annealed noise and temperature (§5.1.1).

  Output (`base.BottleneckOutput`): quantized [..., D]; codes int32 [...] (the
  sample's argmax in training, the logits' argmax in inference); soft_targets =
  one_hot(codes) [..., K]; loss as above (mean over kept positions);
  perplexity and usage of the codes; draws = codes.

  Bad input (`base`'s rules): a row holding a NaN or an Inf is left out of
  perplexity and usage; its code is valid, its inference decoder input a
  (finite) row of W + b, its training input may not be finite, and the loss
  is then not finite. The call changes no weight but `step` (+1 per training call,
  whatever the batch). codebook_size = 1 is refused (ValueError).

  Args:
    codebook_size: K >= 2 (T2T: 2^z_size).
    temperature_warmup_steps: T2T's temperature_warmup_steps (150000).
    kl_weight: weight of the mean -max log p term (T2T: 0.002).
    variance_weight: weight of d_dev (T2T: 5.0).
    straight_through: feed one_hot(sample) + y - sg(y) (ours; T2T feeds y).
    embedding_dim: optional D; if given the layer is built at construction.
  """

  def __init__(
    self,
    codebook_size=4096,
    temperature_warmup_steps=150000,
    kl_weight=0.002,
    variance_weight=5.0,
    straight_through=False,
    embedding_dim=None,
    **kwargs,
  ):
    super().__init__(embedding_dim=embedding_dim, **kwargs)
    base.check_int("codebook_size", codebook_size, 2, "the number of codes")
    base.check_int(
      "temperature_warmup_steps",
      temperature_warmup_steps,
      5,
      "steps over which the temperature anneals",
    )
    self.codebook_size = int(codebook_size)
    self.temperature_warmup_steps = int(temperature_warmup_steps)
    self.kl_weight = base.check_float("kl_weight", kl_weight, 0.0)
    self.variance_weight = base.check_float("variance_weight", variance_weight, 0.0)
    self.straight_through = bool(straight_through)
    self.noise_seed = keras.random.SeedGenerator(name="noise_seed")  # noise, temperature
    self._build_if_dim_known()

  @property
  def num_codes(self):
    return self.codebook_size

  def _build_weights(self, dim):
    k = self.codebook_size
    self.logits_layer = keras.layers.Dense(k, name="logits", dtype="float32")
    self.logits_layer.build((None, dim))
    self.codebook = self.add_weight(
      name="codebook",
      shape=(k, dim),
      dtype="float32",
      autocast=False,
      initializer=keras.initializers.VarianceScaling(distribution="uniform"),
    )
    self.codebook_bias = self.add_weight(
      name="codebook_bias", shape=(dim,), dtype="float32", initializer="zeros", autocast=False
    )
    self._add_step_counter()

  def temperature(self, step):
    """T2T's annealed temperature at `step` (before the 10% random draws)."""
    return 1.2 - base.inverse_lin_decay(self.temperature_warmup_steps, step)

  def noise_scale(self, step):
    """The scale of the Gumbel noise at `step`: 0.005 rising to 0.5 at warmup / 5."""
    return 0.5 * base.inverse_exp_decay(self.temperature_warmup_steps // 5, step)

  def call(self, x, training=None, mask=None):
    x, flat, batch_shape, weights, keep = self._flatten(x, mask)
    k = self.codebook_size
    logits = self.logits_layer(flat)
    log_p = tf.nn.log_softmax(logits)
    argmax_hot = tf.one_hot(tf.argmax(logits, -1), k)
    if training:
      seed = replicas.next_seed(self.noise_seed)
      uniform = tf.random.stateless_uniform(tf.shape(logits), seed, minval=1e-10, maxval=1.0)
      noisy = log_p - tf.math.log(-tf.math.log(uniform)) * self.noise_scale(self.step)
      # One temperature per step for all replicas, as on one device.
      switch = tf.random.stateless_uniform([], replicas.next_seed(self.noise_seed, False))
      random_t = tf.random.stateless_uniform(
        [], replicas.next_seed(self.noise_seed, False), minval=0.5, maxval=1.0
      )
      temperature = tf.where(switch < 0.9, self.temperature(self.step), random_t)
      y = tf.nn.softmax(noisy / temperature)
      codes = tf.argmax(noisy, axis=-1, output_type=tf.int32)
      if self.straight_through:
        y = tf.one_hot(codes, k) + y - tf.stop_gradient(y)
      self.step.assign(self.step + 1.0)
    else:
      y, codes = argmax_hot, tf.argmax(logits, axis=-1, output_type=tf.int32)
    q = tf.matmul(y, self.codebook) + self.codebook_bias
    # T2T's two terms: the variance over positions of the winning log-probs
    # (d_dev) and the mean -max log p.
    winning = log_p * argmax_hot
    w = tf.ones_like(log_p[:, 0]) if weights is None else weights
    w = w[:, tf.newaxis]
    total = tf.maximum(tf.reduce_sum(w), 1e-9)
    winning = tf.where(w > 0.0, winning, 0.0)
    mean = tf.reduce_sum(winning * w, axis=0, keepdims=True) / total
    variance = tf.reduce_sum(tf.square(winning - mean) * w, axis=0) / total
    loss = self.variance_weight * -tf.reduce_mean(variance) + self.kl_weight * base.masked_mean(
      -tf.reduce_max(log_p, axis=-1), weights
    )
    perplexity, usage = base.code_metrics(codes, k, base.finite_rows(flat, keep)[1])
    codes_out = tf.reshape(codes, batch_shape)
    return base.BottleneckOutput(
      quantized=tf.reshape(tf.cast(q, x.dtype), tf.shape(x)),
      codes=codes_out,
      soft_targets=tf.one_hot(codes_out, k, dtype=tf.float32),
      loss=loss,
      perplexity=perplexity,
      usage=usage,
      draws=codes_out,
    )

  def embed(self, codes):
    """codes int [...] -> W_codes + b [..., D], the inference decoder input."""
    return tf.gather(self.codebook, tf.convert_to_tensor(codes, tf.int32)) + self.codebook_bias

  def encode(self, x):
    """argmax of the logits of each position of x [..., D]: int32 [...]."""
    _, flat, batch_shape, _, _ = self._flatten(x, None)
    return tf.reshape(tf.argmax(self.logits_layer(flat), -1, output_type=tf.int32), batch_shape)

  def get_config(self):
    config = super().get_config()
    config.update(
      codebook_size=self.codebook_size,
      temperature_warmup_steps=self.temperature_warmup_steps,
      kl_weight=self.kl_weight,
      variance_weight=self.variance_weight,
      straight_through=self.straight_through,
    )
    return config
