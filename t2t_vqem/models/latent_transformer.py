"""The Latent Transformer with a VQ bottleneck trained by hard or soft EM (§5.1, Fig. 2).

Non-autoregressive translation through discrete latents (Kaiser et al. 2018,
as simplified by the paper):

  source x --EncoderStack--> memory
  target y --embed, Compress1D (n_c halvings)--> z_e --bottleneck--> z_q, codes
  z_q --Decompress1D--> d --shift right, DecoderStack(causal, attends to memory)--> p(y | z, x)
  z_q --shift right, latent predictor: DecoderStack(causal, attends to memory)--> p(z | x)

As in the reference code (Tensor2Tensor's transformer_nat.py, which cites the
paper), the decoder is a Transformer decoder over d shifted right by one
position: causal self-attention, still one parallel pass at inference since d
does not depend on the output. `decoder_causal=False` (ours) reads d unshifted
with bidirectional self-attention.

Losses: reconstruction -log p(y | z_q, x) (cross entropy, label smoothing optional), the
bottleneck's commitment loss beta ||z_e - sg(z_q)||^2 (Eq. 2), and the latent
predictor's cross entropy against the soft targets (the mean of the sampled
one-hots, §3.2; exact one-hots in hard EM).

The latent sequence carries its own length: the latent predictor has one class
more than the bottleneck has codes, END (= num_codes), predicted after the last latent.
A target of T tokens (EOS included) has ceil(T / 2^n_c) latents, and at
inference the number of decoded latents sets the target length (2^n_c tokens
per latent); the parallel decoder's output is cut at its first EOS.

Training schedule (the reference code's): before the shift, the decoder input
is mixed with the embedded gold target, position by position, with the
probability `gold_rate(step)`, 1 at step 0 and 0 from `mask_startup_steps` on;
after the shift position i sees gold tokens < i only, so the warm-up is teacher
forcing (a non-causal decoder would see the answer: that is refused). The
latent predictor's loss is off before `latent_loss_start_step`.

The latent predictor (`latent_predictor_inputs`): "bottleneck" (the reference
code) reads the bottleneck's output z_q (Eq. 11's mean, straight-through) in
training and the codebook rows of the decoded codes (`bottleneck.embed`) at
inference, and its loss trains the source encoder and, through z_q, the target
encoder; "embedding" (ours) reads its own embedding of the argmax codes, and
its loss trains neither encoder. BENCHMARKS.md ("The reference code's Latent
Transformer vs our earlier variants") compares the two.
"""

import keras
import tensorflow as tf

from t2t_vqem import bottlenecks  # noqa: F401  (registers the bottlenecks)
from t2t_vqem import registry
from t2t_vqem import search
from t2t_vqem.bottlenecks import base as bottleneck_base
from t2t_vqem.layers import compression
from t2t_vqem.layers import transformer as layers
from t2t_vqem.models import transformer as transformer_model
from t2t_vqem.search import EOS_ID
from t2t_vqem.search import PAD_ID

LATENT_PREDICTOR_INPUTS = ("bottleneck", "embedding")


class LatentTransformer(keras.Model):
  """Latent Transformer: non-autoregressive translation through discrete latents.

  Args:
    vocab_size: shared source/target vocabulary size.
    hidden_size, num_layers, num_heads, filter_size, dropout: Transformer sizes
      of the source encoder, the decoder and (unless latent_layers is set) the
      latent predictor.
    label_smoothing: of the reconstruction loss (reference code: 0).
    compress_steps: n_c; the latent sequence is 2^n_c times shorter.
    residual_layers: residual blocks before the compressor's strided steps
      (default n_c, as the reference code); the decompressor has one per step.
    residual_convs: convolutions per residual block (reference code: 3).
    compress_kernel_size: of the strided convolutions (reference code: 2).
    compress_output_norm: layer-normalise z_e (ours; not in the reference code).
    compress_attend_to_source: the target encoder also attends to the source
      encoder output (Kaiser et al.); off by default (§5.1.1).
    bottleneck: the registered name of the bottleneck (`--registry_help`
      lists them; default: the preset's, hard_em for latent_transformer_vq,
      soft_em for latent_transformer_em). Its own arguments are bound in Gin
      under its name (`soft_em.codebook_size = 4096`) or given here as
      `bottleneck_args` (a dict, which wins over Gin).
    bottleneck_args: dict of the bottleneck's arguments (embedding_dim is
      hidden_size).
    latent_layers: layers of the latent predictor (default num_layers).
    latent_predictor_inputs: "bottleneck" (the reference code) or "embedding"
      (ours); see the module docstring.
    decoder_causal: the decoder reads d shifted right with causal
      self-attention (True, the reference code) or d as it is, bidirectionally
      (False, ours; needs mask_startup_steps = 0).
    mask_startup_steps: steps over which the decoder input goes from gold
      target embeddings to decompressed latents only (see `gold_rate`).
    latent_loss_start_step: the latent predictor's loss counts from this step.
    latent_loss_weight: its weight.
    beam_size, alpha: search over latents at inference (1 = greedy).
    max_decode_extra: at inference, at most ceil((source length +
      max_decode_extra) / 2^n_c) latents are decoded.
  """

  interface = "latent_translation"  # what it serves (registry.MODEL_INTERFACES)
  default_bottleneck = "hard_em"

  def __init__(
    self,
    vocab_size,
    hidden_size=512,
    num_layers=6,
    num_heads=8,
    filter_size=2048,
    dropout=0.1,
    label_smoothing=0.0,
    compress_steps=3,
    residual_layers=None,
    residual_convs=3,
    compress_kernel_size=2,
    compress_output_norm=False,
    compress_attend_to_source=False,
    bottleneck=None,
    bottleneck_args=None,
    latent_layers=None,
    latent_predictor_inputs="bottleneck",
    decoder_causal=True,
    mask_startup_steps=50000,
    latent_loss_start_step=10000,
    latent_loss_weight=1.0,
    beam_size=1,
    alpha=0.0,
    max_decode_extra=10,
    **kwargs,
  ):
    super().__init__(**kwargs)
    if latent_predictor_inputs not in LATENT_PREDICTOR_INPUTS:
      raise ValueError(
        f"latent_predictor_inputs={latent_predictor_inputs!r} is not accepted; "
        f"expected one of {LATENT_PREDICTOR_INPUTS}"
      )
    bottleneck_base.check_int("mask_startup_steps", mask_startup_steps, 0, "steps of warm-up")
    if mask_startup_steps and not decoder_causal:
      raise ValueError(
        f"mask_startup_steps={mask_startup_steps} with decoder_causal=False: the gold-target "
        "warm-up would show a bidirectional decoder the tokens it must predict; accepted: "
        "decoder_causal=True (the reference code), or mask_startup_steps=0"
      )
    self.vocab_size, self.hidden_size = vocab_size, hidden_size
    self.latent_predictor_inputs = latent_predictor_inputs
    self.decoder_causal = bool(decoder_causal)
    self.label_smoothing = label_smoothing
    self.compress_steps = compress_steps
    self.compress_attend_to_source = compress_attend_to_source
    self.mask_startup_steps = mask_startup_steps
    self.latent_loss_start_step = latent_loss_start_step
    self.latent_loss_weight = latent_loss_weight
    self.beam_size, self.alpha = beam_size, alpha
    self.max_decode_extra = max_decode_extra
    latent_layers = latent_layers or num_layers

    self.embedding = transformer_model.SharedEmbedding(vocab_size, hidden_size, name="embedding")
    self.input_dropout = keras.layers.Dropout(dropout)
    self.gold_seed = keras.random.SeedGenerator(name="gold_seed")  # checkpointed by the trainer
    self.source_encoder = layers.EncoderStack(
      num_layers, hidden_size, num_heads, filter_size, dropout, name="source_encoder"
    )
    self.compress = compression.Compress1D(
      hidden_size,
      compress_steps,
      compress_steps if residual_layers is None else residual_layers,
      residual_convs=residual_convs,
      stride_kernel_size=compress_kernel_size,
      output_norm=compress_output_norm,
      dropout=dropout,
      name="compress",
    )
    if compress_attend_to_source:
      self.compress_attention_norm = layers.LayerNorm(epsilon=1e-6)
      self.compress_attention = layers.MultiHeadAttention(
        hidden_size, num_heads, name="compress_attention"
      )
    self.bottleneck = registry.build_bottleneck(
      bottleneck or self.default_bottleneck,
      embedding_dim=hidden_size,
      name="bottleneck",
      **(bottleneck_args or {}),
    )
    self.num_codes = self.bottleneck.num_codes
    self.end_id = self.num_codes  # the latent predictor's END class
    self.decompress = compression.Decompress1D(
      hidden_size, compress_steps, residual_convs=residual_convs, dropout=dropout, name="decompress"
    )
    self.decoder = layers.DecoderStack(
      num_layers,
      hidden_size,
      num_heads,
      filter_size,
      dropout,
      causal=self.decoder_causal,
      cross_attention=True,
      name="decoder",
    )
    if latent_predictor_inputs == "embedding":
      self.latent_embedding = keras.layers.Embedding(
        self.num_codes, hidden_size, name="latent_embedding"
      )
    self.latent_predictor = layers.DecoderStack(
      latent_layers,
      hidden_size,
      num_heads,
      filter_size,
      dropout,
      causal=True,
      cross_attention=True,
      name="latent_predictor",
    )
    self.latent_logits = layers.Dense(self.num_codes + 1, name="latent_logits")
    self.build()

  def build(self, input_shape=None):
    for layer in (
      self.embedding,
      self.source_encoder,
      self.compress,
      self.decompress,
      self.decoder,
      self.latent_predictor,
    ):
      layer.build()
    if self.latent_predictor_inputs == "embedding":
      self.latent_embedding.build((None,))
    self.latent_logits.build((None, self.hidden_size))
    if self.compress_attend_to_source:
      self.compress_attention_norm.build((None, None, self.hidden_size))
      self.compress_attention.build()

  # -- pieces ---------------------------------------------------------------

  @property
  def compression_factor(self):
    return 2**self.compress_steps

  def _with_positions(self, x, training):
    return self.input_dropout(layers.add_positions(x), training=training)

  def encode_source(self, inputs, training=False):
    """inputs [B, S] -> (memory [B, S, H], mask bool [B, S])."""
    mask = layers.padding_mask(inputs, PAD_ID)
    x = self._with_positions(self.embedding(inputs), training)
    return self.source_encoder(x, padding_mask=mask, training=training), mask

  def encode_target(self, targets, memory, memory_mask, training=False):
    """targets [B, T] -> (z_e [B, L, H], latent mask bool [B, L]), L = ceil(T / 2^n_c)."""
    targets = compression.pad_to_multiple(targets, self.compression_factor)
    mask = layers.padding_mask(targets, PAD_ID)
    x = self._with_positions(self.embedding(targets), training)
    z_e = self.compress(x, padding_mask=mask, training=training)
    latent_mask = compression.downsample_mask(mask, self.compress_steps)
    if self.compress_attend_to_source:
      z_e += self.compress_attention(
        self.compress_attention_norm(z_e),
        memory=memory,
        bias=layers.padding_bias(memory_mask),
        training=training,
      )
      z_e *= tf.cast(latent_mask, z_e.dtype)[..., None]
    return z_e, latent_mask

  def decode_latents(
    self, z_q, latent_mask, memory, memory_mask, gold=None, gold_rate=None, training=False
  ):
    """Parallel decoder: z_q [B, L, H] -> logits [B, L * 2^n_c, V].

    With `gold` (embedded targets [B, L * 2^n_c, H]) each position takes the
    gold embedding instead of the decompressed latent with probability
    gold_rate; the causal decoder then reads the mix shifted right by one, so
    position i sees gold tokens before i only.
    """
    d = self.decompress(z_q, padding_mask=latent_mask, training=training)
    mask = compression.upsample_mask(latent_mask, self.compress_steps)
    if gold is not None:
      use_gold = keras.random.uniform(tf.shape(mask), seed=self.gold_seed) < gold_rate
      d = tf.where(use_gold[..., None], tf.cast(gold, d.dtype), d)
    if self.decoder_causal:
      d = self.input_dropout(layers.shifted_inputs(_shift_right(d)), training=training)
      padding = None  # causal: a real position never attends to a later (padded) one
    else:
      d = self._with_positions(d, training)
      padding = mask
    y = self.decoder(
      d, memory=memory, memory_padding_mask=memory_mask, padding_mask=padding, training=training
    )
    return self.embedding.logits(y)

  def _latent_predictor_inputs(self, previous, start=0, training=False):
    """The latent predictor's inputs [B, n, H] at positions start..start+n-1.

    previous: what precedes each position, the latent before it (position 0's
    is ignored: the start symbol is a zero vector): codes int [B, n] for
    "embedding" inputs, vectors [B, n, H] (z_q in training, codebook rows at
    inference) for "bottleneck" inputs.
    """
    if self.latent_predictor_inputs == "embedding":
      previous = self.latent_embedding(tf.minimum(previous, self.num_codes - 1))
    return self.input_dropout(layers.shifted_inputs(previous, start), training=training)

  def gold_rate(self, step):
    """Probability of feeding the gold target at a decoder position (the reference code):
    1 - min(1, lin(step) * exp(step)), T2T's inverse_lin_decay over mask_startup_steps
    times inverse_exp_decay over a quarter of them; 1 at step 0, 0 from mask_startup_steps."""
    if step is None or not self.mask_startup_steps:
      return 0.0
    startup = self.mask_startup_steps
    masking = bottleneck_base.inverse_lin_decay(startup, step) * bottleneck_base.inverse_exp_decay(
      max(startup // 4, 1), step
    )
    return 1.0 - tf.clip_by_value(masking, 0.0, 1.0)

  # -- training ---------------------------------------------------------------

  def forward(self, features, training=False, step=None):
    """Everything the losses need, as a dict of tensors (teacher forcing)."""
    inputs = tf.convert_to_tensor(features["inputs"], tf.int32)
    targets = tf.convert_to_tensor(features["targets"], tf.int32)
    memory, memory_mask = self.encode_source(inputs, training)
    z_e, latent_mask = self.encode_target(targets, memory, memory_mask, training)
    out = self.bottleneck(z_e, training=training, mask=latent_mask)
    gold = None
    if training and step is not None:
      padded = compression.pad_to_multiple(targets, self.compression_factor)
      gold = self.embedding(padded)
    # tf.identity drops the Keras mask the bottleneck attaches to its output.
    logits = self.decode_latents(
      tf.identity(out.quantized),
      latent_mask,
      memory,
      memory_mask,
      gold=gold,
      gold_rate=self.gold_rate(step) if gold is not None else None,
      training=training,
    )
    logits = logits[:, : tf.shape(targets)[1]]

    # Latent predictor: position j predicts latent j, position n_z predicts END.
    soft = tf.stop_gradient(out.soft_targets)  # [B, L, num_codes]
    codes = out.codes
    num_latents = tf.reduce_sum(tf.cast(latent_mask, tf.int32), axis=1)  # [B]
    length = tf.shape(codes)[1] + 1
    labels = tf.pad(soft * tf.cast(latent_mask, soft.dtype)[..., None], [[0, 0], [0, 1], [0, 1]])
    end = tf.one_hot(num_latents, length)[..., None] * tf.one_hot(self.end_id, self.num_codes + 1)
    labels += end
    predictor_mask = tf.sequence_mask(num_latents + 1, length)
    if self.latent_predictor_inputs == "bottleneck":  # z_q, straight-through; both encoders learn
      previous = tf.pad(tf.identity(out.quantized), [[0, 0], [1, 0], [0, 0]])
    else:  # its own embedding of the codes; neither encoder learns from this loss
      previous, memory = tf.pad(codes, [[0, 0], [1, 0]]), tf.stop_gradient(memory)
    x = self._latent_predictor_inputs(previous, training=training)
    y = self.latent_predictor(x, memory=memory, memory_padding_mask=memory_mask, training=training)
    latent_logits = tf.cast(self.latent_logits(y), tf.float32)
    return {
      "logits": logits,
      "targets": targets,
      "bottleneck": out,
      "latent_mask": latent_mask,
      "latent_logits": latent_logits,
      "latent_labels": labels,
      "predictor_mask": predictor_mask,
    }

  def call(self, features, training=False):
    """Teacher-forced reconstruction logits [B, T, V] (latents from the target encoder)."""
    return self.forward(features, training=training)["logits"]

  def loss_terms(self, features, training=False, step=None):
    """Losses and metrics as {name: (numerator, denominator)}.

    losses: "reconstruction" (token cross entropy, label_smoothing), "commitment"
      (beta ||z_e - sg(z_q)||^2, Eq. 2, averaged over real latents),
      "latent_prediction" (cross entropy against the soft targets, weighted by
      latent_loss_weight once step >= latent_loss_start_step).
    metrics: token "accuracy", "latent_accuracy", "latent_nll", codebook
      "perplexity" and "usage" (fraction of codes used in the batch).
    """
    f = self.forward(features, training=training, step=step)
    targets = f["targets"]
    xent, nll = transformer_model.token_cross_entropy(f["logits"], targets, self.label_smoothing)
    weights = tf.cast(tf.not_equal(targets, PAD_ID), tf.float32)
    tokens = tf.reduce_sum(weights)
    latents = tf.reduce_sum(tf.cast(f["latent_mask"], tf.float32))
    predictor_weights = tf.cast(f["predictor_mask"], tf.float32)
    predicted = tf.reduce_sum(predictor_weights)
    latent_xent = tf.nn.softmax_cross_entropy_with_logits(f["latent_labels"], f["latent_logits"])
    latent_sum = tf.reduce_sum(latent_xent * predictor_weights)
    weight = self.latent_loss_weight
    if step is not None:
      weight *= tf.cast(step >= self.latent_loss_start_step, tf.float32)
    out = f["bottleneck"]
    correct = tf.cast(
      tf.equal(tf.argmax(f["logits"], -1, output_type=tf.int32), targets), tf.float32
    )
    latent_correct = tf.cast(
      tf.equal(tf.argmax(f["latent_logits"], -1), tf.argmax(f["latent_labels"], -1)), tf.float32
    )
    losses = {
      "reconstruction": (tf.reduce_sum(xent * weights), tokens),
      "commitment": (out.loss * latents, latents),
      "latent_prediction": (weight * latent_sum, predicted),
    }
    metrics = {
      "accuracy": (tf.reduce_sum(correct * weights), tokens),
      "nll": (tf.reduce_sum(nll * weights), tokens),
      "latent_accuracy": (tf.reduce_sum(latent_correct * predictor_weights), predicted),
      "latent_nll": (latent_sum, predicted),
      "perplexity": (out.perplexity, 1.0),
      "usage": (out.usage, 1.0),
    }
    return losses, metrics

  # -- inference ----------------------------------------------------------------

  def reconstruct(self, inputs, targets):
    """Teacher-forced decode: latents from the target encoder -> ids [B, T] cut at EOS."""
    logits = self.forward({"inputs": inputs, "targets": targets}, training=False)["logits"]
    return cut_at_eos(tf.argmax(logits, axis=-1, output_type=tf.int32))

  def predict_latents(self, memory, memory_mask, max_latents, beam_size, alpha, steps=None):
    """Latent codes [B, L] and their count [B] from the latent predictor (cached search).

    max_latents: int32 [B] (or a scalar for every row), the most latents a row may
    decode; L = steps - 1, where steps (a scalar >= every max_latents + 1, for END;
    default the least) sizes the search's buffers. Codes past a row's count are 0.
    """
    batch_size = tf.shape(memory)[0]
    max_latents = tf.broadcast_to(tf.cast(max_latents, tf.int32), [batch_size])
    if steps is None:
      steps = tf.reduce_max(max_latents) + 1
    cache = {
      "decoder": self.latent_predictor.init_cache(batch_size, steps, memory, memory_mask),
      "limit": max_latents + 1,
    }

    def symbols_to_logits(ids, step, cache):
      previous = search.previous_ids(ids, step)[:, None]  # at step 0 the initial END, hidden
      if self.latent_predictor_inputs == "bottleneck":
        previous = self.bottleneck.embed(tf.minimum(previous, self.num_codes - 1))
      x = self._latent_predictor_inputs(previous, start=step)
      y, decoder_cache = self.latent_predictor(x, cache=cache["decoder"], step=step)
      logits = tf.cast(self.latent_logits(y[:, 0]), tf.float32)
      # At least one latent; END once the limit is reached.
      logits = search.end_at_limit(logits, step, cache["limit"], self.end_id, forbid_before=1)
      return logits, {"decoder": decoder_cache, "limit": cache["limit"]}

    initial = tf.fill([batch_size], self.end_id)
    if beam_size == 1:
      codes, _ = search.greedy_search(
        symbols_to_logits, initial, cache, steps, eos_id=self.end_id, pad_id=self.end_id
      )
    else:
      codes, _ = search.beam_search(
        symbols_to_logits,
        initial,
        cache,
        beam_size,
        steps,
        alpha,
        eos_id=self.end_id,
        pad_id=self.end_id,
      )
      codes = codes[:, 0]
    is_code = tf.cumsum(tf.cast(tf.equal(codes, self.end_id), tf.int32), axis=1) == 0
    count = tf.reduce_sum(tf.cast(is_code, tf.int32), axis=1)
    return tf.where(is_code, codes, 0)[:, :-1], count

  def source_latents(self, inputs, beam_size=None, alpha=None, max_decode_length=None):
    """The first half of `decode`: inputs [B, S] -> (memory, memory_mask, codes [B, L],
    count [B]), the encoded source and the latents the latent predictor decodes for it."""
    beam_size = self.beam_size if beam_size is None else beam_size
    alpha = self.alpha if alpha is None else alpha
    inputs = tf.convert_to_tensor(inputs, tf.int32)
    memory, memory_mask = self.encode_source(inputs)
    if max_decode_length is None:  # per row, so that rows do not depend on each other
      max_decode_length = (
        tf.reduce_sum(tf.cast(memory_mask, tf.int32), axis=1) + self.max_decode_extra
      )
      longest = tf.shape(inputs)[1] + self.max_decode_extra  # a shape, as XLA needs
    else:
      longest = tf.cast(max_decode_length, tf.int32)
      max_decode_length = tf.fill([tf.shape(inputs)[0]], longest)
    factor = self.compression_factor
    max_latents = (max_decode_length + factor - 1) // factor
    steps = (longest + factor - 1) // factor + 1  # + END
    codes, count = self.predict_latents(memory, memory_mask, max_latents, beam_size, alpha, steps)
    return memory, memory_mask, codes, count

  def decode(self, inputs, beam_size=None, alpha=None, max_decode_length=None, trim=True):
    """Translates inputs [B, S] -> ids [B, L]: latents by search, then one parallel pass.

    Each row is cut after its first EOS (PAD after it). A row's result does not
    depend on the other rows of the batch. L is the longest row (with
    trim=False, a multiple of 2^n_c set by the input's shape, as XLA needs).
    """
    memory, memory_mask, codes, count = self.source_latents(
      inputs, beam_size, alpha, max_decode_length
    )
    if not trim:  # every shape from the input's
      return self.translate_codes(codes, count, memory, memory_mask)
    codes = codes[:, : tf.reduce_max(count)]  # no decoder positions past the longest row's
    ids = self.translate_codes(codes, count, memory, memory_mask)
    return transformer_model.trim_padding(ids)

  def translate_codes(self, codes, count, memory, memory_mask):
    """The second half of `decode`: codes [B, L] (the first count [B] of each row
    real) -> ids [B, L * 2^n_c] by one parallel pass of the decoder over their
    embeddings (`bottleneck.embed`), argmax, each row cut after its first EOS."""
    latent_mask = tf.sequence_mask(count, tf.shape(codes)[1])
    z_q = self.bottleneck.embed(tf.where(latent_mask, codes, 0))
    logits = self.decode_latents(z_q, latent_mask, memory, memory_mask)
    ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
    ids = tf.where(compression.upsample_mask(latent_mask, self.compress_steps), ids, PAD_ID)
    return cut_at_eos(ids)


def _shift_right(x):
  """[B, T, H] -> [B, T, H]: position i holds x[:, i - 1], position 0 zeros."""
  return tf.pad(x, [[0, 0], [1, 0], [0, 0]])[:, :-1]


def cut_at_eos(ids):
  """Replaces everything after the first EOS of each row by PAD."""
  after = tf.cumsum(tf.cast(tf.equal(ids, EOS_ID), tf.int32), axis=1, exclusive=True) > 0
  return tf.where(after, PAD_ID, ids)


registry.register_model("latent_transformer")(LatentTransformer)


@registry.register_model("latent_transformer_vq")
class LatentTransformerVq(LatentTransformer):
  """Latent Transformer, VQ-VAE bottleneck trained by hard EM (k-means with EMA)."""

  default_bottleneck = "hard_em"


@registry.register_model("latent_transformer_em")
class LatentTransformerEm(LatentTransformer):
  """Latent Transformer, VQ bottleneck trained by Monte-Carlo soft EM (§3.2)."""

  default_bottleneck = "soft_em"
