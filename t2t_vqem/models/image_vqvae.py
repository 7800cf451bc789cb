"""VQ-VAE on images trained with hard or soft EM, with a local-attention latent prior (§5.2).

  x uint8 [B, 32, 32, 3] --Compress2D--> z_e [B, 8, 8, n, D] --bottleneck--> z_q, codes
  z_q --Decompress2D--> 256 logits per sub-pixel: P(x | z), an exact discrete likelihood
  codes (raster order, n_z = 8*8*n) --latent prior: causal local 1-D self-attention
  (Image Transformer), unconditional--> p(z)

Losses: reconstruction l_r = -log P(x | z) per sub-pixel, the commitment loss
beta ||z_e - sg(z_q)||^2 (Eq. 2), and the prior's cross entropy l_p per latent
against the soft targets (the mean of the sampled one-hots, §3.2; exact
one-hots in hard EM). Any registered bottleneck can stand in for the EM one.

Metric: the lower bound on -log p(x) in bits/dim,
(l_r n_x + l_p n_z) / n_x log2(e) (l_r per sub-pixel and l_p per latent in
nats, n_x = 32*32*3 sub-pixels, n_z = 8*8*10 latents in the paper), and its
two parts. In hard EM z is the nearest code and the bound is exact. In soft
EM the decoder sees the mean of the n_s sampled codes (Eq. 11) and l_p is the
prior's mean cross entropy over those samples, as in training.

Spatial sizes (the paper says "4 conv layers with 5x5 kernels and stride 2"
and an 8x8 latent field, which four halvings of 32x32 cannot give): here the
first `compress_steps` = 2 convolutions have stride 2 (32 -> 16 -> 8) and the
other two stride 1; the decoder mirrors it.
"""

import keras
import numpy as np
import tensorflow as tf

from t2t_vqem import bottlenecks  # noqa: F401  (registers the bottlenecks)
from t2t_vqem import registry
from t2t_vqem.layers import compression
from t2t_vqem.layers import transformer as layers

LN2 = float(np.log(2.0))


class ImageVqvae(keras.Model):
  """Unconditional image VQ-VAE with an autoregressive local-attention prior over its codes.

  Args:
    image_shape: (height, width, channels) of the uint8 pictures.
    hidden_size: channels of the encoder and decoder convolutions.
    compress_steps: stride-2 convolutions of the encoder (and of the decoder):
      the latent field is image size / 2^compress_steps (32 -> 8 with 2).
    conv_layers, kernel_size, residual_layers: the paper's 4, 5x5 and 2.
    latents_per_position: n latents at each position of the field (paper: 10).
    latent_dim: D, width of a code (paper: 512).
    bottleneck: registered name of the bottleneck (default: the preset's,
      hard_em for image_vqvae_vq, soft_em for image_vqvae_em); its arguments
      (the paper: codebook_size 2^8) are bound in Gin under its name or given
      as the dict bottleneck_args (which wins over Gin).
    prior_hidden_size, prior_layers, prior_heads, prior_filter_size,
    prior_dropout: the latent prior's Transformer (paper: 6 layers).
    prior_block_length: query block of its local 1-D attention.
    prior_loss_weight: weight of the prior's cross entropy in the loss.
    ordinal_init: (ours; 0 = off, the paper's) the scale of the decoder's ordered
      initialisation of its output layer (`compression.Decompress2D`).
  """

  interface = "image"  # what it serves (registry.MODEL_INTERFACES)
  default_bottleneck = "hard_em"

  def __init__(
    self,
    image_shape=(32, 32, 3),
    hidden_size=256,
    compress_steps=2,
    conv_layers=4,
    kernel_size=5,
    residual_layers=2,
    latents_per_position=10,
    latent_dim=512,
    bottleneck=None,
    bottleneck_args=None,
    prior_hidden_size=256,
    prior_layers=6,
    prior_heads=8,
    prior_filter_size=1024,
    prior_dropout=0.1,
    prior_block_length=64,
    prior_loss_weight=1.0,
    ordinal_init=0.0,
    **kwargs,
  ):
    super().__init__(**kwargs)
    height, width, channels = image_shape
    factor = 2**compress_steps
    if height % factor or width % factor:
      raise ValueError(
        f"image_shape={tuple(image_shape)} is not divisible by "
        f"2^compress_steps={factor}; accepted: sides multiple of {factor}"
      )
    self.image_shape = tuple(image_shape)
    self.field_shape = (height // factor, width // factor, latents_per_position)
    self.num_dims = height * width * channels  # n_x
    self.num_latents = int(np.prod(self.field_shape))  # n_z
    self.latent_dim = latent_dim
    self.prior_hidden_size = prior_hidden_size
    self.prior_loss_weight = prior_loss_weight

    self.encoder = compression.Compress2D(
      hidden_size,
      latent_dim,
      latents_per_position,
      compress_steps,
      conv_layers,
      kernel_size,
      residual_layers,
      name="encoder",
    )
    self.bottleneck = registry.build_bottleneck(
      bottleneck or self.default_bottleneck,
      embedding_dim=latent_dim,
      name="bottleneck",
      **(bottleneck_args or {}),
    )
    self.num_codes = self.bottleneck.num_codes
    self.decoder = compression.Decompress2D(
      hidden_size,
      channels,
      compress_steps,
      conv_layers,
      kernel_size,
      residual_layers,
      ordinal_init=ordinal_init,
      name="decoder",
    )
    self.prior_embedding = keras.layers.Embedding(
      self.num_codes, prior_hidden_size, name="prior_embedding"
    )
    self.prior_dropout = keras.layers.Dropout(prior_dropout)
    self.prior = layers.DecoderStack(
      prior_layers,
      prior_hidden_size,
      prior_heads,
      prior_filter_size,
      prior_dropout,
      causal=True,
      cross_attention=False,
      local_block_length=prior_block_length,
      name="prior",
    )
    self.prior_logits = layers.Dense(self.num_codes, name="prior_logits")
    self.build()

  def build(self, input_shape=None):
    self.encoder.build((None,) + self.image_shape)
    self.decoder.build((None,) + self.field_shape + (self.latent_dim,))
    self.prior_embedding.build((None,))
    self.prior.build()
    self.prior_logits.build((None, self.prior_hidden_size))

  # -- pieces ---------------------------------------------------------------

  def encode_continuous(self, images):
    """uint8 [B, H, W, C] -> z_e float [B, h, w, n, D]."""
    x = tf.cast(images, tf.float32) / 127.5 - 1.0
    return self.encoder(x)

  def decode_logits(self, z_q):
    """z_q [B, h, w, n, D] -> float32 logits [B, H, W, C, 256] of every sub-pixel value."""
    return self.decoder(z_q)

  def prior_inputs(self, codes, start=0, training=False):
    """codes [B, m] (the latents before positions start..start+m-1) -> [B, m, H_p].

    Position 0 gets a zero vector (the start symbol).
    """
    x = layers.shifted_inputs(self.prior_embedding(codes), start)
    return self.prior_dropout(x, training=training)

  def prior_log_probs(self, codes, training=False):
    """Raster-ordered codes [B, n_z] -> log p(z_i | z_<i) float32 [B, n_z, K]."""
    shifted = tf.pad(codes[:, :-1], [[0, 0], [1, 0]])
    y = self.prior(self.prior_inputs(shifted, training=training), training=training)
    return tf.nn.log_softmax(tf.cast(self.prior_logits(y), tf.float32))

  # -- training ---------------------------------------------------------------

  def call(self, features, training=False):
    """Reconstruction logits [B, H, W, C, 256] of features["targets"]."""
    z_e = self.encode_continuous(features["targets"])
    out = self.bottleneck(z_e, training=training)
    return self.decode_logits(tf.identity(out.quantized))

  def loss_terms(self, features, training=False, step=None):
    """Losses and metrics as {name: (numerator, denominator)} float32 scalars.

    losses: "reconstruction" (-log P(x | z) summed over sub-pixels, their
      count), "commitment" (Eq. 2 per latent vector) and "prior" (the latent
      prior's cross entropy against the soft targets, per latent).
    metrics: "bits_per_dim" and its parts "bits_per_dim_reconstruction" and
      "bits_per_dim_prior" (over sub-pixels), "prior_accuracy", and the
      bottleneck's "perplexity" and "usage".
    """
    del step  # no schedule
    images = features["targets"]
    batch = tf.cast(tf.shape(images)[0], tf.float32)
    z_e = self.encode_continuous(images)
    out = self.bottleneck(z_e, training=training)
    logits = self.decode_logits(tf.identity(out.quantized))
    # -log softmax(logits)[x] as logsumexp - the picked logit: the same values as
    # sparse_softmax_cross_entropy_with_logits, a third less time over these
    # [B, 32, 32, 3, 256] logits on CPU (BENCHMARKS.md, "The image quickstart").
    picked = tf.gather(logits, tf.cast(images, tf.int32), batch_dims=4)
    recon_sum = tf.reduce_sum(tf.reduce_logsumexp(logits, axis=-1) - picked)

    soft = tf.reshape(tf.stop_gradient(out.soft_targets), [-1, self.num_latents, self.num_codes])
    codes = tf.reshape(out.codes, [-1, self.num_latents])
    log_probs = self.prior_log_probs(codes, training=training)
    prior_sum = -tf.reduce_sum(soft * log_probs)
    correct = tf.cast(tf.equal(tf.argmax(log_probs, -1, output_type=tf.int32), codes), tf.float32)

    dims, latents = batch * self.num_dims, batch * self.num_latents
    losses = {
      "reconstruction": (recon_sum, dims),
      "commitment": (out.loss * latents, latents),
      "prior": (self.prior_loss_weight * prior_sum, latents),
    }
    metrics = {
      "bits_per_dim": ((recon_sum + prior_sum) / LN2, dims),
      "bits_per_dim_reconstruction": (recon_sum / LN2, dims),
      "bits_per_dim_prior": (prior_sum / LN2, dims),
      "prior_nll": (prior_sum, latents),
      "prior_accuracy": (tf.reduce_sum(correct), latents),
      "perplexity": (out.perplexity, 1.0),
      "usage": (out.usage, 1.0),
    }
    return losses, metrics

  # -- inference ----------------------------------------------------------------

  def encode(self, images):
    """uint8 images [B, H, W, C] -> int32 codes [B, h, w, n]: the most probable code
    (the nearest, Eq. 1, for the EM bottlenecks)."""
    return self.bottleneck.encode(self.encode_continuous(images))

  def decode(self, codes):
    """int codes [B, h, w, n] -> uint8 images [B, H, W, C]: the most likely value per sub-pixel."""
    logits = self.decode_logits(self.bottleneck.embed(codes))
    return tf.cast(tf.argmax(logits, axis=-1), tf.uint8)

  def reconstruct(self, images):
    """uint8 images -> uint8 reconstructions through the nearest codes."""
    return self.decode(self.encode(images))

  def sample_codes(self, count, seed, temperature=1.0):
    """`count` code fields [count, h, w, n] drawn from the prior, ancestrally.

    Cached incremental decoding over the n_z raster positions (no recompute of
    past positions); `seed` is an int32 [2] stateless seed, so a seed always
    gives the same codes.
    """
    seed = tf.convert_to_tensor(seed, tf.int32)
    cache = self.prior.init_cache(count, self.num_latents)
    codes = tf.zeros([count, self.num_latents], tf.int32)

    def body(i, codes, cache):
      previous = tf.gather(codes, tf.maximum(i - 1, 0), axis=1)[:, None]
      x = self.prior_inputs(previous, start=i)
      y, cache = self.prior(x, cache=cache, step=i)
      logits = tf.cast(self.prior_logits(y[:, 0]), tf.float32) / temperature
      drawn = tf.random.stateless_categorical(
        logits, 1, seed=tf.random.experimental.stateless_fold_in(seed, i), dtype=tf.int32
      )
      codes = tf.where(tf.equal(tf.range(self.num_latents), i)[None], drawn, codes)
      return i + 1, codes, cache

    _, codes, _ = tf.while_loop(
      lambda i, *_: i < self.num_latents, body, (tf.constant(0), codes, cache)
    )
    return tf.reshape(codes, (-1,) + self.field_shape)

  def sample(self, count, seed, temperature=1.0):
    """`count` uint8 images from the prior: codes drawn by `sample_codes`, then decoded."""
    return self.decode(self.sample_codes(count, seed, temperature))


registry.register_model("image_vqvae")(ImageVqvae)


@registry.register_model("image_vqvae_vq")
class ImageVqvaeVq(ImageVqvae):
  """Image VQ-VAE trained by hard EM (VQ-VAE with EMA, §2.2)."""

  default_bottleneck = "hard_em"


@registry.register_model("image_vqvae_em")
class ImageVqvaeEm(ImageVqvae):
  """Image VQ-VAE trained by Monte-Carlo soft EM (§3.2), n_s = 10 by default."""

  default_bottleneck = "soft_em"
