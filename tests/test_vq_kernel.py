"""Tests of the fused VQ kernel (t2t_vqem/layers/vq_kernel.cc) against numpy.

The kernel must build on any machine the tests run on (it needs g++, which
CI has); the layer-level tests in test_discretization.py run every training
property through it and through TensorFlow ops. Shapes cover both ways the
kernel forms its statistics: many row shards (small K x d) and one shard
with a serial pass (large K x d).
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from t2t_vqem.layers import discretization as disc
from t2t_vqem.layers import vq_kernel

SHAPES = [(37, 16, 300), (1100, 512, 120)]  # (K, d, N): 16 shards, 1 shard


def run_kernel(x, codebook, keep, uniforms, scale=2.0):
  out = vq_kernel.quantize_rows(
      tf.matmul(x, codebook, transpose_b=True),
      0.5 * tf.reduce_sum(tf.square(codebook), -1), x, codebook, keep,
      uniforms, scale=scale)
  return [t.numpy() for t in out]


def np_rows(x, codebook, keep, idx):
  """q (Eq. 11), distortion, counts and sums from draws idx [N, S], float64."""
  x64, e64 = x.astype(np.float64), codebook.astype(np.float64)
  s = idx.shape[1]
  q = e64[idx].mean(1)
  dist = np.where(keep, ((x64 - q) ** 2).sum(1), 0.0)
  counts = np.zeros(len(codebook))
  sums = np.zeros(codebook.shape)
  for i in np.flatnonzero(keep):
    for j in idx[i]:
      counts[j] += 1.0 / s
      sums[j] += x64[i] / s
  return q, dist, counts, sums


def data(rng, k, d, n):
  x = rng.standard_normal((n, d)).astype(np.float32)
  codebook = (0.3 * rng.standard_normal((k, d))).astype(np.float32)
  keep = rng.random(n) > 0.2
  x[~keep] = np.nan  # padding may hold anything
  return x, codebook, keep


def check_rows(x, codebook, keep, idx, q, dist, counts, sums):
  q_ref, dist_ref, counts_ref, sums_ref = np_rows(x, codebook, keep, idx)
  np.testing.assert_allclose(q, q_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(dist, dist_ref, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(counts, counts_ref, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(sums, sums_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k,d,n", SHAPES)
def test_hard_rows_match_brute_force(k, d, n):
  rng = np.random.default_rng(0)
  x, codebook, keep = data(rng, k, d, n)
  idx, q, dist, counts, sums = run_kernel(
      x, codebook, keep, np.zeros((n, 0), np.float32))
  assert idx.shape == (n, 1) and idx.dtype == np.int32
  d2 = ((x[:, None, :].astype(np.float64) - codebook[None]) ** 2).sum(-1)
  np.testing.assert_array_equal(idx[keep, 0], d2[keep].argmin(1))  # Eq. 1
  assert np.all((idx >= 0) & (idx < k))  # also on NaN padding rows
  np.testing.assert_array_equal(q[keep], codebook[idx[keep, 0]])
  check_rows(x, codebook, keep, idx, q, dist, counts, sums)


def test_hard_ties_take_the_first_code():
  codebook = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], np.float32)
  x = np.array([[0.5, 0.5], [2.0, 0.0]], np.float32)
  idx = run_kernel(x, codebook, np.ones(2, bool), np.zeros((2, 0), np.float32))[0]
  np.testing.assert_array_equal(idx[:, 0], [0, 0])


@pytest.mark.parametrize("k,d,n", SHAPES)
@pytest.mark.parametrize("scale", [2.0, 0.4])
def test_soft_draws_are_the_inverse_cdf(k, d, n, scale):
  rng = np.random.default_rng(1)
  x, codebook, keep = data(rng, k, d, n)
  x[keep] *= 0.2  # a posterior spread over several codes
  s = 10
  u = rng.random((n, s)).astype(np.float32)
  idx, q, dist, counts, sums = run_kernel(x, codebook, keep, u, scale)
  assert idx.shape == (n, s)
  assert np.all((idx >= 0) & (idx < k))
  # §3.2: Multinomial(softmax(-scale ||x - e||^2 / 2)); inverse CDF in float64.
  d2 = ((x[:, None, :].astype(np.float64) - codebook[None]) ** 2).sum(-1)
  logits = -0.5 * scale * d2
  p = np.exp(logits - logits.max(1, keepdims=True))
  cdf = np.cumsum(p, 1)
  for i in np.flatnonzero(keep):
    target = u[i].astype(np.float64) * cdf[i, -1]
    expected = np.minimum(np.searchsorted(cdf[i], target, side="right"), k - 1)
    wrong = idx[i] != expected
    # Only float32 rounding of the probabilities may move a draw, and only
    # where the uniform falls next to a boundary of the CDF.
    gap = np.abs(cdf[i][None, :] - target[:, None]).min(1) / cdf[i, -1]
    assert np.all(gap[wrong] < 1e-5), (i, idx[i], expected)
  assert len(np.unique(idx[keep])) > 1
  check_rows(x, codebook, keep, idx, q, dist, counts, sums)


@pytest.mark.parametrize("k,d,n", SHAPES)
def test_statistics_repeat_bit_for_bit(k, d, n):
  rng = np.random.default_rng(2)
  x, codebook, keep = data(rng, k, d, n)
  u = rng.random((n, 4)).astype(np.float32)
  first = run_kernel(x, codebook, keep, u)
  for _ in range(10):
    again = run_kernel(x, codebook, keep, u)
    for a, b in zip(first, again):
      np.testing.assert_array_equal(a, b)


def test_layer_fused_and_tf_ops_agree_over_steps():
  """hard_em training, masked, 2 blocks: the same codes and losses, and the
  same codebooks (float tolerance) after several EMA steps."""
  rng = np.random.default_rng(3)
  kwargs = dict(codebook_size=24, embedding_dim=8, num_blocks=2, decay=0.7)
  fused = disc.VectorQuantizer(**kwargs)
  plain = disc.VectorQuantizer(fused_kernel=False, **kwargs)
  for a, b in zip(plain.weights, fused.weights):
    a.assign(b.numpy())
  step_f = tf.function(lambda x, m: fused(x, training=True, mask=m))
  step_p = tf.function(lambda x, m: plain(x, training=True, mask=m))
  for _ in range(4):
    x = rng.standard_normal((5, 9, 8)).astype(np.float32)
    mask = rng.random((5, 9)) > 0.3
    out_f, out_p = step_f(x, mask), step_p(x, mask)
    np.testing.assert_array_equal(out_f.indices.numpy(), out_p.indices.numpy())
    np.testing.assert_allclose(out_f.quantized.numpy(), out_p.quantized.numpy(),
                               rtol=1e-5, atol=1e-6)  # EMA sums: float order
    np.testing.assert_allclose(out_f.loss.numpy(), out_p.loss.numpy(), rtol=1e-5)
  assert fused.fused_kernel is True and plain.fused_kernel is False
  for a, b in zip(fused.weights, plain.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_inference_graphs_do_not_hold_the_kernel():
  """Exported (inference) graphs must load without the custom op library;
  training graphs use it, with jit_compile too (XLA then forms the GEMM)."""
  for jit_compile in (False, True):
    layer = disc.VectorQuantizer(8, embedding_dim=4, jit_compile=jit_compile)
    for training, expected in ((False, False), (True, True)):
      graph = tf.function(lambda x: layer(x, training=training).quantized)  # pylint: disable=cell-var-from-loop
      ops = {op.type for op in graph.get_concrete_function(
          tf.TensorSpec([3, 4])).graph.get_operations()}
      assert ("VqemQuantizeRows" in ops) == expected, (jit_compile, training)


def test_a_failed_build_falls_back_with_the_reason(tmp_path):
  """With no usable compiler the layer trains with TF ops and says why."""
  code = (
      "import numpy as np\n"
      "from t2t_vqem.layers import discretization as disc, vq_kernel\n"
      "layer = disc.VectorQuantizer(8, embedding_dim=4)\n"
      "layer(np.ones((3, 4), np.float32), training=True)\n"
      "assert layer.fused_kernel is False\n"
      "print('WHY', vq_kernel._state['why'])\n")
  env = dict(os.environ, CXX="/bin/false", T2T_VQEM_CACHE=str(tmp_path))
  result = subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "WHY RuntimeError: /bin/false failed" in result.stdout
