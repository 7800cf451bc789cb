"""Multi-replica tests of the VQ bottleneck (MirroredStrategy): a run on R replicas
follows a single-device run on the concatenated global batch.

The tests run on NUM_REPLICAS logical CPU devices: 2 in the pytest process (the
split conftest.py makes at import), and 3 in `test_three_replicas_in_own_process`,
which reruns this file in a fresh interpreter with a clean environment, without
conftest.py, where this module itself splits the CPU into 3 before TensorFlow
initialises its devices (which can happen only once per process). With three
replicas the global batch is split three ways, and a replica with data can sit
between two without.
"""

import os
import subprocess
import sys

import tensorflow as tf

REPLICAS_ENV = "T2T_VQEM_TEST_REPLICAS"
NUM_REPLICAS = int(os.environ.get(REPLICAS_ENV, "2"))


def _split_cpu(count):
  """Splits the CPU into `count` logical devices unless TF is initialised already."""
  cpus = tf.config.list_physical_devices("CPU")
  if len(tf.config.get_logical_device_configuration(cpus[0]) or []) != count:
    try:
      tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * count
      )
    except RuntimeError:  # TF already initialised in this process
      pass
  return len(tf.config.list_logical_devices("CPU")) == count


ENOUGH_CPUS = _split_cpu(NUM_REPLICAS)

import keras  # noqa: E402  (after the device split)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from t2t_vqem.bottlenecks import vector_quantizer as vqlib  # noqa: E402

needs_replicas = pytest.mark.skipif(
  not ENOUGH_CPUS,
  reason=f"TF initialised before the CPU could be split into {NUM_REPLICAS} logical devices",
)


@pytest.mark.skipif(NUM_REPLICAS != 2, reason="the rerun itself")
def test_three_replicas_in_own_process():
  """This file's tests again on 3 replicas, in a fresh interpreter (clean environment:
  no inherited TF or Python settings, no conftest.py, so the split is this module's)."""
  env = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": os.environ.get("HOME", "/tmp"),
    "LANG": "C.UTF-8",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "CUDA_VISIBLE_DEVICES": "",
    REPLICAS_ENV: "3",
  }
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "pytest",
      "-q",
      "-p",
      "no:cacheprovider",
      "--noconftest",
      "-k",
      "not three_replicas and not xla",
      os.path.abspath(__file__),
    ],
    capture_output=True,
    text=True,
    check=False,
    cwd=root,
    env=env,
    timeout=600,
  )
  output = result.stdout[-5000:] + result.stderr[-5000:]
  assert result.returncode == 0, output
  summary = result.stdout.strip().splitlines()[-1]
  assert " passed" in summary and "skipped" not in summary, output  # really on 3 replicas


JIT_COMPILE = pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])

_STRATEGY = []


def _strategy():
  """One MirroredStrategy on the NUM_REPLICAS logical CPUs, shared by this module.

  It reduces through one device rather than with collective ops: every
  MirroredStrategy in a process starts from the same collective group and
  instance keys, and TF caches each instance's shape, so two strategies in one
  pytest process (here or in another test file) whose all-reduces differ in
  shape abort with "Shape mismatch in the collective instance". The layer only
  uses ReplicaContext.all_reduce, whose meaning does not depend on the
  cross-device implementation.
  """
  if not _STRATEGY:
    _STRATEGY.append(
      tf.distribute.MirroredStrategy(
        [f"CPU:{i}" for i in range(NUM_REPLICAS)],
        cross_device_ops=tf.distribute.ReductionToOneDevice(),
      )
    )
  return _STRATEGY[0]


def _components(variable):
  """The per-replica values of a (Keras-wrapped) mirrored variable."""
  return [np.array(v.numpy()) for v in variable.value.values]


def _identical(variable):
  """The value of a mirrored variable, after checking every replica holds the same."""
  comps = _components(variable)
  assert len(comps) == NUM_REPLICAS
  for comp in comps[1:]:
    np.testing.assert_array_equal(comp, comps[0])
  return comps[0]


def _per_replica(strategy, parts):
  return strategy.experimental_distribute_values_from_function(
    lambda ctx: tf.constant(parts[ctx.replica_id_in_sync_group])
  )


def _np_sq_dist(x, codebook):
  x = np.asarray(x, np.float64)
  codebook = np.asarray(codebook, np.float64)
  return ((x[:, None, :] - codebook[None, :, :]) ** 2).sum(-1)


@needs_replicas
@pytest.mark.parametrize("num_blocks", [1, 2])
@JIT_COMPILE
def test_hard_em_replicas_equal_global_batch(num_blocks, jit_compile):
  rng = np.random.default_rng(0)
  k, dim, steps = 16, 8, 4
  kwargs = dict(
    codebook_size=k,
    embedding_dim=dim,
    decay=0.8,
    epsilon=1e-5,
    num_blocks=num_blocks,
    jit_compile=jit_compile,
  )
  strategy = _strategy()
  with strategy.scope():
    dist_layer = vqlib.VectorQuantizer(**kwargs)
  single = vqlib.VectorQuantizer(**kwargs)
  for a, b in zip(single.weights, dist_layer.weights):
    a.assign(b.numpy())

  @tf.function
  def dist_step(x, mask):
    out = strategy.run(lambda v, m: dist_layer(v, training=True, mask=m), args=(x, mask))
    return out

  single_step = tf.function(lambda x, m: single(x, training=True, mask=m))
  for _ in range(steps):
    parts = [rng.standard_normal((3, 10, dim)).astype(np.float32) for _ in range(NUM_REPLICAS)]
    masks = [rng.random((3, 10)) < 0.7 for _ in range(NUM_REPLICAS)]
    out = dist_step(_per_replica(strategy, parts), _per_replica(strategy, masks))
    ref = single_step(np.concatenate(parts), np.concatenate(masks))
    # The E step of each replica is the global E step on its rows.
    idx = np.concatenate([t.numpy() for t in out.draws.values])
    np.testing.assert_array_equal(idx, ref.draws.numpy())
    # Metrics are over the global batch.
    for r in range(NUM_REPLICAS):
      np.testing.assert_allclose(
        out.perplexity.values[r].numpy(), ref.perplexity.numpy(), rtol=1e-5
      )
      np.testing.assert_allclose(out.usage.values[r].numpy(), ref.usage.numpy(), rtol=1e-6)
  for var_d, var_s in zip(dist_layer.weights, single.weights):
    comps = _components(var_d)
    assert len(comps) == NUM_REPLICAS
    np.testing.assert_array_equal(comps[0], comps[1])  # identical replicas
    np.testing.assert_allclose(comps[0], var_s.numpy(), rtol=1e-5, atol=1e-6)


@needs_replicas
@JIT_COMPILE
def test_soft_em_replicas_consistent_and_fractional_ema(jit_compile):
  rng = np.random.default_rng(1)
  k, dim, s, decay, eps = 8, 4, 3, 0.5, 1e-5
  strategy = _strategy()
  with strategy.scope():
    layer = vqlib.VectorQuantizer(
      k,
      mode="soft_em",
      num_samples=s,
      embedding_dim=dim,
      decay=decay,
      epsilon=eps,
      jit_compile=jit_compile,
    )
  count = _components(layer.ema_count)[0].astype(np.float64)
  msum = _components(layer.ema_means_sum)[0].astype(np.float64)
  parts = [rng.standard_normal((12, dim)).astype(np.float32) * 0.3 for _ in range(NUM_REPLICAS)]
  out = tf.function(lambda x: strategy.run(lambda v: layer(v, training=True), args=(x,)))(
    _per_replica(strategy, parts)
  )
  idx = np.concatenate([t.numpy() for t in out.draws.values])
  x = np.concatenate(parts)
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
  for var, expected in [
    (layer.ema_count, count),
    (layer.ema_means_sum, msum),
    (layer.codebook, codebook),
  ]:
    np.testing.assert_allclose(_identical(var), expected, rtol=1e-5, atol=1e-6)


def _rows_matched(codes, rows):
  """For each code (row of `codes`), the index of the row of `rows` it equals (to float32
  rounding), or -1."""
  d = _np_sq_dist(codes, rows)
  scale = 1e-8 * (1.0 + (np.asarray(rows, np.float64) ** 2).sum(-1))[None, :]
  return np.where((d <= scale).any(-1), d.argmin(-1), -1)


def _sync(single, dist_layer):
  """Gives the single-device layer the replicated layer's whole state."""
  for a, b in zip(single.weights, dist_layer.weights):
    a.assign(_identical(b))


@needs_replicas
@pytest.mark.parametrize("with_data", ["first", "middle", "last"])
def test_codebook_seeding_follows_the_single_device_run(with_data):
  """init_from_first_batch on R replicas, where only one replica has kept rows: its K
  rows must seed the codebook of every replica (broadcast from a replica with data),
  as they do on one device given the whole batch. With exactly K kept rows the
  seeds are a permutation of them and each is its own cluster, so after the first
  step's M step the codebook is still those rows: the same set of rows as one device's.
  """
  rng = np.random.default_rng(4)
  k, dim = 8, 3
  kwargs = dict(codebook_size=k, embedding_dim=dim, decay=0.9, init_from_first_batch=True)
  strategy = _strategy()
  with strategy.scope():
    dist_layer = vqlib.VectorQuantizer(**kwargs)
  single = vqlib.VectorQuantizer(**kwargs)
  _sync(single, dist_layer)
  owner = {"first": 0, "middle": NUM_REPLICAS // 2, "last": NUM_REPLICAS - 1}[with_data]
  parts = [np.full((k + 2, dim), 1e3, np.float32) for _ in range(NUM_REPLICAS)]  # padding
  masks = [np.zeros(k + 2, bool) for _ in range(NUM_REPLICAS)]
  kept = (rng.standard_normal((k, dim)) * 3).astype(np.float32)
  parts[owner][1 : k + 1] = kept  # rows 0 and k + 1 stay padding
  masks[owner][1 : k + 1] = True
  step = tf.function(
    lambda x, m: strategy.run(lambda v, mm: dist_layer(v, training=True, mask=mm), args=(x, m))
  )
  step(_per_replica(strategy, parts), _per_replica(strategy, masks))
  single(np.concatenate(parts), training=True, mask=np.concatenate(masks))
  for layer_codebook in (_identical(dist_layer.codebook), single.codebook.numpy()):
    matched = _rows_matched(layer_codebook, kept)
    assert sorted(matched) == list(range(k))  # each kept row seeds one code
  assert float(_identical(dist_layer.initialized)) == 1.0
  # The same codebook as one device's, up to the order of the codes.
  order = _rows_matched(single.codebook.numpy(), _identical(dist_layer.codebook))
  for var_d, var_s in zip(dist_layer.weights, single.weights):
    if len(var_s.shape) and var_s.shape[0] == k:  # per-code state (not the flag)
      np.testing.assert_allclose(_identical(var_d)[order], var_s.numpy(), rtol=1e-5, atol=1e-6)
  # A second batch does not seed again: both runs go on as one (up to that order).
  parts = [rng.standard_normal((6, dim)).astype(np.float32) * 3 for _ in range(NUM_REPLICAS)]
  masks = [rng.random(6) < 0.7 for _ in range(NUM_REPLICAS)]
  step(_per_replica(strategy, parts), _per_replica(strategy, masks))
  single(np.concatenate(parts), training=True, mask=np.concatenate(masks))
  np.testing.assert_allclose(
    _identical(dist_layer.codebook)[order], single.codebook.numpy(), rtol=1e-5, atol=1e-6
  )


@needs_replicas
def test_dead_code_restart_follows_the_single_device_run():
  """Each step from the same state on R replicas and on one device (the whole batch):
  the same codes are found dead (numpy), the live codes get the same M step, and every
  restarted code is a kept row of the global batch (never padding), distinct ones, with
  the EMA state of one pseudo-observation, identical on all replicas. Which kept row
  re-seeds which code is a random choice, so that is all the two runs share there."""
  rng = np.random.default_rng(2)
  k, dim, patience, decay = 8, 3, 2, 0.9
  kwargs = dict(
    codebook_size=k,
    embedding_dim=dim,
    decay=decay,
    init_from_first_batch=True,
    dead_code_restart_steps=patience,
  )
  strategy = _strategy()
  with strategy.scope():
    dist_layer = vqlib.VectorQuantizer(**kwargs)
  single = vqlib.VectorQuantizer(**kwargs)
  dist_step = tf.function(
    lambda x, m: strategy.run(lambda v, mm: dist_layer(v, training=True, mask=mm), args=(x, m))
  )
  single_step = tf.function(lambda x, m: single(x, training=True, mask=m))
  restarted_any = 0
  for t in range(5):
    # First batch: rows near +10 and -10; replica 0 (whose kept rows seed the codebook)
    # keeps exactly 4 of each, so 4 codes start near -10. Then only +10 is fed: those
    # go unused, and are restarted after `patience` steps.
    centres = np.where(np.arange(12) < 6, 10.0, -10.0 if t == 0 else 10.0)[:, None]
    parts = [
      (centres + rng.standard_normal((12, dim))).astype(np.float32) for _ in range(NUM_REPLICAS)
    ]
    # 9 kept rows per replica: at least K, so the K candidates are distinct rows.
    masks = [np.isin(np.arange(12), rng.permutation(12)[:9]) for _ in range(NUM_REPLICAS)]
    if t == 0:
      masks[0] = np.isin(np.arange(12), [1, 2, 3, 4, 7, 8, 9, 10])
    for part, mask in zip(parts, masks):
      part[~mask] = -1e3  # padding, which must never become a code
    x, keep = np.concatenate(parts), np.concatenate(masks)
    _sync(single, dist_layer)
    before_codebook = single.codebook.numpy()
    before_unused = single.steps_unused.numpy()
    dist_step(_per_replica(strategy, parts), _per_replica(strategy, masks))
    single_step(x, keep)
    if t == 0:  # the seeding step: see test_codebook_seeding_follows_the_single_device_run
      assert (_identical(dist_layer.codebook).mean(-1) < 0).sum() == 4
      continue
    # Dead codes, in numpy: unused this step (nearest code of no kept row) for `patience` steps.
    used = np.bincount(_np_sq_dist(x[keep], before_codebook).argmin(-1), minlength=k) > 0
    unused = np.where(used, 0.0, before_unused + 1.0)
    dead = unused >= patience
    restarted_any += dead.sum()
    kept_rows = x[keep]
    for layer, value in ((dist_layer, _identical), (single, lambda v: v.numpy())):
      np.testing.assert_array_equal(value(layer.steps_unused), np.where(dead, 0.0, unused))
      codebook = value(layer.codebook)
      matched = _rows_matched(codebook[dead], kept_rows)
      assert (matched >= 0).all() and len(set(matched)) == dead.sum()
      np.testing.assert_allclose(value(layer.ema_count)[dead], 1.0)
      np.testing.assert_allclose(value(layer.ema_means_sum)[dead], codebook[dead], rtol=1e-6)
    for name in ("codebook", "ema_count", "ema_means_sum"):
      np.testing.assert_allclose(
        _identical(getattr(dist_layer, name))[~dead],
        getattr(single, name).numpy()[~dead],
        rtol=1e-5,
        atol=1e-6,
      )
  assert restarted_any >= 4
  assert (_identical(dist_layer.codebook).mean(-1) > 0).all()  # none is left near -10


@needs_replicas
def test_vq_mode_follows_the_single_device_run():
  """vq mode: the codebook learned by gradient; each replica's loss is the mean over its
  rows divided by R, the optimizer sums the replicas' gradients, so R replicas take the
  single device's SGD steps on the whole batch (SGD is linear in the gradient: averaged
  or unsummed gradients would differ)."""
  rng = np.random.default_rng(3)
  strategy = _strategy()
  kwargs = dict(codebook_size=8, mode="vq", embedding_dim=4)
  with strategy.scope():
    dist_layer = vqlib.VectorQuantizer(**kwargs)
    dist_opt = keras.optimizers.SGD(0.1)
    dist_opt.build(dist_layer.trainable_weights)
  single = vqlib.VectorQuantizer(**kwargs)
  single_opt = keras.optimizers.SGD(0.1)
  single_opt.build(single.trainable_weights)
  _sync(single, dist_layer)
  start = single.codebook.numpy()

  @tf.function
  def dist_step(x):
    def fn(v):
      with tf.GradientTape() as tape:
        out = dist_layer(v, training=True)
        loss = out.loss / strategy.num_replicas_in_sync
      grads = tape.gradient(loss, dist_layer.trainable_weights)
      dist_opt.apply_gradients(zip(grads, dist_layer.trainable_weights))
      return out.loss, out.perplexity

    return strategy.run(fn, args=(x,))

  @tf.function
  def single_step(x):
    with tf.GradientTape() as tape:
      out = single(x, training=True)
    grads = tape.gradient(out.loss, single.trainable_weights)
    single_opt.apply_gradients(zip(grads, single.trainable_weights))
    return out.loss, out.perplexity

  for _ in range(3):
    parts = [rng.standard_normal((10, 4)).astype(np.float32) for _ in range(NUM_REPLICAS)]
    losses, perplexities = dist_step(_per_replica(strategy, parts))
    ref_loss, ref_perplexity = single_step(np.concatenate(parts))
    np.testing.assert_allclose(
      np.mean([v.numpy() for v in losses.values]), ref_loss.numpy(), rtol=1e-5
    )
    for perplexity in perplexities.values:  # over the global batch
      np.testing.assert_allclose(perplexity.numpy(), ref_perplexity.numpy(), rtol=1e-5)
  codebook = _identical(dist_layer.codebook)
  np.testing.assert_allclose(codebook, single.codebook.numpy(), rtol=1e-5, atol=1e-6)
  assert np.abs(codebook - start).max() > 1e-3  # the codebook did learn
