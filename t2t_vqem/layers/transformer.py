"""Transformer building blocks (Vaswani et al. 2017), Tensor2Tensor style.

Pieces shared by the autoregressive Transformer, the latent predictor (an
autoregressive decoder over discrete codes conditioned on a source encoder) and
the parallel non-causal decoder of the Latent Transformer:

- `positional_signal`: the sinusoidal timing signal (T2T `get_timing_signal_1d`).
- `padding_mask`, `padding_bias`, `causal_bias`, `step_bias`: masks and additive
  attention biases.
- `Dense`, `LayerNorm`: Keras's layers with the same weights, each computed
  in few graph ops (batch-1 decoding is bound by the number of ops).
- `MultiHeadAttention`: scaled dot-product attention with q/k/v/output
  projections and an incremental-decoding cache.
- `EncoderStack`, `DecoderStack`: pre-layer-norm residual stacks (T2T
  `layer_preprocess_sequence="n"`, `layer_postprocess_sequence="da"`) with a
  final layer norm.

Shapes: B batch, S source length, T target length, H hidden size, h heads,
d = H / h depth per head. Attention logits and softmax are computed in float32
whatever the compute dtype.

Incremental decoding cache (`DecoderStack.init_cache`): keys and values of the
self-attention are preallocated as zeros of shape [B, h, max_length, d]; step
`i` writes the new position's key/value at index `i` and attends over the whole
buffer with a bias that hides indices > i. Past positions are never recomputed
and every cache tensor keeps a fixed shape, so the cache is a plain
`tf.while_loop` variable. All cache tensors have the batch as leading axis, so
a beam search can tile and gather them generically.
"""

import math

import keras
import tensorflow as tf

LARGE_NEGATIVE = -1e9
LAYER_NORM_EPSILON = 1e-6


# ---------------------------------------------------------------------------
# Position signal and masks.
# ---------------------------------------------------------------------------


def positional_signal(length, channels, start=0, min_timescale=1.0, max_timescale=1.0e4):
  """Sinusoidal position signal, float32 [length, channels] (Vaswani et al. Sec. 3.5).

  The first channels//2 channels are sin(p / timescale_i), the next channels//2
  are cos(p / timescale_i), timescales geometric from min_timescale to
  max_timescale; an odd channel count gets one zero channel. Positions are
  start, start+1, ..., start+length-1 (`length` and `start` may be tensors).
  """
  positions = tf.cast(tf.range(length) + start, tf.float32)
  num_timescales = channels // 2
  log_increment = math.log(float(max_timescale) / float(min_timescale)) / max(num_timescales - 1, 1)
  inv_timescales = min_timescale * tf.exp(
    tf.range(num_timescales, dtype=tf.float32) * -log_increment
  )
  scaled = positions[:, None] * inv_timescales[None, :]
  signal = tf.concat([tf.sin(scaled), tf.cos(scaled)], axis=1)
  if channels % 2:
    signal = tf.pad(signal, [[0, 0], [0, 1]])
  return signal


def add_positions(x, start=0):
  """x [B, L, H] plus the position signal of positions start, ..., start + L - 1."""
  return x + tf.cast(positional_signal(tf.shape(x)[1], x.shape[-1], start=start), x.dtype)


def shifted_inputs(embedded, start=0):
  """Inputs of a causal decoder from the embedded previous symbols [B, n, H]
  (embedded[:, j] is the symbol before position start + j): the start symbol
  at position 0 is a zero vector, and positions are added."""
  positions = tf.range(tf.shape(embedded)[1]) + start
  return add_positions(embedded * tf.cast(positions > 0, embedded.dtype)[None, :, None], start)


def padding_mask(ids, pad_id=0):
  """bool [B, L]: True at real tokens, False at padding (ids == pad_id)."""
  return tf.not_equal(ids, pad_id)


def padding_bias(mask):
  """Additive attention bias float32 [B, 1, 1, L] from a bool mask [B, L] (True = attend)."""
  return tf.where(mask, 0.0, LARGE_NEGATIVE)[:, None, None, :]


def causal_bias(length):
  """Additive bias float32 [1, 1, length, length] hiding keys after the query position."""
  allowed = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)
  return tf.where(allowed, 0.0, LARGE_NEGATIVE)[None, None]


def step_bias(step, max_length, local_block_length=None):
  """Bias float32 [1, 1, 1, max_length] for one cached decoding step: keys 0..step visible.

  With `local_block_length` b, only the keys of the step's own block and the
  block before it stay visible (the local window of `local_causal_bias`).
  """
  keys = tf.range(max_length)
  allowed = keys <= step
  if local_block_length:
    allowed &= keys >= (step // local_block_length - 1) * local_block_length
  return tf.where(allowed, 0.0, LARGE_NEGATIVE)[None, None, None, :]


def local_causal_bias(length, block_length):
  """Bias float32 [1, 1, length, length] of local 1-D causal attention (Image Transformer).

  The sequence is cut into blocks of `block_length` positions; position i
  (block q = i // b) sees the keys j <= i of its own block and of block q - 1.
  `MultiHeadAttention(local_block_length=b)` computes the same attention
  block by block without the [length, length] logits.
  """
  i = tf.range(length)[:, None]
  j = tf.range(length)[None, :]
  allowed = (j <= i) & (j >= (i // block_length - 1) * block_length)
  return tf.where(allowed, 0.0, LARGE_NEGATIVE)[None, None]


# ---------------------------------------------------------------------------
# Dense and layer norm in few ops.
#
# At batch 1 the matrices are tiny and every graph op has a dispatch cost of
# its own, so fewer ops decode faster (BENCHMARKS.md, "Where batch-1 decoding
# time goes": half the ops, 5-15% less latency). Keras 3's Dense multiplies a
# rank-3 input through tf.tensordot (about ten ops of shape arithmetic and
# reshapes around the MatMul) and its LayerNormalization takes about thirteen.
# These subclasses keep the weights (and so the checkpoints) of the Keras
# layers and compute the same function in fewer ops.
# ---------------------------------------------------------------------------


class Dense(keras.layers.Dense):
  """keras.layers.Dense on [..., in] inputs as a single Einsum op (+ bias, activation)."""

  def call(self, inputs, training=None):
    # Batch axes spelled out as letters (a-h), not "...".
    axes = "abcdefgh"[: inputs.shape.rank - 1]
    x = tf.einsum(f"{axes}i,io->{axes}o", inputs, self.kernel)
    if self.use_bias:
      x += self.bias
    return self.activation(x)


class LayerNorm(keras.layers.LayerNormalization):
  """Layer norm over the last axis in float32: (x - mean) / sqrt(var + eps) * gamma + beta."""

  def __init__(self, epsilon=1e-6, **kwargs):
    for option in ("axis", "center", "scale", "rms_scaling"):
      if option in kwargs:
        raise ValueError(
          f"LayerNorm takes no {option}=: it normalizes the last axis and always has gamma and beta"
        )
    super().__init__(epsilon=epsilon, **kwargs)

  def call(self, inputs):
    x = tf.cast(inputs, tf.float32)
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    variance = tf.reduce_mean(tf.math.squared_difference(x, mean), axis=-1, keepdims=True)
    scale = tf.math.rsqrt(variance + self.epsilon) * tf.cast(self.gamma, tf.float32)
    y = (x - mean) * scale + tf.cast(self.beta, tf.float32)
    return tf.cast(y, self.compute_dtype)


# ---------------------------------------------------------------------------
# Attention.
# ---------------------------------------------------------------------------


class MultiHeadAttention(keras.layers.Layer):
  """Multi-head scaled dot-product attention with q/k/v/output projections.

  call(query [B, Tq, H], memory=None [B, Tk, M], bias=None (broadcastable to
  [B, h, Tq, Tk], additive, float32), training, cache=None, step=None,
  memory_kv=None):

  - plain: keys/values from `memory` (cross-attention) or from `query`
    (self-attention); returns [B, Tq, H].
  - cross-attention with precomputed keys/values: `memory_kv=(k, v)` from
    `project_memory(memory)`; returns [B, Tq, H].
  - incremental self-attention: `cache={"k": [B, h, L, d], "v": [B, h, L, d]}`
    and scalar int `step`; `query` is the single new position [B, 1, H]. Its
    key/value are written at index `step` of the buffers; `bias` must hide the
    indices > step (see `step_bias`). Returns (output [B, 1, H], new_cache).

  With `local_block_length` b, a full-sequence self-attention call is local
  1-D causal attention (Image Transformer, Parmar et al. 2018): queries in
  blocks of b positions attend to their own block and the one before it,
  causally (`local_causal_bias`), at a cost of [T, 2b] logits instead of
  [T, T]; `bias` is then not accepted. Cached steps take the local window
  from their `bias` (`step_bias(..., local_block_length=b)`).
  """

  def __init__(
    self,
    hidden_size,
    num_heads,
    attention_dropout=0.0,
    memory_size=None,
    local_block_length=None,
    **kwargs,
  ):
    super().__init__(**kwargs)
    if local_block_length is not None and local_block_length < 1:
      raise ValueError(f"local_block_length={local_block_length} must be a positive int or None")
    self.local_block_length = local_block_length
    if hidden_size % num_heads:
      raise ValueError(
        f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}; "
        "choose num_heads dividing hidden_size"
      )
    self.hidden_size = hidden_size
    self.num_heads = num_heads
    self.depth = hidden_size // num_heads
    self.memory_size = memory_size or hidden_size
    # Weight holders: the projections are computed head by head from their kernels.
    self.q_dense = Dense(hidden_size, use_bias=False, name="q")
    self.k_dense = Dense(hidden_size, use_bias=False, name="k")
    self.v_dense = Dense(hidden_size, use_bias=False, name="v")
    self.output_dense = Dense(hidden_size, use_bias=False, name="output_transform")
    self.attention_dropout = keras.layers.Dropout(attention_dropout)

  def build(self, input_shape=None):
    self.q_dense.build((None, self.hidden_size))
    self.k_dense.build((None, self.memory_size))
    self.v_dense.build((None, self.memory_size))
    self.output_dense.build((None, self.hidden_size))

  def _heads(self, dense, x):
    """x [B, T, M] -> dense(x) split into heads [B, h, T, d], one Einsum."""
    kernel = tf.reshape(tf.cast(dense.kernel, x.dtype), [-1, self.num_heads, self.depth])
    return tf.einsum("btm,mhd->bhtd", x, kernel)

  def _output(self, context):
    """Heads [B, h, T, d] -> output projection of their concatenation [B, T, H], one Einsum."""
    kernel = tf.cast(self.output_dense.kernel, context.dtype)
    kernel = tf.reshape(kernel, [self.num_heads, self.depth, self.hidden_size])
    return tf.einsum("bhtd,hdo->bto", context, kernel)

  def project_memory(self, memory):
    """Keys and values [B, h, Tk, d] of `memory` [B, Tk, M] (computed once per decode)."""
    return self._heads(self.k_dense, memory), self._heads(self.v_dense, memory)

  def init_cache(self, batch_size, max_length, dtype=None):
    """Zero self-attention buffers {"k", "v"}: [batch_size, h, max_length, d]."""
    dtype = dtype or self.compute_dtype
    zeros = tf.zeros([batch_size, self.num_heads, max_length, self.depth], dtype)
    return {"k": zeros, "v": zeros}

  def call(
    self, query, memory=None, bias=None, training=False, cache=None, step=None, memory_kv=None
  ):
    q = self._heads(self.q_dense, query)
    new_cache = None
    if memory_kv is not None:
      k, v = memory_kv
    elif cache is not None:
      if memory is not None or step is None:
        raise ValueError(
          "an attention cache is for incremental self-attention: "
          "pass step and no memory (use memory_kv for cross-attention)"
        )
      k_new, v_new = self.project_memory(query)  # [B, h, 1, d]
      write = tf.equal(tf.range(tf.shape(cache["k"])[2]), step)[None, None, :, None]
      k = tf.where(write, tf.cast(k_new, cache["k"].dtype), cache["k"])
      v = tf.where(write, tf.cast(v_new, cache["v"].dtype), cache["v"])
      new_cache = {"k": k, "v": v}
    elif self.local_block_length and memory is None:
      if bias is not None:
        raise ValueError("local self-attention makes its own causal window; pass no bias")
      k, v = self.project_memory(query)
      return self._output(self._local_attention(q, k, v, training))
    else:
      k, v = self.project_memory(query if memory is None else memory)
    # Logits and softmax in float32.
    logits = tf.einsum("bhqd,bhkd->bhqk", tf.cast(q, tf.float32), tf.cast(k, tf.float32))
    logits *= self.depth**-0.5
    if bias is not None:
      logits += tf.cast(bias, tf.float32)
    weights = tf.nn.softmax(logits, axis=-1)
    weights = self.attention_dropout(weights, training=training)
    context = tf.einsum("bhqk,bhkd->bhqd", tf.cast(weights, v.dtype), v)
    output = self._output(context)
    if new_cache is not None:
      return output, new_cache
    return output

  def _local_attention(self, q, k, v, training):
    """Local 1-D causal attention of q, k, v [B, h, T, d] -> context [B, h, T, d]."""
    b = self.local_block_length
    length = tf.shape(q)[2]
    num_blocks = (length + b - 1) // b
    pad = [[0, 0], [0, 0], [0, num_blocks * b - length], [0, 0]]

    def blocks(x):  # [B, h, T, d] -> [B, h, n, b, d]
      x = tf.pad(x, pad)
      shape = tf.shape(x)
      return tf.reshape(x, [shape[0], shape[1], num_blocks, b, self.depth])

    def with_previous(x):  # [B, h, n, b, d] -> [B, h, n, 2b, d]: block q - 1, then block q
      previous = tf.pad(x, [[0, 0], [0, 0], [1, 0], [0, 0], [0, 0]])[:, :, :-1]
      return tf.concat([previous, x], axis=3)

    qb = tf.cast(blocks(q), tf.float32)
    kb = with_previous(tf.cast(blocks(k), tf.float32))
    vb = with_previous(blocks(v))
    logits = tf.einsum("bhnqd,bhnkd->bhnqk", qb, kb) * self.depth**-0.5
    # Query i of block n (absolute n*b + i) sees key j of the window (absolute
    # (n-1)*b + j) when j - b <= i and the key exists (n > 0 or j >= b).
    i = tf.range(b)[:, None]
    j = tf.range(2 * b)[None, :]
    allowed = (j - b <= i)[None] & ((tf.range(num_blocks) > 0)[:, None, None] | (j >= b)[None])
    logits += tf.where(allowed, 0.0, LARGE_NEGATIVE)[None, None]
    weights = self.attention_dropout(tf.nn.softmax(logits, axis=-1), training=training)
    context = tf.einsum("bhnqk,bhnkd->bhnqd", tf.cast(weights, vb.dtype), vb)
    shape = tf.shape(context)
    context = tf.reshape(context, [shape[0], shape[1], num_blocks * b, self.depth])
    return context[:, :, :length]


class FeedForward(keras.layers.Layer):
  """Position-wise dense-relu-dense (T2T `dense_relu_dense`)."""

  def __init__(self, hidden_size, filter_size, relu_dropout=0.0, **kwargs):
    super().__init__(**kwargs)
    self.hidden_size = hidden_size
    self.filter_size = filter_size
    self.filter_dense = Dense(filter_size, activation="relu", name="filter")
    self.output_dense = Dense(hidden_size, name="output")
    self.relu_dropout = keras.layers.Dropout(relu_dropout)

  def build(self, input_shape=None):
    self.filter_dense.build((None, self.hidden_size))
    self.output_dense.build((None, self.filter_size))

  def call(self, x, training=False):
    return self.output_dense(self.relu_dropout(self.filter_dense(x), training=training))


def _check_sizes(num_layers, hidden_size, num_heads, filter_size):
  for name, value in (
    ("num_layers", num_layers),
    ("hidden_size", hidden_size),
    ("num_heads", num_heads),
    ("filter_size", filter_size),
  ):
    if not isinstance(value, int) or value < 1:
      raise ValueError(f"{name}={value!r} must be a positive int")


def _layer_norm(name):
  return LayerNorm(epsilon=LAYER_NORM_EPSILON, name=name)


# ---------------------------------------------------------------------------
# Blocks and stacks.
#
# Sublayers are held as named attributes, never in Python lists: Keras 3.15
# wraps a list attribute in a TrackedList that tf.train.Checkpoint does not
# traverse, so the weights of layers kept in a list are silently missing from
# checkpoints.
# ---------------------------------------------------------------------------


class EncoderBlock(keras.layers.Layer):
  """One pre-norm encoder layer: x += drop(attn(norm(x))); x += drop(ffn(norm(x)))."""

  def __init__(
    self,
    hidden_size,
    num_heads,
    filter_size,
    dropout=0.0,
    attention_dropout=0.0,
    relu_dropout=0.0,
    **kwargs,
  ):
    super().__init__(**kwargs)
    self.hidden_size = hidden_size
    self.self_attention_norm = _layer_norm("self_attention_norm")
    self.self_attention = MultiHeadAttention(
      hidden_size, num_heads, attention_dropout, name="self_attention"
    )
    self.ffn_norm = _layer_norm("ffn_norm")
    self.ffn = FeedForward(hidden_size, filter_size, relu_dropout, name="ffn")
    self.residual_dropout = keras.layers.Dropout(dropout)

  def build(self, input_shape=None):
    for layer in (self.self_attention_norm, self.self_attention, self.ffn_norm, self.ffn):
      layer.build((None, self.hidden_size))

  def call(self, x, bias=None, training=False):
    y = self.self_attention(self.self_attention_norm(x), bias=bias, training=training)
    x = x + self.residual_dropout(y, training=training)
    y = self.ffn(self.ffn_norm(x), training=training)
    return x + self.residual_dropout(y, training=training)


class DecoderBlock(keras.layers.Layer):
  """One pre-norm decoder layer: self-attention, optional cross-attention, feed-forward.

  call(x, self_bias, memory=None, memory_bias=None, training=False, cache=None,
  step=None). With `cache` (this block's dict from `DecoderStack.init_cache`)
  it runs one incremental step and returns (output, new_cache).
  """

  def __init__(
    self,
    hidden_size,
    num_heads,
    filter_size,
    dropout=0.0,
    attention_dropout=0.0,
    relu_dropout=0.0,
    cross_attention=True,
    memory_size=None,
    local_block_length=None,
    **kwargs,
  ):
    super().__init__(**kwargs)
    self.hidden_size = hidden_size
    self.has_cross_attention = cross_attention
    self.self_attention_norm = _layer_norm("self_attention_norm")
    self.self_attention = MultiHeadAttention(
      hidden_size,
      num_heads,
      attention_dropout,
      local_block_length=local_block_length,
      name="self_attention",
    )
    if cross_attention:
      self.cross_attention_norm = _layer_norm("cross_attention_norm")
      self.cross_attention = MultiHeadAttention(
        hidden_size, num_heads, attention_dropout, memory_size=memory_size, name="cross_attention"
      )
    self.ffn_norm = _layer_norm("ffn_norm")
    self.ffn = FeedForward(hidden_size, filter_size, relu_dropout, name="ffn")
    self.residual_dropout = keras.layers.Dropout(dropout)

  def build(self, input_shape=None):
    sublayers = [self.self_attention_norm, self.self_attention, self.ffn_norm, self.ffn]
    if self.has_cross_attention:
      sublayers += [self.cross_attention_norm, self.cross_attention]
    for layer in sublayers:
      layer.build((None, self.hidden_size))

  def call(
    self, x, self_bias=None, memory=None, memory_bias=None, training=False, cache=None, step=None
  ):
    new_cache = None
    if cache is None:
      y = self.self_attention(self.self_attention_norm(x), bias=self_bias, training=training)
    else:
      y, kv = self.self_attention(
        self.self_attention_norm(x),
        bias=self_bias,
        training=training,
        cache={"k": cache["k"], "v": cache["v"]},
        step=step,
      )
      new_cache = dict(cache)
      new_cache.update(kv)
    x = x + self.residual_dropout(y, training=training)
    if self.has_cross_attention:
      if cache is None:
        y = self.cross_attention(
          self.cross_attention_norm(x), memory=memory, bias=memory_bias, training=training
        )
      else:
        y = self.cross_attention(
          self.cross_attention_norm(x),
          bias=memory_bias,
          training=training,
          memory_kv=(cache["memory_k"], cache["memory_v"]),
        )
      x = x + self.residual_dropout(y, training=training)
    y = self.ffn(self.ffn_norm(x), training=training)
    x = x + self.residual_dropout(y, training=training)
    if cache is None:
      return x
    return x, new_cache


class EncoderStack(keras.layers.Layer):
  """Transformer encoder: num_layers x [self-attention, feed-forward], pre-norm, final norm.

  call(x [B, S, H] (embedded inputs with position signal), padding_mask=None
  bool [B, S] (True = real token), training=False) -> [B, S, H].
  `dropout` is the residual dropout; attention_dropout and relu_dropout
  default to it (T2T transformer_base).
  """

  def __init__(
    self,
    num_layers,
    hidden_size,
    num_heads,
    filter_size,
    dropout=0.0,
    attention_dropout=None,
    relu_dropout=None,
    **kwargs,
  ):
    super().__init__(**kwargs)
    _check_sizes(num_layers, hidden_size, num_heads, filter_size)
    attention_dropout = dropout if attention_dropout is None else attention_dropout
    relu_dropout = dropout if relu_dropout is None else relu_dropout
    self.num_layers = num_layers
    self.hidden_size = hidden_size
    for i in range(num_layers):
      setattr(
        self,
        f"layer_{i}",
        EncoderBlock(
          hidden_size,
          num_heads,
          filter_size,
          dropout,
          attention_dropout,
          relu_dropout,
          name=f"layer_{i}",
        ),
      )
    self.output_norm = _layer_norm("output_norm")

  def blocks(self):
    return [getattr(self, f"layer_{i}") for i in range(self.num_layers)]

  def build(self, input_shape=None):
    for layer in self.blocks() + [self.output_norm]:
      layer.build((None, self.hidden_size))

  def call(self, x, padding_mask=None, training=False):
    bias = None if padding_mask is None else padding_bias(padding_mask)
    for block in self.blocks():
      x = block(x, bias=bias, training=training)
    return self.output_norm(x)


class DecoderStack(keras.layers.Layer):
  """Transformer decoder: num_layers x [self-attention, (cross-attention), feed-forward].

  Pre-norm residual blocks and a final layer norm. Options: `causal` (self-
  attention sees only earlier positions) and `cross_attention` (attend to an
  encoder `memory`). `causal=False, cross_attention=False` is a plain
  bidirectional stack (the parallel decoder of the Latent Transformer).

  Full sequence: call(x [B, T, H], memory=None [B, S, M], memory_padding_mask=None
  bool [B, S], training=False, padding_mask=None bool [B, T] (keys of x to hide,
  e.g. for a non-causal decoder over padded input)) -> [B, T, H].

  One cached step (causal only): call(x [B, 1, H], training=False,
  cache=init_cache(...), step=scalar int32) -> ([B, 1, H], new_cache). `x` is
  the embedded input at position `step`; the memory and its padding are taken
  from the cache (where `init_cache` put their projections), so `memory` and
  `memory_padding_mask` are ignored in this mode.

  `local_block_length` b (causal only): local 1-D self-attention, each
  position seeing its own block of b positions and the one before
  (the Image Transformer's latent prior; see `local_causal_bias`).
  """

  def __init__(
    self,
    num_layers,
    hidden_size,
    num_heads,
    filter_size,
    dropout=0.0,
    causal=True,
    cross_attention=True,
    attention_dropout=None,
    relu_dropout=None,
    memory_size=None,
    local_block_length=None,
    **kwargs,
  ):
    super().__init__(**kwargs)
    _check_sizes(num_layers, hidden_size, num_heads, filter_size)
    if local_block_length and not causal:
      raise ValueError("local_block_length is local *causal* attention: it needs causal=True")
    self.local_block_length = local_block_length
    attention_dropout = dropout if attention_dropout is None else attention_dropout
    relu_dropout = dropout if relu_dropout is None else relu_dropout
    self.num_layers = num_layers
    self.hidden_size = hidden_size
    self.causal = causal
    self.cross_attention = cross_attention
    for i in range(num_layers):
      setattr(
        self,
        f"layer_{i}",
        DecoderBlock(
          hidden_size,
          num_heads,
          filter_size,
          dropout,
          attention_dropout,
          relu_dropout,
          cross_attention=cross_attention,
          memory_size=memory_size,
          local_block_length=local_block_length,
          name=f"layer_{i}",
        ),
      )
    self.output_norm = _layer_norm("output_norm")

  def blocks(self):
    return [getattr(self, f"layer_{i}") for i in range(self.num_layers)]

  def build(self, input_shape=None):
    for layer in self.blocks() + [self.output_norm]:
      layer.build((None, self.hidden_size))

  def init_cache(self, batch_size, max_length, memory=None, memory_padding_mask=None, dtype=None):
    """The incremental-decoding cache for up to `max_length` steps.

    {"layer_i": {"k", "v": zeros [B, h, max_length, d]
                 (+ "memory_k", "memory_v": [B, h, S, d] with cross-attention)},
     "memory_bias": float32 [B, 1, 1, S] (with cross-attention)}.
    Every tensor has the batch as leading axis (tile/gather it for beams).
    """
    if not self.causal:
      raise ValueError("incremental decoding needs causal=True; this DecoderStack is non-causal")
    if self.cross_attention and memory is None:
      raise ValueError("this DecoderStack has cross_attention=True: init_cache needs memory")
    cache = {}
    for i, block in enumerate(self.blocks()):
      layer_cache = block.self_attention.init_cache(batch_size, max_length, dtype)
      if self.cross_attention:
        layer_cache["memory_k"], layer_cache["memory_v"] = block.cross_attention.project_memory(
          memory
        )
      cache[f"layer_{i}"] = layer_cache
    if self.cross_attention:
      if memory_padding_mask is None:
        memory_padding_mask = tf.ones(tf.shape(memory)[:2], tf.bool)
      cache["memory_bias"] = padding_bias(memory_padding_mask)
    return cache

  def call(
    self,
    x,
    memory=None,
    memory_padding_mask=None,
    training=False,
    cache=None,
    step=None,
    padding_mask=None,
  ):
    if cache is not None:
      return self._step(x, cache, step, training)
    if self.cross_attention and memory is None:
      raise ValueError("this DecoderStack has cross_attention=True: pass memory")
    self_bias = causal_bias(tf.shape(x)[1]) if self.causal else None
    if self.local_block_length:
      if padding_mask is not None:
        raise ValueError("local self-attention takes no padding_mask (pad at the end instead)")
      self_bias = None  # the blocks make their own causal window
    if padding_mask is not None:
      pad = padding_bias(padding_mask)
      self_bias = pad if self_bias is None else self_bias + pad
    memory_bias = None
    if self.cross_attention and memory_padding_mask is not None:
      memory_bias = padding_bias(memory_padding_mask)
    for block in self.blocks():
      x = block(x, self_bias=self_bias, memory=memory, memory_bias=memory_bias, training=training)
    return self.output_norm(x)

  def _step(self, x, cache, step, training):
    if not self.causal:
      raise ValueError("incremental decoding needs causal=True; this DecoderStack is non-causal")
    if step is None:
      raise ValueError("a cached decoder call needs the step index")
    self_bias = step_bias(step, tf.shape(cache["layer_0"]["k"])[2], self.local_block_length)
    new_cache = dict(cache)
    for i, block in enumerate(self.blocks()):
      x, new_cache[f"layer_{i}"] = block(
        x,
        self_bias=self_bias,
        memory_bias=cache.get("memory_bias"),
        training=training,
        cache=cache[f"layer_{i}"],
        step=step,
      )
    return self.output_norm(x), new_cache
