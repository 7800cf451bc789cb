"""The §5.1.1 baselines (Gumbel-softmax, improved semantic hashing) against numpy
re-derivations of T2T's formulas."""

import numpy as np
import pytest
import tensorflow as tf

from t2t_vqem.bottlenecks import gumbel
from t2t_vqem.bottlenecks import semhash


def np_softmax(z):
  z = z - z.max(-1, keepdims=True)
  p = np.exp(z)
  return p / p.sum(-1, keepdims=True)


def np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_perplexity_usage(counts):
  p = counts / counts.sum()
  nz = p[p > 0]
  return np.exp(-(nz * np.log(nz)).sum()), (counts > 0).mean()


def np_satsig(c):
  return np.clip(1.2 / (1 + np.exp(-c)) - 0.1, 0, 1)


@pytest.fixture
def rng():
  return np.random.default_rng(0)


def dense(layer, x):
  return x @ layer.kernel.numpy() + layer.bias.numpy()


# -- Gumbel-softmax -------------------------------------------------------------


def test_gumbel_inference_and_t2t_loss_match_numpy(rng):
  k, dim = 10, 6
  layer = gumbel.GumbelSoftmax(k, embedding_dim=dim, kl_weight=0.1, variance_weight=2.0)
  x = rng.standard_normal((3, 7, dim)).astype(np.float32)
  mask = rng.random((3, 7)) < 0.7
  x_padded = x.copy()
  x_padded[~mask] = np.nan  # padding must not leak into the loss or metrics
  out = layer(x_padded, training=False, mask=mask)
  keep = mask.reshape(-1)
  logits = dense(layer.logits_layer, x.reshape(-1, dim).astype(np.float64))
  idx = logits.argmax(-1)
  np.testing.assert_array_equal(out.codes.numpy().reshape(-1)[keep], idx[keep])
  q = layer.codebook.numpy()[idx] + layer.codebook_bias.numpy()
  np.testing.assert_allclose(out.quantized.numpy().reshape(-1, dim)[keep], q[keep], rtol=1e-5)
  np.testing.assert_array_equal(out.soft_targets.numpy().reshape(-1, k)[keep], np.eye(k)[idx][keep])
  # T2T: 5 * d_dev + 0.002 * mean(-max log p), here with weights 2.0 and 0.1.
  log_p = np_log_softmax(logits)[keep]
  winning = log_p * np.eye(k)[idx[keep]]
  d_dev = -((winning - winning.mean(0)) ** 2).mean(0).mean()
  expected = 2.0 * d_dev + 0.1 * (-log_p.max(-1)).mean()
  np.testing.assert_allclose(out.loss.numpy(), expected, rtol=1e-4)
  ppl, usage = np_perplexity_usage(np.bincount(idx[keep], minlength=k).astype(np.float64))
  np.testing.assert_allclose(out.perplexity.numpy(), ppl, rtol=1e-5)
  np.testing.assert_allclose(out.usage.numpy(), usage)
  np.testing.assert_allclose(
    layer.embed(out.codes).numpy()[mask], out.quantized.numpy()[mask], rtol=1e-6
  )
  np.testing.assert_array_equal(layer.encode(x).numpy(), idx.reshape(3, 7))


def test_gumbel_schedules_are_t2ts():
  layer = gumbel.GumbelSoftmax(8, temperature_warmup_steps=1000, embedding_dim=4)
  for step in (0, 100, 500, 1000, 5000):
    progress = min(step / 1000, 1.0)
    np.testing.assert_allclose(
      layer.temperature(step).numpy(), 1.2 - (progress * 0.99 + 0.01), rtol=1e-6
    )
    np.testing.assert_allclose(
      layer.noise_scale(step).numpy(), 0.5 * 0.01 ** (max(200 - step, 0) / 200), rtol=1e-5
    )


def test_gumbel_training_is_a_soft_sample_of_the_softmax():
  tf.random.set_seed(6)
  k, dim, n = 4, 6, 20000  # D > K: y is recoverable from y W + b
  layer = gumbel.GumbelSoftmax(k, embedding_dim=dim, temperature_warmup_steps=5)
  layer.step.assign(10.0)  # past the warm-up: noise scale 0.5, temperature 0.2
  layer.logits_layer.kernel.assign(np.zeros((dim, k), np.float32))
  bias = np.array([0.0, 1.0, -1.0, 0.5], np.float32)
  layer.logits_layer.bias.assign(bias)
  x = tf.constant(np.ones((n, dim), np.float32))
  with tf.GradientTape() as tape:
    out = layer(x, training=True)
    downstream = tf.reduce_sum(
      out.quantized * np.random.default_rng(7).standard_normal((n, dim)).astype(np.float32)
    )
  assert layer.step.numpy() == 11.0  # a training call counts a step
  codes = out.codes.numpy()
  # argmax of log p + 0.5 g: Gumbel-max of softmax(2 log p), i.e. of p^2.
  p2 = np_softmax(2 * np_log_softmax(bias.astype(np.float64)))
  freq = np.bincount(codes, minlength=k) / n
  assert np.all(np.abs(freq - p2) <= 4 * np.sqrt(p2 * (1 - p2) / n)), (freq, p2)
  # The decoder input is y W + b with y a point of the simplex, not a one-hot.
  y = np.linalg.lstsq(
    layer.codebook.numpy().T, (out.quantized.numpy() - layer.codebook_bias.numpy()).T, rcond=None
  )[0].T
  np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-3)
  assert np.mean(y.max(-1) < 0.999) > 0.01
  g = tape.gradient(downstream, layer.logits_layer.bias.value)
  assert g is not None and np.any(g.numpy() != 0)


def test_gumbel_straight_through_option_feeds_the_hard_sample():
  layer = gumbel.GumbelSoftmax(6, embedding_dim=4, straight_through=True)
  x = tf.constant(np.random.default_rng(1).standard_normal((50, 4)).astype(np.float32))
  out = layer(x, training=True)
  np.testing.assert_allclose(
    out.quantized.numpy(), layer.embed(out.codes).numpy(), rtol=1e-5, atol=1e-6
  )


# -- improved semantic hashing --------------------------------------------------------


def np_semhash_embed(layer, v):
  h = dense(layer.embed_on, v) + dense(layer.embed_off, 1.0 - v)
  return dense(layer.embed_final, h)


def test_semhash_inference_matches_numpy(rng):
  bits, dim = 5, 8
  layer = semhash.SemanticHashing(bits, embedding_dim=dim, filter_size=12)
  x = rng.standard_normal((4, 6, dim)).astype(np.float32)
  out = layer(x, training=False)
  b = (np_satsig(dense(layer.bits_layer, x.reshape(-1, dim))) > 0.5).astype(np.float32)
  idx = (b * 2 ** np.arange(bits)).sum(-1).astype(np.int64)
  np.testing.assert_array_equal(out.codes.numpy().reshape(-1), idx)
  np.testing.assert_allclose(
    out.quantized.numpy().reshape(-1, dim), np_semhash_embed(layer, b), rtol=1e-5, atol=1e-5
  )
  np.testing.assert_array_equal(out.soft_targets.numpy().reshape(-1, 32), np.eye(32)[idx])
  assert out.loss.numpy() == 0.0 and layer.num_codes == 32
  np.testing.assert_array_equal(semhash.int_to_bits(out.codes, bits).numpy().reshape(-1, bits), b)
  np.testing.assert_allclose(
    layer.embed(out.codes).numpy(), out.quantized.numpy(), rtol=1e-5, atol=1e-6
  )
  np.testing.assert_array_equal(layer.encode(x).numpy(), out.codes.numpy())


def test_semhash_discrete_probability_is_t2ts():
  layer = semhash.SemanticHashing(4, discrete_mix=0.5, startup_steps=100, embedding_dim=3)
  for step in (0, 50, 200, 1000):
    np.testing.assert_allclose(
      layer.discrete_probability(step).numpy(), 0.5 * 0.01 ** (max(200 - step, 0) / 200), rtol=1e-5
    )


def test_semhash_training_mixes_per_example_with_straight_through(rng):
  tf.random.set_seed(8)
  bits, dim = 6, 8
  layer = semhash.SemanticHashing(
    bits, embedding_dim=dim, noise_std=0.0, discrete_mix=0.5, startup_steps=1
  )
  layer.step.assign(100.0)  # past the ramp: discrete with probability 0.5
  x = tf.constant(rng.standard_normal((400, 5, dim)).astype(np.float32))
  with tf.GradientTape() as tape:
    out = layer(x, training=True)
    downstream = tf.reduce_sum(out.quantized**2)
  y = np_satsig(dense(layer.bits_layer, x.numpy().reshape(-1, dim)))
  soft = np_semhash_embed(layer, y).reshape(400, 5, dim)
  hard = np_semhash_embed(layer, (y > 0.5).astype(np.float64)).reshape(400, 5, dim)
  got = out.quantized.numpy()
  is_hard = np.all(np.isclose(got, hard, atol=1e-4), axis=(1, 2))
  is_soft = np.all(np.isclose(got, soft, atol=1e-4), axis=(1, 2))
  assert np.all(is_hard | is_soft)  # each example is wholly one or the other
  assert abs(is_hard.mean() - 0.5) < 0.1
  g = tape.gradient(downstream, layer.bits_layer.kernel.value)
  assert g is not None and np.any(g.numpy() != 0)  # through the binarisation
  # With noise the bits of training differ from inference for some positions.
  noisy = semhash.SemanticHashing(bits, embedding_dim=dim, noise_std=1.0)
  for a, b in zip(noisy.weights, layer.weights):
    a.assign(b.numpy())
  assert np.any(noisy(x, training=True).codes.numpy() != layer.encode(x).numpy())


def test_baselines_bad_arguments_and_masked_metrics(rng):
  with pytest.raises(ValueError, match="codebook_size=1"):
    gumbel.GumbelSoftmax(1)
  with pytest.raises(ValueError, match="kl_weight=-1"):
    gumbel.GumbelSoftmax(4, kl_weight=-1)
  with pytest.raises(ValueError, match="num_bits=0"):
    semhash.SemanticHashing(0)
  with pytest.raises(ValueError, match="num_bits=30"):
    semhash.SemanticHashing(30)
  layer = semhash.SemanticHashing(4, embedding_dim=3)
  with pytest.raises(ValueError, match="last dimension is 5"):
    layer(np.zeros((2, 5), np.float32))
  x = rng.standard_normal((10, 3)).astype(np.float32)
  mask = np.arange(10) < 4
  out = layer(x, training=False, mask=mask)
  ref = layer(x[:4], training=False)
  np.testing.assert_allclose(out.perplexity.numpy(), ref.perplexity.numpy())
  np.testing.assert_allclose(out.usage.numpy(), ref.usage.numpy())
