"""Multi-replica tests of the discretization bottleneck (MirroredStrategy).

The CPU is split into 2 logical devices at import time, which must happen
before TensorFlow initialises its devices. pytest imports every test module
before running any test, so this works as long as no module imported earlier
runs a TF op at import. If TF was already initialised (so the split is
impossible in this process), `test_in_subprocess` re-runs this file in a fresh
interpreter instead and the in-process tests are skipped.
"""

import os
import subprocess
import sys

import tensorflow as tf


def _split_cpu():
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
  except RuntimeError:  # TF already initialised in this process
    pass
  return len(tf.config.list_logical_devices("CPU")) >= 2


TWO_CPUS = _split_cpu()

import keras  # noqa: E402  (after the device split)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from t2t_vqem.bottlenecks import vector_quantizer as vqlib  # noqa: E402

needs_two_cpus = pytest.mark.skipif(
    not TWO_CPUS, reason="TF initialised before the CPU split; covered by "
    "test_in_subprocess")


def test_in_subprocess():
  if TWO_CPUS:
    pytest.skip("2 logical CPUs available in this process")
  result = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
       os.path.abspath(__file__)],
      capture_output=True, text=True, check=False,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]


_STRATEGY = []


def _strategy():
  """One MirroredStrategy on the 2 logical CPUs, shared by this module.

  It reduces through one device rather than with collective ops: every
  MirroredStrategy in a process starts from the same collective group and
  instance keys, and TF caches each instance's shape, so two strategies in one
  pytest process (here or in another test file) whose all-reduces differ in
  shape abort with "Shape mismatch in the collective instance". The layer only
  uses ReplicaContext.all_reduce, whose meaning does not depend on the
  cross-device implementation.
  """
  if not _STRATEGY:
    _STRATEGY.append(tf.distribute.MirroredStrategy(
        ["CPU:0", "CPU:1"],
        cross_device_ops=tf.distribute.ReductionToOneDevice()))
  return _STRATEGY[0]


def _components(variable):
  """The per-replica values of a (Keras-wrapped) mirrored variable."""
  return [np.array(v.numpy()) for v in variable.value.values]


def _per_replica(strategy, halves):
  return strategy.experimental_distribute_values_from_function(
      lambda ctx: tf.constant(halves[ctx.replica_id_in_sync_group]))


def _np_sq_dist(x, codebook):
  x = np.asarray(x, np.float64)
  codebook = np.asarray(codebook, np.float64)
  return ((x[:, None, :] - codebook[None, :, :]) ** 2).sum(-1)


@needs_two_cpus
@pytest.mark.parametrize("num_blocks", [1, 2])
@pytest.mark.parametrize("jit_compile", [False, True])  # graph ops, XLA
def test_hard_em_replicas_equal_global_batch(num_blocks, jit_compile):
  rng = np.random.default_rng(0)
  k, dim, steps = 16, 8, 4
  kwargs = dict(codebook_size=k, embedding_dim=dim, decay=0.8,
                epsilon=1e-5, num_blocks=num_blocks, jit_compile=jit_compile)
  strategy = _strategy()
  with strategy.scope():
    dist_layer = vqlib.VectorQuantizer(**kwargs)
  single = vqlib.VectorQuantizer(**kwargs)
  for a, b in zip(single.weights, dist_layer.weights):
    a.assign(b.numpy())

  @tf.function
  def dist_step(x, mask):
    out = strategy.run(lambda v, m: dist_layer(v, training=True, mask=m),
                       args=(x, mask))
    return out

  single_step = tf.function(
      lambda x, m: single(x, training=True, mask=m))
  for _ in range(steps):
    halves = [rng.standard_normal((3, 10, dim)).astype(np.float32)
              for _ in range(2)]
    masks = [rng.random((3, 10)) < 0.7 for _ in range(2)]
    out = dist_step(_per_replica(strategy, halves),
                    _per_replica(strategy, masks))
    ref = single_step(np.concatenate(halves), np.concatenate(masks))
    # The E step of each replica is the global E step on its rows.
    idx = np.concatenate([t.numpy() for t in out.draws.values])
    np.testing.assert_array_equal(idx, ref.draws.numpy())
    # Metrics are over the global batch.
    for r in range(2):
      np.testing.assert_allclose(out.perplexity.values[r].numpy(),
                                 ref.perplexity.numpy(), rtol=1e-5)
      np.testing.assert_allclose(out.usage.values[r].numpy(),
                                 ref.usage.numpy(), rtol=1e-6)
  for var_d, var_s in zip(dist_layer.weights, single.weights):
    comps = _components(var_d)
    assert len(comps) == 2
    np.testing.assert_array_equal(comps[0], comps[1])  # identical replicas
    np.testing.assert_allclose(comps[0], var_s.numpy(), rtol=1e-5, atol=1e-6)


@needs_two_cpus
@pytest.mark.parametrize("jit_compile", [False, True])  # graph ops, XLA
def test_soft_em_replicas_consistent_and_fractional_ema(jit_compile):
  rng = np.random.default_rng(1)
  k, dim, s, decay, eps = 8, 4, 3, 0.5, 1e-5
  strategy = _strategy()
  with strategy.scope():
    layer = vqlib.VectorQuantizer(k, mode="soft_em", num_samples=s,
                                 embedding_dim=dim, decay=decay,
                                 epsilon=eps, jit_compile=jit_compile)
  count = _components(layer.ema_count)[0].astype(np.float64)
  msum = _components(layer.ema_means_sum)[0].astype(np.float64)
  halves = [rng.standard_normal((12, dim)).astype(np.float32) * 0.3
            for _ in range(2)]
  out = tf.function(lambda x: strategy.run(
      lambda v: layer(v, training=True), args=(x,)))(
          _per_replica(strategy, halves))
  idx = np.concatenate([t.numpy() for t in out.draws.values])
  x = np.concatenate(halves)
  bc = np.zeros(k)
  bs = np.zeros((k, dim))
  for i in range(len(x)):
    for j in idx[i]:
      bc[j] += 1 / s
      bs[j] += x[i] / s
  count = decay * count + (1 - decay) * bc
  msum = decay * msum + (1 - decay) * bs
  n = count.sum()
  codebook = msum / ((count + eps) / (n + k * eps) * n)[:, None]
  for var, expected in [(layer.ema_count, count),
                        (layer.ema_means_sum, msum),
                        (layer.codebook, codebook)]:
    comps = _components(var)
    np.testing.assert_array_equal(comps[0], comps[1])
    np.testing.assert_allclose(comps[0], expected, rtol=1e-5, atol=1e-6)


@needs_two_cpus
def test_init_and_dead_code_restart_are_replica_consistent():
  rng = np.random.default_rng(2)
  k, dim = 8, 3
  strategy = _strategy()
  with strategy.scope():
    layer = vqlib.VectorQuantizer(k, embedding_dim=dim, decay=0.9,
                                 init_from_first_batch=True,
                                 dead_code_restart_steps=2)
  step = tf.function(lambda x: strategy.run(
      lambda v: layer(v, training=True), args=(x,)))
  # Replica 0 sees points near +10, replica 1 near -10.
  first = [10 + rng.standard_normal((20, dim)).astype(np.float32),
           -10 + rng.standard_normal((20, dim)).astype(np.float32)]
  step(_per_replica(strategy, first))
  for var in layer.weights:
    comps = _components(var)
    np.testing.assert_array_equal(comps[0], comps[1])
  # Then only replica 0's region is fed: codes seeded there are used, the
  # others die and are re-seeded identically on both replicas.
  for _ in range(4):
    halves = [10 + rng.standard_normal((20, dim)).astype(np.float32)
              for _ in range(2)]
    step(_per_replica(strategy, halves))
    for var in layer.weights:
      comps = _components(var)
      np.testing.assert_array_equal(comps[0], comps[1])
  assert np.all(np.isfinite(_components(layer.codebook)[0]))


@needs_two_cpus
def test_vq_mode_under_strategy_with_optimizer():
  rng = np.random.default_rng(3)
  strategy = _strategy()
  with strategy.scope():
    layer = vqlib.VectorQuantizer(8, mode="vq", embedding_dim=4)
    opt = keras.optimizers.SGD(0.1)
    opt.build(layer.trainable_weights)

  @tf.function
  def step(x):
    def fn(v):
      with tf.GradientTape() as tape:
        out = layer(v, training=True)
        loss = out.loss / strategy.num_replicas_in_sync
      grads = tape.gradient(loss, layer.trainable_weights)
      opt.apply_gradients(zip(grads, layer.trainable_weights))
      return out.loss
    return strategy.run(fn, args=(x,))

  for _ in range(3):
    halves = [rng.standard_normal((10, 4)).astype(np.float32)
              for _ in range(2)]
    step(_per_replica(strategy, halves))
  comps = _components(layer.codebook)
  np.testing.assert_array_equal(comps[0], comps[1])
