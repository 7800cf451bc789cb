"""The autoregressive Transformer (Vaswani et al. 2017): the paper's teacher and speed baseline.

Encoder-decoder with one vocabulary shared by inputs and targets; the
embedding matrix (scaled by sqrt(hidden_size) on the way in) is also the
softmax weight matrix. Decoder inputs are the targets shifted right by one,
with a zero vector at position 0 (T2T `shift_right_3d`). Decoding is greedy or
beam search (`t2t_vqem.search`) with an incremental key/value cache.
"""

import math

import keras
import tensorflow as tf

from t2t_vqem import registry
from t2t_vqem import search
from t2t_vqem.layers import transformer as layers
from t2t_vqem.search import EOS_ID
from t2t_vqem.search import PAD_ID


class SharedEmbedding(keras.layers.Layer):
  """One [vocab_size, hidden_size] matrix for input embeddings and output logits."""

  def __init__(self, vocab_size, hidden_size, **kwargs):
    super().__init__(**kwargs)
    self.vocab_size = vocab_size
    self.hidden_size = hidden_size

  def build(self, input_shape=None):
    self.embeddings = self.add_weight(
      name="embeddings",
      shape=(self.vocab_size, self.hidden_size),
      initializer=keras.initializers.RandomNormal(stddev=self.hidden_size**-0.5),
    )

  def call(self, ids):
    """int ids [...] -> embeddings [..., H] * sqrt(H), zero at PAD."""
    x = tf.gather(tf.cast(self.embeddings, self.compute_dtype), ids)
    x *= self.hidden_size**0.5
    return x * tf.cast(tf.not_equal(ids, PAD_ID), x.dtype)[..., None]

  def logits(self, x):
    """[..., H] -> float32 logits [..., V]."""
    return tf.matmul(tf.cast(x, tf.float32), tf.cast(self.embeddings, tf.float32), transpose_b=True)


@registry.register_model("transformer")
class Transformer(keras.Model):
  """Autoregressive Transformer (Vaswani et al. 2017): the teacher and speed baseline."""

  interface = "translation"  # what it serves (registry.MODEL_INTERFACES)

  def __init__(
    self,
    vocab_size,
    hidden_size=512,
    num_layers=6,
    num_heads=8,
    filter_size=2048,
    dropout=0.1,
    label_smoothing=0.1,
    beam_size=1,
    alpha=0.6,
    max_decode_extra=50,
    **kwargs,
  ):
    super().__init__(**kwargs)
    if not isinstance(vocab_size, int) or vocab_size < 2:
      raise ValueError(f"vocab_size={vocab_size!r} must be an int >= 2 (PAD=0 and EOS=1 included)")
    if not 0.0 <= label_smoothing < 1.0:
      raise ValueError(f"label_smoothing={label_smoothing!r} must be in [0, 1)")
    if not isinstance(beam_size, int) or beam_size < 1:
      raise ValueError(f"beam_size={beam_size!r} must be a positive int")
    self.vocab_size = vocab_size
    self.hidden_size = hidden_size
    self.num_layers = num_layers
    self.num_heads = num_heads
    self.filter_size = filter_size
    self.dropout_rate = dropout
    self.label_smoothing = label_smoothing
    self.beam_size = beam_size
    self.alpha = alpha
    self.max_decode_extra = max_decode_extra
    self.embedding = SharedEmbedding(vocab_size, hidden_size, name="shared_embedding")
    self.encoder = layers.EncoderStack(
      num_layers, hidden_size, num_heads, filter_size, dropout, name="encoder"
    )
    self.decoder = layers.DecoderStack(
      num_layers,
      hidden_size,
      num_heads,
      filter_size,
      dropout,
      causal=True,
      cross_attention=True,
      name="decoder",
    )
    self.input_dropout = keras.layers.Dropout(dropout)
    # All weights exist from construction on (so optimizer.build and
    # checkpoint restore work before the first step, also inside a strategy scope).
    self.build()

  def build(self, input_shape=None):
    self.embedding.build()
    self.encoder.build()
    self.decoder.build()

  def get_config(self):
    return {
      "vocab_size": self.vocab_size,
      "hidden_size": self.hidden_size,
      "num_layers": self.num_layers,
      "num_heads": self.num_heads,
      "filter_size": self.filter_size,
      "dropout": self.dropout_rate,
      "label_smoothing": self.label_smoothing,
      "beam_size": self.beam_size,
      "alpha": self.alpha,
      "max_decode_extra": self.max_decode_extra,
      "name": self.name,
    }

  # -- pieces ---------------------------------------------------------------

  def encode(self, inputs, training=False):
    """inputs int32 [B, S] -> (memory [B, S, H], padding mask bool [B, S])."""
    mask = layers.padding_mask(inputs, PAD_ID)
    x = self.input_dropout(layers.add_positions(self.embedding(inputs)), training=training)
    return self.encoder(x, padding_mask=mask, training=training), mask

  def _decoder_inputs(self, ids, start=0, training=False):
    """Embedded decoder inputs; ids[:, j] is the token before position start + j.

    Position 0 (the start symbol) is a zero vector whatever its id.
    """
    x = layers.shifted_inputs(self.embedding(ids), start)
    return self.input_dropout(x, training=training)

  def shift_right(self, targets):
    """[B, T] -> [B, T]: PAD (the start symbol) then targets[:, :-1]."""
    return tf.pad(targets, [[0, 0], [1, 0]], constant_values=PAD_ID)[:, :-1]

  def call(self, features, training=False):
    """Teacher forcing: inputs [B, S], targets [B, T] -> float32 logits [B, T, V]."""
    inputs = tf.convert_to_tensor(features["inputs"], tf.int32)
    targets = tf.convert_to_tensor(features["targets"], tf.int32)
    memory, mask = self.encode(inputs, training=training)
    x = self._decoder_inputs(self.shift_right(targets), training=training)
    y = self.decoder(x, memory=memory, memory_padding_mask=mask, training=training)
    return self.embedding.logits(y)

  def loss_terms(self, features, training=False, step=None):
    """Losses and metrics as {name: (numerator, denominator)} float32 scalars.

    losses: "cross_entropy": label-smoothed cross entropy summed over non-PAD
      target tokens, and their count (see `token_cross_entropy`).
    metrics: "accuracy" (argmax == target over non-PAD tokens) and "nll"
      (unsmoothed -log p(target) over non-PAD tokens).
    `step` (the training step) is unused: this model has no schedule.
    """
    del step
    targets = tf.convert_to_tensor(features["targets"], tf.int32)
    logits = self(features, training=training)
    xent, nll = token_cross_entropy(logits, targets, self.label_smoothing)
    weights = tf.cast(tf.not_equal(targets, PAD_ID), tf.float32)
    count = tf.reduce_sum(weights)
    correct = tf.cast(
      tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), targets), tf.float32
    )
    losses = {"cross_entropy": (tf.reduce_sum(xent * weights), count)}
    metrics = {
      "accuracy": (tf.reduce_sum(correct * weights), count),
      "nll": (tf.reduce_sum(nll * weights), count),
    }
    return losses, metrics

  # -- decoding -------------------------------------------------------------

  def _symbols_to_logits_fn(self, use_cache):
    """The search contract (see t2t_vqem.search) for this model.

    The cache holds the decoder cache (or the encoder output and its mask,
    without incremental caching) and "limit" int32 [B]: the number of tokens
    a row may decode; at step limit - 1 the row is forced to emit EOS.
    """

    def cached_fn(ids, step, cache):
      x = self._decoder_inputs(search.previous_ids(ids, step)[:, None], start=step)
      y, decoder_cache = self.decoder(x, cache=cache["decoder"], step=step)
      logits = self.embedding.logits(y[:, 0])
      new_cache = dict(cache)
      new_cache["decoder"] = decoder_cache
      return search.end_at_limit(logits, step, cache["limit"], EOS_ID), new_cache

    def uncached_fn(ids, step, cache):
      x = self._decoder_inputs(ids[:, : step + 1])
      y = self.decoder(x, memory=cache["memory"], memory_padding_mask=cache["memory_mask"])
      logits = self.embedding.logits(y[:, -1])
      return search.end_at_limit(logits, step, cache["limit"], EOS_ID), cache

    return cached_fn if use_cache else uncached_fn

  def decode(
    self, inputs, beam_size=None, alpha=None, max_decode_length=None, use_cache=True, trim=True
  ):
    """Translates inputs int32 [B, S] -> ids int32 [B, L].

    Each row is the hypothesis up to and including EOS, then PAD; L is the
    longest row (with trim=False, L = S + max_decode_extra or max_decode_length:
    every shape then follows from the input's, as XLA needs). Each row decodes
    at most its own input length (non-PAD tokens) + max_decode_extra tokens, or
    max_decode_length if given; a row reaching its limit is ended with EOS. So
    a row's result does not depend on the other rows of the batch.
    beam_size=1 is greedy search.
    """
    beam_size = self.beam_size if beam_size is None else beam_size
    alpha = self.alpha if alpha is None else alpha
    inputs = tf.convert_to_tensor(inputs, tf.int32)
    batch_size = tf.shape(inputs)[0]
    memory, mask = self.encode(inputs, training=False)
    if max_decode_length is None:
      limit = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1) + self.max_decode_extra
      max_length = tf.shape(inputs)[1] + self.max_decode_extra  # >= every limit
    else:
      max_length = tf.cast(max_decode_length, tf.int32)
      limit = tf.fill([batch_size], max_length)
    if use_cache:
      cache = {"decoder": self.decoder.init_cache(batch_size, max_length, memory, mask)}
    else:
      cache = {"memory": memory, "memory_mask": mask}
    cache["limit"] = limit
    fn = self._symbols_to_logits_fn(use_cache)
    initial_ids = tf.fill([batch_size], PAD_ID)
    if beam_size == 1:
      ids, _ = search.greedy_search(fn, initial_ids, cache, max_length, eos_id=EOS_ID)
    else:
      ids, _ = search.beam_search(
        fn, initial_ids, cache, beam_size, max_length, alpha, eos_id=EOS_ID
      )
      ids = ids[:, 0]
    return trim_padding(ids) if trim else ids


def token_cross_entropy(logits, targets, label_smoothing):
  """Per-token (label-smoothed cross entropy, -log p(target)), float32 [B, T] each.

  Smoothing as T2T: the true token gets 1 - label_smoothing, every other token
  label_smoothing / (V - 1); the entropy of that smoothed distribution is
  subtracted so that the minimum is 0 (gradients are unchanged).
  """
  vocab_size = logits.shape[-1]
  log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
  nll = -tf.gather(log_probs, targets, axis=-1, batch_dims=2)
  if label_smoothing <= 0.0:
    return nll, nll
  confidence = 1.0 - label_smoothing
  low = label_smoothing / (vocab_size - 1)
  xent = confidence * nll - low * (tf.reduce_sum(log_probs, axis=-1) + nll)
  entropy = -(confidence * math.log(confidence) + (vocab_size - 1) * low * math.log(low))
  return xent - entropy, nll


def trim_padding(ids):
  """Drops the trailing columns that are PAD in every row."""
  positions = tf.range(1, tf.shape(ids)[1] + 1)[None, :]
  lengths = tf.reduce_max(tf.where(tf.not_equal(ids, PAD_ID), positions, 0), axis=1)
  return ids[:, : tf.reduce_max(tf.concat([lengths, [0]], axis=0))]
