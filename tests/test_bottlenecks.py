"""Tests of the paper's equations and the VQ / EM layer against numpy / brute force.

Every expectation here is computed independently of the layer: distances by
brute force in float64, EMA updates by the paper's / T2T's formulas in numpy,
soft E-step frequencies against softmax(-d^2). Multi-replica tests live in
test_bottleneck_replicas.py (they must configure devices before TF starts).
No module-level TF ops here, for the same reason.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from t2t_vqem.bottlenecks import equations as eq
from t2t_vqem.bottlenecks import vector_quantizer as vqlib

# ----------------------------------------------------------------------------
# numpy references
# ----------------------------------------------------------------------------


def np_sq_dist(x, codebook):
  """Brute force ||x_i - e_j||^2, float64, [N, K]."""
  x = np.asarray(x, np.float64)
  codebook = np.asarray(codebook, np.float64)
  return ((x[:, None, :] - codebook[None, :, :]) ** 2).sum(-1)


def np_ema(count, means_sum, batch_count, batch_sum, decay, eps):
  """Eq. 3-4 + T2T Laplace smoothing, per block (last axis K of counts)."""
  count = decay * count + (1 - decay) * batch_count
  means_sum = decay * means_sum + (1 - decay) * batch_sum
  k = count.shape[-1]
  n = count.sum(-1, keepdims=True)
  smoothed = (count + eps) / (n + k * eps) * n
  return count, means_sum, means_sum / smoothed[..., None]


def np_stats(x, idx, k, weights=None):
  """Batch counts / sums for indices idx [N, S] (weights w_i / S per draw)."""
  n, s = idx.shape
  w = np.ones(n) if weights is None else np.asarray(weights, np.float64)
  counts = np.zeros(k)
  sums = np.zeros((k, x.shape[1]))
  for i in range(n):
    for draw in range(s):
      counts[idx[i, draw]] += w[i] / s
      sums[idx[i, draw]] += w[i] / s * x[i]
  return counts, sums


def np_perplexity_usage(counts):
  p = counts / counts.sum()
  nz = p[p > 0]
  return np.exp(-(nz * np.log(nz)).sum()), (counts > 0).mean()


def state(layer):
  return {v.name: np.array(v.numpy()) for v in layer.weights}


_PATH = {"jit_compile": False}


def make_layer(dim, codebook=None, **kwargs):
  kwargs.setdefault("jit_compile", _PATH["jit_compile"])
  layer = vqlib.VectorQuantizer(embedding_dim=dim, **kwargs)
  if codebook is not None:
    layer.codebook.assign(codebook)
    if layer.ema_means_sum is not None:
      layer.ema_means_sum.assign(np.asarray(layer.ema_count.numpy())[..., None] * codebook)
  return layer


def clustered_data(rng, n, centers, scale=0.05):
  """Points around given centers (well separated: no argmin near-ties)."""
  centers = np.asarray(centers, np.float32)
  labels = rng.integers(0, len(centers), n)
  return (centers[labels] + scale * rng.standard_normal((n, centers.shape[1]))).astype(np.float32)


@pytest.fixture
def rng():
  return np.random.default_rng(0)


@pytest.fixture(params=["graph_ops", "xla"])
def step_path(request, monkeypatch):
  """Runs a test twice: layers made by make_layer on each execution path
  (TensorFlow graph ops, and jit_compile=True)."""
  monkeypatch.setitem(_PATH, "jit_compile", request.param == "xla")
  return request.param


# ----------------------------------------------------------------------------
# 1. E step (Eq. 1, 7)
# ----------------------------------------------------------------------------


@pytest.mark.usefixtures("step_path")
@pytest.mark.parametrize("mode", ["hard_em", "vq"])
@pytest.mark.parametrize("training", [True, False])
def test_e_step_is_brute_force_argmin(rng, mode, training):
  x = rng.standard_normal((4, 25, 16)).astype(np.float32)
  layer = make_layer(16, codebook_size=64, mode=mode, decay=0.5)
  before = layer.codebook.numpy().copy()
  out = layer(x, training=training)
  d2 = np_sq_dist(x.reshape(-1, 16), before)
  expected = d2.argmin(-1).reshape(4, 25)
  np.testing.assert_array_equal(out.draws.numpy(), expected)
  assert out.draws.dtype == tf.int32
  # Forward value: the chosen code (of the codebook before the call), exactly.
  np.testing.assert_array_equal(out.quantized.numpy(), before[expected])
  # Hard modes: soft targets are exact one-hots.
  np.testing.assert_array_equal(out.soft_targets.numpy(), np.eye(64, dtype=np.float32)[expected])
  assert out.quantized.shape == x.shape


@pytest.mark.usefixtures("step_path")
def test_loss_is_beta_times_commitment(rng):
  x = rng.standard_normal((30, 8)).astype(np.float32)
  layer = make_layer(8, codebook_size=16, beta=0.7)
  cb = layer.codebook.numpy().copy()
  out = layer(x, training=False)
  q = cb[np_sq_dist(x, cb).argmin(-1)]
  np.testing.assert_allclose(out.loss.numpy(), 0.7 * ((x - q) ** 2).mean(), rtol=1e-5)


def test_metrics_match_numpy(rng):
  x = rng.standard_normal((200, 4)).astype(np.float32)
  layer = make_layer(4, codebook_size=32)
  cb = layer.codebook.numpy().copy()
  out = layer(x, training=False)
  counts = np.bincount(np_sq_dist(x, cb).argmin(-1), minlength=32)
  ppl, usage = np_perplexity_usage(counts.astype(np.float64))
  np.testing.assert_allclose(out.perplexity.numpy(), ppl, rtol=1e-5)
  np.testing.assert_allclose(out.usage.numpy(), usage, rtol=1e-6)


def test_squared_distances_brute_force_and_clamped(rng):
  cb = rng.standard_normal((50, 32)).astype(np.float32)
  x = rng.standard_normal((20, 32)).astype(np.float32)
  np.testing.assert_allclose(
    eq.squared_distances(x, cb).numpy(), np_sq_dist(x, cb), rtol=1e-4, atol=1e-4
  )
  # Points equal to codes far from the origin: the expansion cancels
  # catastrophically; the result must still be >= 0 and finite.
  far = (cb + 3e3).astype(np.float32)
  d2 = eq.squared_distances(far, far).numpy()
  assert np.all(np.isfinite(d2)) and d2.min() >= 0.0


# ----------------------------------------------------------------------------
# 2. EMA M step (Eq. 3-4, 8)
# ----------------------------------------------------------------------------


@pytest.mark.usefixtures("step_path")
@pytest.mark.parametrize("initial_ema_count", [1.0, 0.0])
def test_ema_update_matches_numpy_over_steps(rng, initial_ema_count):
  """Independent numpy simulation of E step + EMA over several batches."""
  k, dim, decay, eps = 16, 6, 0.8, 1e-3
  layer = make_layer(
    dim, codebook_size=k, decay=decay, epsilon=eps, initial_ema_count=initial_ema_count
  )
  cb = layer.codebook.numpy().astype(np.float64)
  count = layer.ema_count.numpy().astype(np.float64)
  msum = layer.ema_means_sum.numpy().astype(np.float64)
  np.testing.assert_allclose(msum, initial_ema_count * cb)
  for step in range(4):
    x = rng.standard_normal((40, dim)).astype(np.float32) * 0.3
    idx = np_sq_dist(x, cb).argmin(-1)
    bc, bs = np_stats(x, idx[:, None], k)
    count, msum, cb = np_ema(count, msum, bc, bs, decay, eps)
    out = layer(x, training=True)
    np.testing.assert_array_equal(out.draws.numpy(), idx)
  np.testing.assert_allclose(layer.ema_count.numpy(), count, rtol=1e-5)
  np.testing.assert_allclose(layer.ema_means_sum.numpy(), msum, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(layer.codebook.numpy(), cb, rtol=1e-4, atol=1e-5)


@pytest.mark.usefixtures("step_path")
def test_decay_zero_sets_used_codes_to_cluster_means(rng):
  """Eq. 8: with decay 0 one step is the k-means M step."""
  k, dim = 8, 5
  x = rng.standard_normal((100, dim)).astype(np.float32)
  for eps, rtol in [(0.0, 1e-6), (1e-5, 1e-3)]:
    layer = make_layer(dim, codebook_size=k, decay=0.0, epsilon=eps)
    cb = layer.codebook.numpy().copy()
    idx = np_sq_dist(x, cb).argmin(-1)
    layer(x, training=True)
    new = layer.codebook.numpy()
    for j in np.unique(idx):
      np.testing.assert_allclose(new[j], x[idx == j].mean(0), rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(layer.ema_count.numpy(), np.bincount(idx, minlength=k))


def test_repeated_steps_converge_to_kmeans_fixed_point(rng):
  centers = rng.standard_normal((5, 3)) * 4
  x = clustered_data(rng, 300, centers, scale=0.5)
  layer = make_layer(3, codebook_size=5, decay=0.5, epsilon=1e-5, codebook=x[:5].copy())
  step = tf.function(lambda v: layer(v, training=True))
  for _ in range(150):
    step(x)
  cb = layer.codebook.numpy().astype(np.float64)
  idx = np_sq_dist(x, cb).argmin(-1)
  # Fixed point of Lloyd's algorithm: every used code is its cluster's mean.
  for j in np.unique(idx):
    np.testing.assert_allclose(cb[j], x[idx == j].mean(0), atol=1e-3)
  # And one numpy Lloyd step changes nothing.
  idx2 = np_sq_dist(
    x, np.stack([x[idx == j].mean(0) if (idx == j).any() else cb[j] for j in range(5)])
  ).argmin(-1)
  np.testing.assert_array_equal(idx, idx2)


# ----------------------------------------------------------------------------
# 3. Soft EM (§3.2)
# ----------------------------------------------------------------------------


@pytest.mark.usefixtures("step_path")
@pytest.mark.parametrize("temperature", [1.0, 2.5])
@pytest.mark.parametrize("training", [False, True])
def test_soft_em_frequencies_match_softmax(temperature, training):
  tf.random.set_seed(1)
  cb = np.array([[0, 0], [1, 0], [0, 1], [1, 1.5]], np.float32)
  point = np.array([0.3, 0.2], np.float32)
  x = np.tile(point, (5000, 1))
  layer = make_layer(
    2, codebook=cb, codebook_size=4, mode="soft_em", num_samples=8, temperature=temperature
  )
  out = layer(x, training=training)
  assert out.draws.shape == (5000, 8)
  freq = np.bincount(out.draws.numpy().ravel(), minlength=4) / 40000.0
  logits = -np_sq_dist(point[None], cb)[0] / temperature
  p = np.exp(logits - logits.max())
  p /= p.sum()
  tolerance = 4 * np.sqrt(p * (1 - p) / 40000)  # 4 binomial std. deviations
  assert np.all(np.abs(freq - p) <= tolerance), (freq, p)


@pytest.mark.usefixtures("step_path")
def test_soft_em_forward_targets_and_fractional_ema(rng):
  tf.random.set_seed(2)
  k, dim, s, decay, eps = 6, 3, 5, 0.9, 1e-5
  cb = rng.standard_normal((k, dim)).astype(np.float32) * 0.5
  x = rng.standard_normal((2, 20, dim)).astype(np.float32) * 0.5
  layer = make_layer(
    dim, codebook=cb, codebook_size=k, mode="soft_em", num_samples=s, decay=decay, epsilon=eps
  )
  count0 = layer.ema_count.numpy().astype(np.float64)
  msum0 = layer.ema_means_sum.numpy().astype(np.float64)
  out = layer(x, training=True)
  idx = out.draws.numpy()
  assert idx.shape == (2, 20, s)
  # Eq. 11: forward value = mean of the drawn embeddings.
  np.testing.assert_allclose(out.quantized.numpy(), cb[idx].mean(-2), rtol=1e-6, atol=1e-6)
  # Soft targets: mean of the sampled one-hots; they sum to 1.
  expected_targets = np.eye(k)[idx].mean(-2)
  np.testing.assert_allclose(out.soft_targets.numpy(), expected_targets, atol=1e-6)
  np.testing.assert_allclose(out.soft_targets.numpy().sum(-1), 1.0, rtol=1e-6)
  # M step with fractional counts, then EMA.
  bc, bs = np_stats(x.reshape(-1, dim), idx.reshape(-1, s), k)
  count, msum, new_cb = np_ema(count0, msum0, bc, bs, decay, eps)
  np.testing.assert_allclose(layer.ema_count.numpy(), count, rtol=1e-5)
  np.testing.assert_allclose(layer.ema_means_sum.numpy(), msum, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(layer.codebook.numpy(), new_cb, rtol=1e-4, atol=1e-6)
  # Commitment loss is against the mean of the draws.
  np.testing.assert_allclose(
    out.loss.numpy(), 0.25 * ((x - cb[idx].mean(-2)) ** 2).mean(), rtol=1e-5
  )
  ppl, usage = np_perplexity_usage(bc)
  np.testing.assert_allclose(out.perplexity.numpy(), ppl, rtol=1e-5)
  np.testing.assert_allclose(out.usage.numpy(), usage)


def test_mean_one_hot_many_codes():
  idx = np.array([[[0, 3, 3], [65535, 1, 65535]]], np.int32)
  got = eq.mean_one_hot(tf.constant(idx), 65536).numpy()
  expected = np.zeros((1, 2, 65536), np.float32)
  for r in range(2):
    for j in idx[0, r]:
      expected[0, r, j] += 1 / 3
  np.testing.assert_allclose(got, expected, atol=1e-7)


# ----------------------------------------------------------------------------
# 4. Gradients
# ----------------------------------------------------------------------------


@pytest.mark.usefixtures("step_path")
@pytest.mark.parametrize("mode", ["hard_em", "soft_em", "vq"])
def test_gradients(rng, mode):
  tf.random.set_seed(3)
  k, dim, beta = 8, 4, 0.3
  x = tf.constant(rng.standard_normal((3, 7, dim)).astype(np.float32))
  w = rng.standard_normal((3, 7, dim)).astype(np.float32)
  layer = make_layer(dim, codebook_size=k, mode=mode, num_samples=3, beta=beta)
  cb_var = layer.codebook.value
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    tape.watch(cb_var)
    out = layer(x, training=True)
    downstream = tf.reduce_sum(out.quantized * w)
  # Straight-through: the downstream gradient reaches x unchanged.
  np.testing.assert_allclose(tape.gradient(downstream, x).numpy(), w, rtol=1e-6)
  g_cb = tape.gradient(downstream, cb_var)
  assert g_cb is None or not np.any(tf.convert_to_tensor(g_cb).numpy())
  # Commitment loss reaches x: d/dx beta * mean((x - sg(q))^2).
  q = out.quantized.numpy()
  n_el = x.numpy().size
  g_x = tape.gradient(out.loss, x).numpy()
  np.testing.assert_allclose(g_x, 2 * beta * (x.numpy() - q) / n_el, rtol=1e-4, atol=1e-7)
  g_cb = tape.gradient(out.loss, cb_var)
  if mode == "vq":
    assert layer.codebook.trainable
    assert any(v is layer.codebook for v in layer.trainable_weights)
    # ||sg(z_e) - e||^2 averaged: d/de_j = sum_{i: z_i = j} 2 (e_j - x_i) / n.
    cb = layer.codebook.numpy()
    idx = out.draws.numpy().reshape(-1)
    xf = x.numpy().reshape(-1, dim)
    expected = np.zeros_like(cb)
    for i, j in enumerate(idx):
      expected[j] += 2 * (cb[j] - xf[i]) / n_el
    np.testing.assert_allclose(tf.convert_to_tensor(g_cb).numpy(), expected, rtol=1e-4, atol=1e-7)
  else:
    assert g_cb is None or not np.any(tf.convert_to_tensor(g_cb).numpy())
    assert not layer.trainable_weights
    for v in layer.non_trainable_weights:
      assert v.dtype == "float32"


def test_vq_mode_trains_codebook_with_optimizer(rng):
  x = rng.standard_normal((64, 4)).astype(np.float32)
  layer = make_layer(4, codebook_size=4, mode="vq", beta=0.25)
  opt = keras.optimizers.SGD(0.5)
  before = layer.codebook.numpy().copy()

  @tf.function
  def step(v):
    with tf.GradientTape() as tape:
      out = layer(v, training=True)
    grads = tape.gradient(out.loss, layer.trainable_weights)
    opt.apply_gradients(zip(grads, layer.trainable_weights))
    return out.loss

  losses = [float(step(x)) for _ in range(20)]
  assert losses[-1] < losses[0]
  assert not np.allclose(layer.codebook.numpy(), before)


# ----------------------------------------------------------------------------
# 5. Masks, 6. no update in inference
# ----------------------------------------------------------------------------


@pytest.mark.usefixtures("step_path")
@pytest.mark.parametrize("mode", ["hard_em", "vq"])
@pytest.mark.parametrize("num_blocks", [1, 2])
def test_mask_equals_update_on_kept_rows(rng, mode, num_blocks):
  dim, k = 8, 12
  x = rng.standard_normal((4, 10, dim)).astype(np.float32)
  mask = rng.random((4, 10)) < 0.6
  x_padded = x.copy()
  x_padded[~mask] = np.nan  # padding must not leak anywhere
  a = make_layer(dim, codebook_size=k, mode=mode, num_blocks=num_blocks, decay=0.7)
  b = make_layer(dim, codebook_size=k, mode=mode, num_blocks=num_blocks, decay=0.7)
  for va, vb in zip(a.weights, b.weights):
    vb.assign(va.numpy())
  out_a = a(x_padded, training=True, mask=mask)
  out_b = b(x[mask], training=True)
  for va, vb in zip(a.weights, b.weights):
    np.testing.assert_allclose(va.numpy(), vb.numpy(), rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(va.numpy()))
  np.testing.assert_array_equal(out_a.draws.numpy()[mask], out_b.draws.numpy())
  for name in ("loss", "perplexity", "usage"):
    np.testing.assert_allclose(
      getattr(out_a, name).numpy(), getattr(out_b, name).numpy(), rtol=1e-6
    )
  # A float 0/1 mask means the same as the bool mask: same outputs, same update.
  c = make_layer(dim, codebook_size=k, mode=mode, num_blocks=num_blocks, decay=0.7)
  for vb, vc in zip(b.weights, c.weights):
    vc.assign(vb.numpy())
  out_bool = b(x_padded, training=True, mask=mask)
  out_float = c(x_padded, training=True, mask=mask.astype(np.float32))
  for vb, vc in zip(b.weights, c.weights):
    np.testing.assert_array_equal(vc.numpy(), vb.numpy())
  np.testing.assert_array_equal(out_float.draws.numpy()[mask], out_bool.draws.numpy()[mask])
  np.testing.assert_array_equal(out_float.quantized.numpy()[mask], out_bool.quantized.numpy()[mask])
  for name in ("loss", "perplexity", "usage"):
    assert getattr(out_float, name).numpy() == getattr(out_bool, name).numpy()


@pytest.mark.parametrize(
  "mode,num_blocks", [("hard_em", 1), ("hard_em", 2), ("soft_em", 1), ("vq", 2)]
)
@pytest.mark.usefixtures("step_path")
def test_masked_loss_and_gradient_in_graph(rng, mode, num_blocks):
  """Loss value and gradients under a mask, traced in a tf.function.

  Hard modes take the loss from the E step's winning score; the value and the
  gradient must still be those of beta * mean over kept rows of ||x - q||^2.
  """
  tf.random.set_seed(5)
  k, dim, beta = 6, 4, 0.4
  x = rng.standard_normal((5, 7, dim)).astype(np.float32) * 3.0
  mask = rng.random((5, 7)) < 0.6
  x_padded = x.copy()
  x_padded[~mask] = np.inf
  layer = make_layer(
    dim, codebook_size=k, mode=mode, num_samples=3, beta=beta, num_blocks=num_blocks
  )

  @tf.function
  def run(v):
    with tf.GradientTape() as tape:
      tape.watch(v)
      out = layer(v, training=False, mask=mask)
    return out, tape.gradient(out.loss, v)

  out, g_x = run(tf.constant(x_padded))
  q = out.quantized.numpy()
  kept = mask.sum() * dim
  sq = ((x - q) ** 2)[mask].sum()
  expected = (beta + (1.0 if mode == "vq" else 0.0)) * sq / kept
  np.testing.assert_allclose(out.loss.numpy(), expected, rtol=1e-5)
  g_expected = np.where(mask[..., None], 2 * beta * (x - q) / kept, 0.0)
  np.testing.assert_allclose(g_x.numpy(), g_expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("num_samples", [1, 4])
def test_cluster_statistics_match_numpy_and_repeat_exactly(rng, num_samples):
  """Counts and sums per block with padding; a second call is bit-identical."""
  b, n, d, k = 2, 40, 3, 7
  x = rng.standard_normal((b, n, d)).astype(np.float32)
  idx = rng.integers(0, k, (b, n, num_samples)).astype(np.int32)
  keep = rng.random(n) < 0.7
  x[:, ~keep] = np.nan  # padding must not leak
  args = tf.constant(x), tf.constant(idx), k, tf.constant(keep)
  for statistics in (eq.cluster_statistics, eq._fast_cluster_statistics):  # pylint: disable=protected-access
    counts, sums = statistics(*args)
    for block in range(b):
      c, sm = np_stats(x[block][keep], idx[block][keep], k)
      np.testing.assert_allclose(counts.numpy()[block], c, rtol=1e-6)
      np.testing.assert_allclose(sums.numpy()[block], sm, rtol=1e-5, atol=1e-6)
  for _ in range(20):  # the layer's (fast) sums: a scatter would add in varying order
    again = eq._fast_cluster_statistics(*args)[1]  # pylint: disable=protected-access
    np.testing.assert_array_equal(again.numpy(), sums.numpy())


@pytest.mark.parametrize("num_blocks,num_samples", [(1, 1), (1, 5), (3, 4)])
def test_fast_mean_of_codes_is_the_reference(rng, num_blocks, num_samples):
  codebook = rng.standard_normal((num_blocks, 9, 4)).astype(np.float32)
  draws = rng.integers(0, 9, (num_blocks, 30, num_samples)).astype(np.int32)
  expected = codebook[np.arange(num_blocks)[:, None, None], draws].mean(2)
  for mean in (eq.mean_of_codes, eq._fast_mean_of_codes):  # pylint: disable=protected-access
    np.testing.assert_allclose(
      mean(tf.constant(codebook), tf.constant(draws)).numpy(), expected, rtol=1e-6, atol=1e-6
    )


@pytest.mark.usefixtures("step_path")
def test_mask_soft_em_statistics(rng):
  tf.random.set_seed(4)
  k, dim, s = 5, 3, 4
  x = rng.standard_normal((6, 9, dim)).astype(np.float32)
  mask = rng.random((6, 9)) < 0.5
  layer = make_layer(dim, codebook_size=k, mode="soft_em", num_samples=s, decay=0.0, epsilon=0.0)
  cb0 = layer.codebook.numpy().copy()
  out = layer(x, training=True, mask=mask)
  idx = out.draws.numpy()[mask]
  bc, bs = np_stats(x[mask], idx, k)
  np.testing.assert_allclose(layer.ema_count.numpy(), bc, rtol=1e-5)
  used = bc > 0
  np.testing.assert_allclose(
    layer.codebook.numpy()[used], bs[used] / bc[used, None], rtol=1e-4, atol=1e-6
  )
  np.testing.assert_allclose(layer.codebook.numpy()[~used], cb0[~used])
  ppl, usage = np_perplexity_usage(bc)
  np.testing.assert_allclose(out.perplexity.numpy(), ppl, rtol=1e-5)
  np.testing.assert_allclose(out.usage.numpy(), usage)


@pytest.mark.usefixtures("step_path")
def test_all_masked_batch_changes_nothing(rng):
  x = rng.standard_normal((5, 4)).astype(np.float32)
  layer = make_layer(4, codebook_size=4, decay=0.0)
  before = state(layer)
  out = layer(x, training=True, mask=np.zeros(5, bool))
  for name, value in state(layer).items():
    np.testing.assert_array_equal(value, before[name])
  assert out.loss.numpy() == 0.0


@pytest.mark.parametrize("mode", ["hard_em", "soft_em", "vq"])
def test_no_update_when_not_training(rng, mode):
  x = rng.standard_normal((50, 4)).astype(np.float32)
  layer = make_layer(
    4,
    codebook_size=8,
    mode=mode,
    num_samples=2,
    decay=0.0,
    init_from_first_batch=True,
    dead_code_restart_steps=1,
  )
  before = state(layer)
  f = tf.function(lambda v: layer(v, training=False))
  for _ in range(3):
    layer(x, training=False)
    layer(x)
    f(x)
  for name, value in state(layer).items():
    np.testing.assert_array_equal(value, before[name])


# ----------------------------------------------------------------------------
# 7. Product (sliced) quantization
# ----------------------------------------------------------------------------


@pytest.mark.usefixtures("step_path")
@pytest.mark.parametrize("mode", ["hard_em", "soft_em"])
def test_num_blocks_per_block_codebooks(rng, mode):
  tf.random.set_seed(5)
  b, k, dim, decay, eps, s = 4, 16, 12, 0.9, 1e-5, 3
  x = rng.standard_normal((3, 5, dim)).astype(np.float32)
  layer = make_layer(
    dim, codebook_size=k, num_blocks=b, mode=mode, num_samples=s, decay=decay, epsilon=eps
  )
  assert layer.num_codes == k**b
  assert layer.codebook.shape == (b, k, dim // b)
  assert layer.ema_count.shape == (b, k)
  cb = layer.codebook.numpy().astype(np.float64)
  count0 = layer.ema_count.numpy().astype(np.float64)
  msum0 = layer.ema_means_sum.numpy().astype(np.float64)
  out = layer(x, training=True)
  idx = out.draws.numpy()
  xs = x.reshape(-1, b, dim // b)
  expected_shape = (3, 5, b) + ((s,) if mode == "soft_em" else ())
  assert idx.shape == expected_shape
  idx = idx.reshape(15, b, -1)
  # One code of the product per draw, c = sum_b z_b K^b; soft targets over
  # the K^b product codes; codes the most frequent product code.
  combined = (idx * (k ** np.arange(b))[None, :, None]).sum(1)  # [15, S]
  soft = out.soft_targets.numpy().reshape(15, k**b)
  for row in range(15):
    want = np.bincount(combined[row], minlength=k**b) / combined.shape[1]
    np.testing.assert_allclose(soft[row], want, atol=1e-6)
    assert out.codes.numpy().reshape(15)[row] == np.argmax(want)
  q = np.zeros((15, b, dim // b))
  for blk in range(b):
    if mode == "hard_em":
      np.testing.assert_array_equal(idx[:, blk, 0], np_sq_dist(xs[:, blk], cb[blk]).argmin(-1))
    q[:, blk] = cb[blk][idx[:, blk]].mean(1)
    bc, bs = np_stats(xs[:, blk], idx[:, blk], k)
    count, msum, new_cb = np_ema(count0[blk], msum0[blk], bc, bs, decay, eps)
    np.testing.assert_allclose(layer.ema_count.numpy()[blk], count, rtol=1e-5)
    np.testing.assert_allclose(layer.codebook.numpy()[blk], new_cb, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(out.quantized.numpy(), q.reshape(3, 5, dim), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------
# 10. Numerics
# ----------------------------------------------------------------------------


@pytest.mark.usefixtures("step_path")
def test_mixed_float16_policy(rng):
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    layer = make_layer(16, codebook_size=64, decay=0.5)
    x = (rng.standard_normal((8, 10, 16)) * 30).astype(np.float16)
    cb = layer.codebook.numpy()
    out = tf.function(lambda v: layer(v, training=True))(tf.constant(x))
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert out.quantized.dtype == tf.float16
  assert out.loss.dtype == tf.float32
  for v in layer.weights:
    assert v.dtype == "float32"
  expected = np_sq_dist(x.reshape(-1, 16).astype(np.float32), cb).argmin(-1)
  np.testing.assert_array_equal(out.draws.numpy().reshape(-1), expected)
  assert np.all(np.isfinite(layer.codebook.numpy()))
  assert np.isfinite(out.loss.numpy())


def test_large_codebook_no_nkd_tensor_no_onehot_matmul(rng):
  k, dim, n = 2**16, 8, 64
  layer = vqlib.VectorQuantizer(k, embedding_dim=dim, decay=0.9)
  x = rng.standard_normal((n, dim)).astype(np.float32)
  cb = layer.codebook.numpy().astype(np.float64)
  f = tf.function(lambda v: layer(v, training=True))
  graph = f.get_concrete_function(tf.TensorSpec([n, dim])).graph
  for op in graph.get_operations():
    for t in op.outputs:
      if t.shape.is_fully_defined():
        assert t.shape.num_elements() < n * k * dim / 4, (op.name, t.shape)
    if op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum"):
      for t in op.inputs:
        assert not (t.shape.rank and t.shape[-1] == k), (op.name, t.shape)
  out = f(x)
  # float64 brute force via the expansion (N * K * D in float64 is too big).
  d2 = (x.astype(np.float64) ** 2).sum(1)[:, None] - 2 * x @ cb.T + (cb**2).sum(1)[None]
  np.testing.assert_array_equal(out.draws.numpy(), d2.argmin(-1))
  assert np.all(np.isfinite(layer.codebook.numpy()))


@pytest.mark.usefixtures("step_path")
def test_jit_compile_matches(rng):
  x = rng.standard_normal((40, 8)).astype(np.float32)
  a = make_layer(8, codebook_size=32)
  b = make_layer(8, codebook_size=32, jit_compile=True)
  b.codebook.assign(a.codebook.numpy())
  b.ema_means_sum.assign(a.ema_means_sum.numpy())
  cb_before = a.codebook.numpy().copy()
  out_a = a(x, training=True)
  out_b = tf.function(lambda v: b(v, training=True))(x)
  np.testing.assert_array_equal(out_a.draws.numpy(), out_b.draws.numpy())
  # The loss from the XLA E step's winning score is the commitment loss.
  q = cb_before[np_sq_dist(x, cb_before).argmin(-1)]
  np.testing.assert_allclose(out_b.loss.numpy(), 0.25 * ((x - q) ** 2).mean(), rtol=1e-5)
  np.testing.assert_allclose(a.codebook.numpy(), b.codebook.numpy(), rtol=1e-5, atol=1e-6)
  soft = make_layer(8, codebook_size=32, mode="soft_em", num_samples=6, jit_compile=True)
  cb = soft.codebook.numpy().copy()
  out = tf.function(lambda v: soft(v, training=True))(x)
  np.testing.assert_allclose(
    out.quantized.numpy(), cb[out.draws.numpy()].mean(-2), rtol=1e-5, atol=1e-6
  )


# ----------------------------------------------------------------------------
# 11. Initialisation from the first batch, dead-code restart
# ----------------------------------------------------------------------------


def _is_row_of(code, rows):
  return np.any(np.all(np.isclose(rows, code, rtol=1e-5, atol=1e-6), axis=1))


def test_init_from_first_batch(rng):
  x = rng.standard_normal((100, 4)).astype(np.float32)
  layer = make_layer(4, codebook_size=16, decay=1.0, init_from_first_batch=True)
  out = layer(x, training=True)
  cb = layer.codebook.numpy()
  # decay 1 leaves the freshly seeded codebook unchanged (EMA no-op).
  assert all(_is_row_of(c, x) for c in cb)
  assert len(np.unique(cb, axis=0)) == 16  # 100 rows >= 16: no repeats
  np.testing.assert_allclose(out.quantized.numpy(), cb[np_sq_dist(x, cb).argmin(-1)], rtol=1e-6)
  # Only the first training batch seeds.
  layer(x + 100.0, training=True)
  np.testing.assert_allclose(layer.codebook.numpy(), cb, rtol=1e-5)


def test_dead_code_restart(rng):
  k, dim, window = 8, 3, 3
  x_centers = np.eye(3, dtype=np.float32) * 5
  cb = np.concatenate([x_centers, 50 + rng.standard_normal((5, dim))]).astype(np.float32)
  kwargs = dict(codebook_size=k, decay=0.9, codebook=cb)
  on = make_layer(dim, dead_code_restart_steps=window, **kwargs)
  off = make_layer(dim, **kwargs)
  for step in range(window):
    x = clustered_data(rng, 60, x_centers)
    on(x, training=True)
    off(x, training=True)
    if step < window - 1:
      np.testing.assert_allclose(on.codebook.numpy(), off.codebook.numpy())
  restarted = on.codebook.numpy()
  # Codes 3..7 were never chosen for `window` steps: re-seeded from the
  # batch, EMA state reset; codes 0..2 untouched by the restart.
  np.testing.assert_allclose(restarted[:3], off.codebook.numpy()[:3])
  for j in range(3, k):
    assert _is_row_of(restarted[j], x)
  np.testing.assert_allclose(on.ema_count.numpy()[3:], 1.0)
  np.testing.assert_allclose(on.ema_means_sum.numpy()[3:], restarted[3:])
  np.testing.assert_array_equal(on.steps_unused.numpy(), 0.0)
  # Off by default: the unused codes only follow the EMA formula.
  assert np.all(np.abs(off.codebook.numpy()[3:]) > 20)


def test_first_batch_init_and_restart_compile_whole_under_xla(rng):
  """The whole training call under XLA (as Trainer.jit_compile runs it): the codes are
  seeded from kept rows only, 16 distinct ones of 40, then restarted from kept rows."""
  dim, k = 4, 16
  x = rng.standard_normal((4, 10, dim)).astype(np.float32)
  mask = np.zeros((4, 10), bool)
  mask.flat[rng.permutation(40)[:20]] = True
  layer = make_layer(
    dim,
    codebook_size=k,
    decay=1.0,
    init_from_first_batch=True,
    dead_code_restart_steps=1,
    jit_compile=True,
  )
  step = tf.function(lambda x, m: layer(x, training=True, mask=m).quantized, jit_compile=True)
  step(x, mask)
  seeded = layer.codebook.numpy()
  assert all(_is_row_of(c, x[mask]) for c in seeded)
  assert len(np.unique(seeded, axis=0)) == k
  # One kept row left: every code but the one chosen is dead after 1 step and restarted
  # from that row.
  one = np.zeros((4, 10), bool)
  one[2, 3] = True
  step(x + 100.0, one)
  restarted = layer.codebook.numpy()
  assert sum(_is_row_of(c, x[one] + 100.0) for c in restarted) == k - 1
  assert np.all(np.isfinite(restarted))


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
  "kwargs, pattern",
  [
    (dict(codebook_size=1), "codebook_size=1"),
    (dict(codebook_size=8, mode="kmeans"), "mode='kmeans'.*hard_em"),
    (dict(codebook_size=8, num_samples=0), "num_samples=0"),
    (dict(codebook_size=8, num_blocks=0), "num_blocks=0"),
    (dict(codebook_size=8, decay=1.5), "decay=1.5"),
    (dict(codebook_size=8, temperature=0.0), "temperature=0.0"),
    (dict(codebook_size=8, embedding_dim=10, num_blocks=4), "num_blocks=4"),
  ],
)
def test_bad_constructor_arguments(kwargs, pattern):
  with pytest.raises(ValueError, match=pattern):
    vqlib.VectorQuantizer(**kwargs)


def test_bad_inputs():
  layer = vqlib.VectorQuantizer(8, embedding_dim=4)
  with pytest.raises(ValueError, match="last dimension is 5.*D = 4"):
    layer(np.zeros((2, 5), np.float32))
  with pytest.raises(ValueError, match="rank 1"):
    layer(np.zeros((4,), np.float32))
  with pytest.raises(ValueError, match="mask has shape"):
    layer(np.zeros((2, 3, 4), np.float32), mask=np.ones((2, 3, 1), bool))


def test_config_round_trip():
  layer = vqlib.VectorQuantizer(
    32, mode="soft_em", num_samples=4, num_blocks=2, embedding_dim=8, decay=0.99
  )
  clone = vqlib.VectorQuantizer.from_config(layer.get_config())
  assert clone.get_config() == layer.get_config()
  assert clone.codebook.shape == (2, 32, 4)
  preset = vqlib.SoftEm(16, num_samples=3, embedding_dim=8)
  clone = vqlib.SoftEm.from_config(preset.get_config())
  assert (clone.mode, clone.num_samples, clone.codebook_size) == ("soft_em", 3, 16)


@pytest.mark.parametrize("mode,num_blocks", [("hard_em", 1), ("soft_em", 1), ("soft_em", 2)])
def test_encode_is_the_brute_force_argmin_per_block_without_update(mode, num_blocks):
  keras.utils.set_random_seed(11)
  layer = vqlib.VectorQuantizer(
    16, mode=mode, num_samples=3, num_blocks=num_blocks, embedding_dim=8
  )
  x = np.random.default_rng(11).normal(size=(2, 3, 5, 8)).astype(np.float32)
  before = layer.codebook.numpy().copy()
  codes = layer.encode(x).numpy()
  codebook = before.reshape(num_blocks, 16, 8 // num_blocks)
  blocks = x.reshape(-1, num_blocks, 8 // num_blocks)
  expected = np.stack(
    [((blocks[:, b, None] - codebook[b][None]) ** 2).sum(-1).argmin(1) for b in range(num_blocks)],
    axis=1,
  )
  assert codes.shape == (2, 3, 5) and codes.dtype == np.int32
  # The product code sum_b z_b 16^b.
  np.testing.assert_array_equal(codes.reshape(-1), (expected * 16 ** np.arange(num_blocks)).sum(1))
  np.testing.assert_array_equal(layer.codebook.numpy(), before)
  # embed maps each code back to its codebook rows, block by block.
  rows = np.concatenate([codebook[b][expected[:, b]] for b in range(num_blocks)], axis=-1)
  np.testing.assert_allclose(layer.embed(codes).numpy().reshape(-1, 8), rows, rtol=1e-6)


def test_soft_em_codes_are_the_most_frequent_draw():
  draws = np.array([[3, 1, 3, 2], [5, 4, 4, 5], [7, 0, 2, 1]], np.int32)
  got = vqlib._most_frequent(tf.constant(draws)).numpy()  # pylint: disable=protected-access
  expected = [np.argmax(np.bincount(row, minlength=8)) for row in draws]  # ties: lowest
  np.testing.assert_array_equal(got, expected)
