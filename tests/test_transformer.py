"""Transformer layers, greedy/beam search and the autoregressive Transformer model.

Every check is against an independent computation: brute-force enumeration of
all sequences, a step-by-step numpy argmax, numpy label-smoothed cross entropy,
or the same model decoded another way (cached vs recomputed, batch vs row).
"""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from t2t_vqem import decode
from t2t_vqem import registry
from t2t_vqem import search
from t2t_vqem.layers import transformer as layers
import t2t_vqem.models  # noqa: F401  (registers "transformer")
from t2t_vqem.search import EOS_ID
from t2t_vqem.search import PAD_ID

VOCAB = 20
TINY = dict(
  vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=4, filter_size=64, dropout=0.0
)


# ---------------------------------------------------------------------------
# A toy model with a known distribution, for the searches.
# ---------------------------------------------------------------------------


class ToyModel:
  """logits(step t | decoded y_0..y_{t-1}) = table[last] + bias[b] + c * counts(y_0..y_{t-1}).

  `last` is y_{t-1} (the initial id at t = 0). The counts live in the search
  cache, so a wrong beam gather of the cache changes the results.
  """

  def __init__(self, vocab, batch, seed, c=0.7):
    rng = np.random.default_rng(seed)
    self.vocab = vocab
    self.table = rng.normal(size=(vocab, vocab)).astype(np.float32) * 1.5
    self.bias = rng.normal(size=(batch, vocab)).astype(np.float32)
    self.c = c

  def initial_cache(self):
    return {
      "bias": tf.constant(self.bias),
      "counts": tf.zeros(self.bias.shape, tf.float32),
      "scalar_unused": tf.constant(3.0),
    }

  def fn(self, ids, step, cache):
    last = search.previous_ids(ids, step)
    counts = cache["counts"] + tf.cast(step > 0, tf.float32) * tf.one_hot(last, self.vocab)
    logits = tf.gather(tf.constant(self.table), last) + cache["bias"] + self.c * counts
    return logits, {
      "bias": cache["bias"],
      "counts": counts,
      "scalar_unused": cache["scalar_unused"],
    }

  def log_probs(self, b, prefix, initial_id=PAD_ID):
    """numpy log p(. | prefix) for example b."""
    last = prefix[-1] if prefix else initial_id
    counts = np.bincount(np.array(prefix, np.int64), minlength=self.vocab) if prefix else 0
    logits = self.table[last] + self.bias[b] + self.c * counts
    logits = logits.astype(np.float64)
    return logits - np.log(np.sum(np.exp(logits - logits.max()))) - logits.max()

  def sequence_log_prob(self, b, seq):
    return sum(self.log_probs(b, list(seq[:i]))[seq[i]] for i in range(len(seq)))


def _brute_force_finished(toy, b, max_length, alpha):
  """All EOS-terminated sequences of <= max_length tokens, best penalised score first."""
  others = [t for t in range(toy.vocab) if t != EOS_ID]
  scored = []
  for n in range(1, max_length + 1):
    for body in itertools.product(others, repeat=n - 1):
      seq = list(body) + [EOS_ID]
      score = toy.sequence_log_prob(b, seq) / ((5.0 + n) / 6.0) ** alpha
      scored.append((score, seq))
  scored.sort(key=lambda s: -s[0])
  return scored


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_search_finds_the_brute_force_best_under_length_penalty(alpha):
  vocab, batch, max_length, beam = 4, 3, 4, 32  # 3**3 = 27 <= 32 alive prefixes: exhaustive
  toy = ToyModel(vocab, batch, seed=1)

  @tf.function
  def run():
    return search.beam_search(
      toy.fn, tf.fill([batch], PAD_ID), toy.initial_cache(), beam, max_length, alpha
    )

  ids, scores = (t.numpy() for t in run())
  assert ids.shape[:2] == (batch, beam)
  for b in range(batch):
    expected = _brute_force_finished(toy, b, max_length, alpha)
    for rank in range(5):
      exp_score, exp_seq = expected[rank]
      # a hypothesis is everything up to and including the first EOS, then PAD
      first_eos = list(ids[b, rank]).index(EOS_ID)
      got = list(ids[b, rank, : first_eos + 1])
      assert np.all(ids[b, rank, first_eos + 1 :] == PAD_ID)
      assert got == exp_seq, (b, rank, got, exp_seq)
      np.testing.assert_allclose(scores[b, rank], exp_score, rtol=1e-5, atol=1e-5)


def test_beam_search_small_beam_returns_a_valid_scored_hypothesis():
  vocab, batch, max_length = 5, 2, 6
  toy = ToyModel(vocab, batch, seed=4)
  ids, scores = search.beam_search(
    toy.fn, tf.fill([batch], PAD_ID), toy.initial_cache(), 2, max_length, 0.6
  )
  ids, scores = ids.numpy(), scores.numpy()
  best_exhaustive = search.beam_search(
    toy.fn, tf.fill([batch], PAD_ID), toy.initial_cache(), 256, max_length, 0.6
  )[1].numpy()
  for b in range(batch):
    for rank in range(2):
      row = list(ids[b, rank])
      seq = row[: row.index(EOS_ID) + 1]
      score = toy.sequence_log_prob(b, seq) / ((5.0 + len(seq)) / 6.0) ** 0.6
      np.testing.assert_allclose(scores[b, rank], score, rtol=1e-5)
    assert scores[b, 0] >= scores[b, 1]
    assert scores[b, 0] <= best_exhaustive[b, 0] + 1e-5


def _numpy_greedy(toy, b, max_length):
  seq, score = [], 0.0
  for _ in range(max_length):
    lp = toy.log_probs(b, seq)
    token = int(np.argmax(lp))
    seq.append(token)
    score += lp[token]
    if token == EOS_ID:
      break
  return seq, score


@pytest.mark.parametrize("max_length", [3, 8])
def test_greedy_search_equals_numpy_stepwise_argmax(max_length):
  vocab, batch = 6, 5
  toy = ToyModel(vocab, batch, seed=7)

  @tf.function
  def run():
    return search.greedy_search(
      toy.fn, tf.fill([batch], PAD_ID), toy.initial_cache(), max_length, EOS_ID
    )

  ids, scores = (t.numpy() for t in run())
  expected = [_numpy_greedy(toy, b, max_length) for b in range(batch)]
  assert ids.shape == (batch, max_length)  # the search's fixed buffer
  for b, (seq, score) in enumerate(expected):
    assert list(ids[b, : len(seq)]) == seq
    assert np.all(ids[b, len(seq) :] == PAD_ID)
    np.testing.assert_allclose(scores[b], score, rtol=1e-5)


def test_greedy_search_stops_when_all_rows_finished():
  # EOS is the argmax from the start: one step only, whatever max_length.
  def fn(ids, step, cache):
    return tf.one_hot(tf.fill([tf.shape(ids)[0]], EOS_ID), 7) * 5.0, cache

  calls = []

  def counting_fn(ids, step, cache):
    calls.append(1)
    return fn(ids, step, cache)

  ids, _ = search.greedy_search(counting_fn, tf.zeros([3], tf.int32), {}, 50, EOS_ID)
  assert ids.numpy().tolist() == [[EOS_ID] + [PAD_ID] * 49] * 3
  assert len(calls) == 1  # eager while_loop: one Python call per step


# ---------------------------------------------------------------------------
# Layers.
# ---------------------------------------------------------------------------


def test_positional_signal_matches_formula():
  got = layers.positional_signal(5, 8, start=2).numpy()
  pos = np.arange(2, 7)[:, None]
  inv = np.exp(np.arange(4) * -np.log(1e4) / 3)
  np.testing.assert_allclose(
    got, np.concatenate([np.sin(pos * inv), np.cos(pos * inv)], 1), rtol=1e-5, atol=1e-6
  )


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4), (2, 2, 3, 4)])
def test_dense_matches_numpy_affine_relu(shape):
  dense = layers.Dense(5, activation="relu")
  dense.build((None, 4))
  rng = np.random.default_rng(0)
  dense.bias.assign(rng.normal(size=5).astype(np.float32))
  x = rng.normal(size=shape).astype(np.float32)
  want = np.maximum(x @ dense.kernel.numpy() + dense.bias.numpy(), 0.0)
  np.testing.assert_allclose(dense(x).numpy(), want, rtol=1e-5, atol=1e-5)
  assert [w.name for w in dense.weights] == ["kernel", "bias"]  # Keras Dense's checkpoint names


def test_layer_norm_matches_numpy_formula():
  norm = layers.LayerNorm(epsilon=1e-6)
  norm.build((None, 6))
  rng = np.random.default_rng(1)
  norm.gamma.assign(rng.normal(size=6).astype(np.float32))
  norm.beta.assign(rng.normal(size=6).astype(np.float32))
  x = rng.normal(size=(2, 3, 6)).astype(np.float32) * 3 + 1
  mean = x.mean(-1, keepdims=True)
  want = (x - mean) / np.sqrt(
    x.var(-1, keepdims=True) + 1e-6
  ) * norm.gamma.numpy() + norm.beta.numpy()
  np.testing.assert_allclose(norm(x).numpy(), want, rtol=1e-4, atol=1e-5)


def test_multi_head_attention_matches_numpy():
  """Heads from the q/k/v kernels, softmax(q k^T / sqrt(d) + bias) v, output projection."""
  keras.utils.set_random_seed(2)
  heads, depth = 2, 3
  attention = layers.MultiHeadAttention(heads * depth, heads, memory_size=5)
  attention.build()
  rng = np.random.default_rng(2)
  query = rng.normal(size=(2, 4, 6)).astype(np.float32)
  memory = rng.normal(size=(2, 7, 5)).astype(np.float32)
  keep = np.ones([2, 7], bool)
  keep[1, 5:] = False
  got = attention(query, memory=memory, bias=layers.padding_bias(keep)).numpy()

  def split(x):  # [B, T, h*d] -> [B, h, T, d]
    return x.reshape(x.shape[0], x.shape[1], heads, depth).transpose(0, 2, 1, 3)

  q = split(query @ attention.q_dense.kernel.numpy())
  k = split(memory @ attention.k_dense.kernel.numpy())
  v = split(memory @ attention.v_dense.kernel.numpy())
  logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(depth)
  logits = np.where(keep[:, None, None, :], logits, -np.inf)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  context = (weights @ v).transpose(0, 2, 1, 3).reshape(2, 4, heads * depth)
  want = context @ attention.output_dense.kernel.numpy()
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_stacks_under_mixed_float16_match_float32():
  """Same weights (same seed), float16 compute: outputs within float16 precision of float32."""

  def run(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
      keras.utils.set_random_seed(0)
      encoder = layers.EncoderStack(2, 16, 4, 32)
      decoder = layers.DecoderStack(2, 16, 4, 32)
      encoder.build()
      decoder.build()
      memory = encoder(tf.random.stateless_normal([2, 5, 16], [1, 2]))
      x = tf.random.stateless_normal([2, 3, 16], [3, 4])
      full = decoder(x, memory=memory)
      step, _ = decoder(
        tf.cast(x[:, :1], decoder.compute_dtype),
        cache=decoder.init_cache(2, 3, memory),
        step=tf.constant(0),
      )
      return memory, full, step
    finally:
      keras.mixed_precision.set_global_policy("float32")

  for want, got in zip(run("float32"), run("mixed_float16")):
    assert got.dtype == tf.float16
    np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(), want.numpy(), atol=2e-2)


def test_decoder_stack_cached_steps_equal_full_sequence():
  keras.utils.set_random_seed(3)
  dec = layers.DecoderStack(2, 16, 4, 32, 0.0, causal=True, cross_attention=True)
  x = tf.random.normal([2, 5, 16])
  memory = tf.random.normal([2, 4, 16])
  memory_mask = tf.constant([[True] * 4, [True, True, False, False]])
  full = dec(x, memory=memory, memory_padding_mask=memory_mask).numpy()
  cache = dec.init_cache(2, 7, memory, memory_mask)
  for t in range(5):
    y, cache = dec(x[:, t : t + 1], cache=cache, step=tf.constant(t))
    np.testing.assert_allclose(y.numpy()[:, 0], full[:, t], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------
# The Transformer model.
# ---------------------------------------------------------------------------

SOURCES = np.array(
  [
    [5, 6, 7, 8, 9, 1, 0],
    [3, 4, 1, 0, 0, 0, 0],
    [10, 11, 12, 13, 14, 15, 1],
    [7, 1, 0, 0, 0, 0, 0],
  ],
  np.int32,
)


@pytest.fixture(scope="module")
def random_model():
  keras.utils.set_random_seed(11)
  return registry.build_model("transformer", max_decode_extra=6, **TINY)


def _decode_fn(model, **kwargs):
  return tf.function(
    lambda x: model.decode(x, **kwargs), input_signature=[tf.TensorSpec([None, None], tf.int32)]
  )


def _rows(ids):
  """Each row as a list up to and including EOS (or the whole row without EOS)."""
  out = []
  for row in np.asarray(ids).tolist():
    out.append(row[: row.index(EOS_ID) + 1] if EOS_ID in row else [t for t in row if t != PAD_ID])
  return out


def test_model_builds_all_weights_and_checkpoints(random_model, tmp_path):
  keras.utils.set_random_seed(5)
  other = registry.build_model("transformer", max_decode_extra=6, **TINY)
  optimizer = keras.optimizers.Adam(1e-3)
  optimizer.build(other.trainable_variables)  # works before any call
  assert len(other.trainable_variables) == len(random_model.trainable_variables)
  features = {"inputs": SOURCES, "targets": SOURCES[:, :5]}
  path = tf.train.Checkpoint(model=random_model).save(str(tmp_path / "ckpt"))
  saved = [n for n, _ in tf.train.list_variables(path) if n.startswith("model/")]
  assert len(saved) == len(random_model.variables)  # every weight is in the checkpoint
  assert not np.allclose(other(features).numpy(), random_model(features).numpy())
  tf.train.Checkpoint(model=other).restore(path).assert_existing_objects_matched()
  np.testing.assert_allclose(
    other(features).numpy(), random_model(features).numpy(), rtol=1e-5, atol=1e-5
  )


def test_causal_mask_logits_ignore_later_targets(random_model):
  rng = np.random.default_rng(0)
  targets = rng.integers(2, VOCAB, size=(2, 6)).astype(np.int32)
  base = random_model({"inputs": SOURCES[:2], "targets": targets}).numpy()
  for t in range(6):
    changed = targets.copy()
    changed[:, t:] = rng.integers(2, VOCAB, size=(2, 6 - t))
    changed[:, t] = np.where(targets[:, t] == 2, 3, 2)  # surely different at t
    logits = random_model({"inputs": SOURCES[:2], "targets": changed}).numpy()
    np.testing.assert_allclose(logits[:, : t + 1], base[:, : t + 1], rtol=1e-5, atol=1e-5)
    if t < 5:
      assert not np.allclose(logits[:, t + 1], base[:, t + 1])


def test_loss_terms_match_numpy_label_smoothed_cross_entropy():
  keras.utils.set_random_seed(2)
  model = registry.build_model("transformer", label_smoothing=0.1, **TINY)
  targets = np.array([[4, 5, 6, 1], [7, 1, 0, 0], [8, 9, 1, 0]], np.int32)
  features = {"inputs": SOURCES[:3], "targets": targets}
  logits = model(features).numpy().astype(np.float64)
  losses, metrics = model.loss_terms(features)
  log_p = logits - logits.max(-1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
  q = np.full(logits.shape, 0.1 / (VOCAB - 1))
  np.put_along_axis(q, targets[..., None], 0.9, axis=-1)
  entropy_q = -(q * np.log(q)).sum(-1)
  xent = -(q * log_p).sum(-1) - entropy_q
  weights = targets != PAD_ID
  num, den = (t.numpy() for t in losses["cross_entropy"])
  np.testing.assert_allclose(num, (xent * weights).sum(), rtol=1e-4)
  assert den == weights.sum() == 9
  nll = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
  np.testing.assert_allclose(metrics["nll"][0].numpy(), (nll * weights).sum(), rtol=1e-4)
  correct = (logits.argmax(-1) == targets) & weights
  assert metrics["accuracy"][0].numpy() == correct.sum()
  assert metrics["accuracy"][1].numpy() == metrics["nll"][1].numpy() == 9
  assert set(losses) == {"cross_entropy"} and set(metrics) == {"accuracy", "nll"}


def test_beam_size_one_equals_greedy_on_the_model(random_model):
  # With alpha = 0 the beam score is the log-probability, so a one-beam
  # search must follow the greedy path.
  model = random_model
  fn = model._symbols_to_logits_fn(use_cache=True)

  @tf.function
  def run(inputs):
    batch = tf.shape(inputs)[0]
    memory, mask = model.encode(inputs)
    cache = {
      "decoder": model.decoder.init_cache(batch, 12, memory, mask),
      "limit": tf.fill([batch], 12),
    }
    start = tf.fill([batch], PAD_ID)
    greedy = search.greedy_search(fn, start, cache, 12, EOS_ID)
    beam = search.beam_search(fn, start, cache, 1, 12, alpha=0.0)
    return greedy, beam

  (greedy_ids, greedy_scores), (beam_ids, beam_scores) = run(tf.constant(SOURCES))
  assert _rows(greedy_ids) == _rows(beam_ids[:, 0])
  np.testing.assert_allclose(greedy_scores.numpy(), beam_scores[:, 0].numpy(), rtol=1e-5)
  assert _rows(model.decode(SOURCES, beam_size=1, max_decode_length=12)) == _rows(greedy_ids)


def test_cached_step_logits_equal_teacher_forced_logits(random_model):
  rng = np.random.default_rng(1)
  batch, length = SOURCES.shape[0], 6
  targets = rng.integers(2, VOCAB, size=(batch, length)).astype(np.int32)
  full = random_model({"inputs": SOURCES, "targets": targets}).numpy()
  memory, mask = random_model.encode(SOURCES)
  limit = tf.fill([batch], 100)
  cached_fn = random_model._symbols_to_logits_fn(use_cache=True)
  uncached_fn = random_model._symbols_to_logits_fn(use_cache=False)
  cache = {"decoder": random_model.decoder.init_cache(batch, length, memory, mask), "limit": limit}
  plain = {"memory": memory, "memory_mask": mask, "limit": limit}
  ids = tf.fill([batch, 1], PAD_ID)
  for t in range(length):
    logits, cache = cached_fn(ids, tf.constant(t), cache)
    np.testing.assert_allclose(logits.numpy(), full[:, t], rtol=1e-4, atol=1e-4)
    logits, _ = uncached_fn(ids, tf.constant(t), plain)
    np.testing.assert_allclose(logits.numpy(), full[:, t], rtol=1e-4, atol=1e-4)
    ids = tf.concat([ids, targets[:, t : t + 1]], axis=1)


def _model(request, name):
  model = request.getfixturevalue(name)
  return model[0] if isinstance(model, tuple) else model


@pytest.mark.parametrize("beam_size", [1, 3])
def test_cached_decoding_equals_recomputed_decoding(reverse_model, beam_size):
  # (the random model is checked logit by logit above; its decodes are degenerate)
  model = reverse_model[0]
  cached = _decode_fn(model, beam_size=beam_size, use_cache=True)(SOURCES)
  uncached = _decode_fn(model, beam_size=beam_size, use_cache=False)(SOURCES)
  assert _rows(cached) == _rows(uncached)
  assert cached.shape == uncached.shape


@pytest.mark.parametrize(
  "model_name,beam_size", [("reverse_model", 1), ("reverse_model", 3), ("random_model", 3)]
)
def test_batch_of_one_equals_rows_of_a_padded_batch(request, model_name, beam_size):
  model = _model(request, model_name)
  extra = model.max_decode_extra
  decode = _decode_fn(model, beam_size=beam_size)
  batched = _rows(decode(SOURCES))
  for i, source in enumerate(SOURCES):
    trimmed = source[: list(source).index(EOS_ID) + 1][None]  # no padding at all
    single = decode(trimmed).numpy()
    assert single.shape[0] == 1
    assert _rows(single) == [batched[i]]
    # every row is limited to its own input length + max_decode_extra, ending in EOS
    assert len(batched[i]) <= trimmed.shape[1] + extra and batched[i][-1] == EOS_ID


REVERSE_ROWS = [[5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15, 16], [17, 3, 4]]


def _padded(rows, width):
  out = np.zeros((len(rows), width), np.int32)
  for i, r in enumerate(rows):
    out[i, : len(r) + 1] = r + [EOS_ID]
  return out


@pytest.fixture(scope="module")
def reverse_model():
  """A tiny model trained 200 Adam steps on four reverse-copy pairs; returns (model, final loss)."""
  keras.utils.set_random_seed(0)
  model = registry.build_model("transformer", label_smoothing=0.0, max_decode_extra=4, **TINY)
  inputs = _padded(REVERSE_ROWS, 6)
  targets = _padded([r[::-1] for r in REVERSE_ROWS], 6)
  features = {"inputs": tf.constant(inputs), "targets": tf.constant(targets)}
  optimizer = keras.optimizers.Adam(3e-3)
  optimizer.build(model.trainable_variables)

  @tf.function
  def train_step():
    with tf.GradientTape() as tape:
      losses, _ = model.loss_terms(features, training=True)
      num, den = losses["cross_entropy"]
      loss = num / den
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  for _ in range(200):
    loss = train_step()
  return model, float(loss)


def test_tiny_model_overfits_reverse_task(reverse_model):
  model, loss = reverse_model
  assert loss < 0.05
  inputs = _padded(REVERSE_ROWS, 6)
  expected = [r[::-1] + [EOS_ID] for r in REVERSE_ROWS]
  assert _rows(_decode_fn(model, beam_size=1)(inputs)) == expected
  assert _rows(_decode_fn(model, beam_size=2)(inputs)) == expected


@pytest.mark.parametrize("beam_size", [1, 2])
def test_xla_compiled_decode_gives_the_known_answer(reverse_model, beam_size):
  # decode_function(jit_compile=True): the searches' fixed-width buffers let XLA
  # compile model.decode; the reversed sources come out, at batch 4 and batch 1,
  # the inputs padded to a multiple of 4 inside (masked) and the output trimmed.
  model = reverse_model[0]
  fn = decode.decode_function(model, beam_size, jit_compile=True, width_multiple=4)
  expected = [r[::-1] + [EOS_ID] for r in REVERSE_ROWS]
  assert _rows(fn(tf.constant(_padded(REVERSE_ROWS, 6)))) == expected
  for row, want in zip(REVERSE_ROWS, expected):
    out = fn(tf.constant([row + [EOS_ID]], tf.int32)).numpy()
    assert out.shape == (1, len(want)) and out[0].tolist() == want
