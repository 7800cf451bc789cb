"""Fuzzing every registered bottleneck with bad batches (hypothesis).

Batches of any shape (zero rows, one row, several batch axes) with rows of NaN,
+Inf, -Inf or one NaN entry, random masks (bool or float), all masked. Each
training and inference call must give outputs of the right shapes, valid
codes, finite outputs where the input row is finite, and must leave the
layer's state finite: a non-finite row is a masked row for the EMA (checked
against numpy's Eq. 3-4 on the kept finite rows), a batch with no kept finite
row leaves the state exactly as it was (see t2t_vqem/bottlenecks/base.py and
vector_quantizer.py, "Bad input"). Runs are short and derandomized, so CI sees
the same examples every time.
"""

import math

from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest
import tensorflow as tf

from t2t_vqem import registry
import t2t_vqem.bottlenecks  # noqa: F401  (registers the bottlenecks)

DIM = 4

# name -> (registered bottleneck, arguments); every registered one is here.
CONFIGS = {
  "hard_em": ("hard_em", dict(codebook_size=5, decay=0.8)),
  "hard_em_k2": ("hard_em", dict(codebook_size=2, decay=0.5, epsilon=0.0)),
  "hard_em_options": (
    "hard_em",
    dict(codebook_size=4, decay=0.8, init_from_first_batch=True, dead_code_restart_steps=1),
  ),
  "hard_em_blocks": ("hard_em", dict(codebook_size=3, num_blocks=2, decay=0.8)),
  "soft_em": ("soft_em", dict(codebook_size=5, num_samples=3, decay=0.8)),
  "soft_em_blocks": ("soft_em", dict(codebook_size=3, num_samples=2, num_blocks=2, decay=0.9)),
  "vq": ("vq", dict(codebook_size=5)),
  "gumbel_softmax": ("gumbel_softmax", dict(codebook_size=5, temperature_warmup_steps=10)),
  "semhash": ("semhash", dict(num_bits=3, startup_steps=2)),
}
EMA = ("hard_em", "hard_em_k2", "hard_em_blocks", "soft_em", "soft_em_blocks")
DETERMINISTIC = ("hard_em", "hard_em_k2", "hard_em_blocks", "vq")  # E step without draws

FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None)

ROWS = ["finite"] * 5 + ["nan", "inf", "-inf", "one_nan"]
SHAPES = [(0,), (1,), (2,), (9,), (0, 3), (3, 0), (1, 1), (2, 5), (3, 4), (2, 2, 3)]


def test_every_registered_bottleneck_is_fuzzed():
  built_in = {
    name
    for name in registry.list_bottlenecks()
    if registry.bottleneck(name).__module__.startswith("t2t_vqem.")
  }
  assert built_in == {name for name, _ in CONFIGS.values()}


_LAYERS = {}


def fresh_layer(config):
  """The config's layer (built once: its tf.functions trace once), reset to its first state."""
  if config not in _LAYERS:
    tf.random.set_seed(1)
    name, kwargs = CONFIGS[config]
    layer = registry.build_bottleneck(name, embedding_dim=DIM, **kwargs)
    _LAYERS[config] = layer, [v.numpy().copy() for v in layer.weights]
  layer, values = _LAYERS[config]
  for v, value in zip(layer.weights, values):
    v.assign(value)
  return layer


def state(layer):
  return {v.path: v.numpy().copy() for v in layer.weights}


@st.composite
def batches(draw):
  """(x float32 [..., DIM], mask None / bool / float [...], rows_finite bool [...])."""
  shape = draw(st.sampled_from(SHAPES))
  n = math.prod(shape)
  kinds = draw(st.lists(st.sampled_from(ROWS), min_size=n, max_size=n))
  mask_kind = draw(st.sampled_from(["none", "random", "random_float", "all_masked", "all_kept"]))
  keep = draw(st.lists(st.booleans(), min_size=n, max_size=n))
  scale = draw(st.sampled_from([1e-3, 1.0, 30.0, 1e3]))
  seed = draw(st.integers(0, 2**16))
  return make_batch(shape, kinds, mask_kind, keep, scale, seed)


def make_batch(shape, kinds, mask_kind, keep=None, scale=1.0, seed=0):
  rng = np.random.default_rng(seed)
  n = math.prod(shape)
  x = (rng.standard_normal((n, DIM)) * scale).astype(np.float32)
  for i, kind in enumerate(kinds):
    if kind == "nan":
      x[i] = np.nan
    elif kind in ("inf", "-inf"):
      x[i] = float(kind)
    elif kind == "one_nan":
      x[i, rng.integers(DIM)] = np.nan
  keep = np.ones(n, bool) if keep is None else np.asarray(keep, bool).reshape(n)
  mask = {
    "none": None,
    "random": keep,
    "random_float": keep.astype(np.float32),
    "all_masked": np.zeros(n, bool),
    "all_kept": np.ones(n, bool),
  }[mask_kind]
  x = x.reshape(shape + (DIM,))
  mask = None if mask is None else mask.reshape(shape)
  return x, mask


def kept_finite(x, mask):
  """bool [N]: the rows that count in the statistics."""
  flat = x.reshape(-1, DIM)
  keep = np.isfinite(flat).all(-1)
  if mask is not None:
    keep &= np.asarray(mask).reshape(-1) > 0
  return keep


def draws_nbs(layer, draws):
  """The output's draws as int [N, B, S] (codes of gumbel / semhash: B = S = 1)."""
  blocks = getattr(layer, "num_blocks", 1)
  samples = getattr(layer, "num_samples", 1) if getattr(layer, "mode", "") == "soft_em" else 1
  return np.asarray(draws).reshape(-1, blocks, samples)


def np_metrics(draws, weights, k):
  """Perplexity and usage of the code histogram per block (averaged), as in equations."""
  n, blocks, samples = draws.shape
  perplexities, usages = [], []
  for b in range(blocks):
    counts = np.zeros(k)
    for i in range(n):
      for s in range(samples):
        counts[draws[i, b, s]] += weights[i] / samples
    total = counts.sum()
    p = counts[counts > 0] / total if total > 0 else np.zeros(0)
    perplexities.append(np.exp(-(p * np.log(p)).sum()))
    usages.append((counts > 0).mean())
  return np.mean(perplexities), np.mean(usages)


def np_ema_step(layer, before, x, draws, keep):
  """Eq. 3-4 with T2T's Laplace smoothing on the kept finite rows, in float64.

  Returns (ema_count, ema_means_sum, codebook) in the layer's layout, or the
  state before when no row is kept (no observation, no decay).
  """
  k, blocks = layer.codebook_size, layer.num_blocks
  decay, eps = layer.decay, layer.epsilon
  count0 = np.asarray(before["ema_count"], np.float64).reshape(blocks, k)
  sum0 = np.asarray(before["ema_means_sum"], np.float64).reshape(blocks, k, -1)
  codebook0 = np.asarray(before["codebook"], np.float64).reshape(blocks, k, -1)
  if not keep.any():
    return count0, sum0, codebook0
  rows = x.reshape(-1, blocks, DIM // blocks).astype(np.float64)[keep]
  draws = draws[keep]
  samples = draws.shape[-1]
  batch_count = np.zeros((blocks, k))
  batch_sum = np.zeros((blocks, k, DIM // blocks))
  for i in range(len(rows)):
    for b in range(blocks):
      for s in range(samples):
        batch_count[b, draws[i, b, s]] += 1.0 / samples
        batch_sum[b, draws[i, b, s]] += rows[i, b] / samples
  count = decay * count0 + (1 - decay) * batch_count
  means_sum = decay * sum0 + (1 - decay) * batch_sum
  n = count.sum(-1, keepdims=True)
  smoothed = (count + eps) / (n + k * eps) * n
  safe = np.where(smoothed > 0, smoothed, 1.0)[..., None]
  codebook = np.where(smoothed[..., None] > 0, means_sum / safe, codebook0)
  return count, means_sum, codebook


def named(layer, values):
  """{'codebook': ..., 'ema_count': ...} from {variable path: value}."""
  return {path.rsplit("/", 1)[-1]: value for path, value in values.items()}


def check_outputs(layer, out, x, mask, before, training=False):
  """Shapes, dtypes, code ranges, finiteness and metrics of one call's outputs;
  `before` the layer's state before the call."""
  codebook = named(layer, before)["codebook"] if hasattr(layer, "mode") else None
  if training and getattr(layer, "init_from_first_batch", False):
    codebook = None  # seeded from the batch before the E step
  batch_shape = x.shape[:-1]
  num_codes = layer.num_codes
  finite_rows = np.isfinite(x).all(-1)
  keep = kept_finite(x, mask)
  assert out.quantized.shape == x.shape and out.quantized.dtype == tf.float32
  codes = out.codes.numpy()
  assert codes.shape == batch_shape and codes.dtype == np.int32
  assert ((codes >= 0) & (codes < num_codes)).all(), codes
  soft = out.soft_targets.numpy()
  assert soft.shape == batch_shape + (num_codes,)
  assert np.isfinite(soft).all()
  np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-5)
  draws = out.draws.numpy()
  assert draws.shape[: len(batch_shape)] == batch_shape and draws.dtype == np.int32
  per_block = getattr(layer, "codebook_size", num_codes)
  assert ((draws >= 0) & (draws < per_block)).all(), draws
  q = out.quantized.numpy()
  assert np.isfinite(q[finite_rows]).all()
  if codebook is not None:
    # Eq. 1 / 11: the decoder input of every row (finite or not) is the mean of
    # its draws' codebook rows (before the call's M step).
    blocks = layer.num_blocks
    codebook = codebook.reshape(blocks, layer.codebook_size, -1)
    nbs = draws_nbs(layer, draws)
    want = np.concatenate([codebook[b][nbs[:, b]].mean(1) for b in range(blocks)], -1)
    np.testing.assert_allclose(q.reshape(want.shape), want, rtol=1e-6, atol=1e-7)
  loss = float(out.loss)
  assert out.loss.shape == ()
  weights = np.ones(keep.shape) if mask is None else (np.asarray(mask).reshape(-1) > 0)
  if np.isfinite(x.reshape(-1, DIM)[weights > 0]).all():
    assert math.isfinite(loss), loss
    if not weights.any():
      assert loss == 0.0
  elif layer.registered_name != "semhash":  # a kept non-finite row: the loss says so
    assert not math.isfinite(loss), loss
  perplexity, usage = float(out.perplexity), float(out.usage)
  want_p, want_u = np_metrics(draws_nbs(layer, draws), keep.astype(np.float64), per_block)
  np.testing.assert_allclose(perplexity, want_p, rtol=1e-5)
  np.testing.assert_allclose(usage, want_u, rtol=1e-6)
  return keep


EDGE_CASES = [
  make_batch((0,), [], "none"),  # an empty batch
  make_batch((2, 0), [], "random", []),  # an empty batch with batch axes
  make_batch((1,), ["finite"], "none"),  # a single row
  make_batch((2, 3), ["finite"] * 6, "all_masked"),
  make_batch((2, 2), ["nan", "inf", "-inf", "one_nan"], "none"),  # nothing finite
  make_batch((5,), ["finite", "nan", "finite", "inf", "finite"], "all_kept"),
]


def edge_examples(fn):
  for case in EDGE_CASES:
    fn = example(batch=case)(fn)
  return fn


@pytest.mark.parametrize("config", sorted(CONFIGS))
@FUZZ
@edge_examples
@given(batch=batches())
def test_inference_call_on_bad_batches(config, batch):
  x, mask = batch
  layer = fresh_layer(config)
  before = state(layer)
  out = layer(x, training=False, mask=mask)
  check_outputs(layer, out, x, mask, before)
  after = state(layer)
  for path, value in before.items():  # inference never updates
    np.testing.assert_array_equal(after[path], value, err_msg=path)
  codes = layer.encode(x).numpy()  # the deterministic codes, of every row
  assert codes.shape == x.shape[:-1]
  assert ((codes >= 0) & (codes < layer.num_codes)).all()


@pytest.mark.parametrize("config", sorted(CONFIGS))
@FUZZ
@edge_examples
@given(batch=batches())
def test_training_call_on_bad_batches(config, batch):
  x, mask = batch
  layer = fresh_layer(config)
  before = state(layer)
  out = layer(x, training=True, mask=mask)
  keep = check_outputs(layer, out, x, mask, before, training=True)
  after = state(layer)
  for path, value in after.items():
    assert np.isfinite(value).all(), (path, value)
  if not keep.any():  # no observation: nothing moves but the step counters
    for path, value in before.items():
      if not path.endswith("/step"):
        np.testing.assert_array_equal(after[path], value, err_msg=path)
  if config in EMA:
    want = np_ema_step(layer, named(layer, before), x, draws_nbs(layer, out.draws), keep)
    got = named(layer, after)
    atol = 1e-5 * max(1.0, np.abs(x[np.isfinite(x)]).max(initial=0.0))
    for name, value in zip(("ema_count", "ema_means_sum", "codebook"), want):
      np.testing.assert_allclose(
        got[name].reshape(value.shape), value, rtol=1e-4, atol=atol, err_msg=name
      )
  elif config == "hard_em_options" and keep.any():
    # Seeded and restarted codes are finite kept rows (never a NaN / Inf row).
    assert named(layer, after)["initialized"] == 1.0
  elif config in ("vq", "gumbel_softmax", "semhash"):  # a training call moves only `step`
    for path, value in before.items():
      if path.endswith("/step"):
        assert after[path] == value + 1.0
      else:
        np.testing.assert_array_equal(after[path], value, err_msg=path)
  if config in DETERMINISTIC:
    # A non-finite row is a masked row: the kept finite rows alone give the same
    # codes and the same new state.
    rows = x.reshape(-1, DIM)[keep]
    twin = fresh_layer(config)
    for v in twin.weights:
      v.assign(before[v.path])
    alone = twin(rows, training=True)
    np.testing.assert_array_equal(
      alone.draws.numpy(), out.draws.numpy().reshape((-1,) + tuple(alone.draws.shape[1:]))[keep]
    )
    for path, value in state(twin).items():
      np.testing.assert_allclose(value, after[path], rtol=1e-6, atol=1e-6, err_msg=path)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_graph_mode_with_unknown_shapes(config):
  """The same edge cases through one tf.function traced for [None, None, D]."""
  layer = fresh_layer(config)
  call = tf.function(
    lambda x, mask: layer(x, training=True, mask=mask),
    input_signature=[tf.TensorSpec([None, None, DIM]), tf.TensorSpec([None, None], tf.bool)],
  )
  for shape, kinds, mask_kind in [
    ((0, 0), [], "all_kept"),
    ((3, 0), [], "all_kept"),
    ((1, 1), ["finite"], "all_kept"),
    ((2, 3), ["finite"] * 6, "all_masked"),
    ((2, 3), ["nan", "finite", "inf", "finite", "-inf", "finite"], "all_kept"),
  ]:
    x, mask = make_batch(shape, kinds, mask_kind)
    before = state(layer)
    out = call(x, mask)
    check_outputs(layer, out, x, mask, before, training=True)
    for path, value in state(layer).items():
      assert np.isfinite(value).all(), path
    if config in EMA and not kept_finite(x, mask).any():
      for path, value in state(layer).items():
        np.testing.assert_array_equal(value, before[path], err_msg=path)
  # A mask that only turns out wrong when the graph runs is named as such.
  with pytest.raises(
    tf.errors.InvalidArgumentError, match="mask shape must be the input shape without its last"
  ):
    call(np.zeros((2, 3, DIM), np.float32), np.ones((2, 4), bool))


@pytest.mark.parametrize(
  "name, kwargs, pattern",
  [
    ("hard_em", dict(codebook_size=1), "codebook_size=1 is not accepted"),
    ("soft_em", dict(codebook_size=1), "codebook_size=1 is not accepted"),
    ("vq", dict(codebook_size=1), "codebook_size=1 is not accepted"),
    ("hard_em", dict(codebook_size=1, num_blocks=2), "codebook_size=1 is not accepted"),
    ("gumbel_softmax", dict(codebook_size=1), "codebook_size=1 is not accepted"),
    ("semhash", dict(num_bits=0), "num_bits=0 is not accepted"),  # K = 2^0 = 1
  ],
)
def test_a_single_code_is_refused(name, kwargs, pattern):
  with pytest.raises(ValueError, match=pattern):
    registry.build_bottleneck(name, embedding_dim=DIM, **kwargs)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_bad_shapes_are_named(config):
  layer = fresh_layer(config)
  with pytest.raises(ValueError, match="rank 1"):
    layer(np.zeros((DIM,), np.float32))
  with pytest.raises(ValueError, match=f"last dimension is 5.*D = {DIM}"):
    layer(np.zeros((2, 5), np.float32))
  with pytest.raises(ValueError, match=r"mask has shape \(2, 4\).*\(2, 3\)"):
    layer(np.zeros((2, 3, DIM), np.float32), mask=np.ones((2, 4), bool))


@pytest.mark.parametrize("config", EMA + ("hard_em_options",))
def test_sums_that_overflow_leave_the_state_as_it_was(config):
  """Finite rows so large that their EMA sums overflow float32: the M step is skipped."""
  layer = fresh_layer(config)
  before = state(layer)
  x = np.full((8, DIM), 3e38, np.float32)  # finite; 8 of them sum to inf
  out = layer(x, training=True)
  assert not math.isfinite(float(out.loss))  # ||x||^2 overflows: the step is flagged
  after = state(layer)
  for path, value in after.items():
    assert np.isfinite(value).all(), path
  if config != "hard_em_options":  # (there, seeding from the batch may succeed)
    for path, value in before.items():
      np.testing.assert_array_equal(after[path], value, err_msg=path)
