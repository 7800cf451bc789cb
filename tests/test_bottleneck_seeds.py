"""Every random draw of a bottleneck comes from a keras.random.SeedGenerator that the
trainer checkpoints (`trainer.random_states`): restoring a checkpoint of the layer
and its generators' states replays the draws bit for bit, on one device and on two
replicas (MirroredStrategy on the two logical CPUs of conftest.py); another
generator state draws otherwise."""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from t2t_vqem import registry
from t2t_vqem.bottlenecks import replicas
from t2t_vqem.train import trainer as trainer_lib

DIM = 4
# case: (the bottleneck's arguments, the attribute holding the generator of its draws).
CASES = {
  "gumbel_softmax": ({"codebook_size": 8, "temperature_warmup_steps": 5}, "noise_seed"),
  "semhash": ({"num_bits": 4, "startup_steps": 1}, "noise_seed"),
  "hard_em_restart": (
    {
      "codebook_size": 16,
      "decay": 0.9,
      "init_from_first_batch": True,
      "dead_code_restart_steps": 1,
    },
    "rows_seed",
  ),
}
REGISTERED = {
  "gumbel_softmax": "gumbel_softmax",
  "semhash": "semhash",
  "hard_em_restart": "hard_em",
}

_STRATEGY = []


def _strategy():
  """One MirroredStrategy on two CPUs for the module, reducing through one device
  (several strategies in one process: see test_bottleneck_replicas.py)."""
  if not _STRATEGY:
    _STRATEGY.append(
      tf.distribute.MirroredStrategy(
        ["CPU:0", "CPU:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
      )
    )
  return _STRATEGY[0]


def _values(variable):
  """A variable's value; of a mirrored one, its per-replica copies, checked identical."""
  value = variable.value
  if not hasattr(value, "values"):
    return np.array(value)
  copies = [np.array(v) for v in value.values]
  for copy in copies[1:]:
    np.testing.assert_array_equal(copy, copies[0])  # the replicas agree
  return copies[0]


def _make(case, distributed):
  """The case's layer and a traced training step: one device, or two replicas each
  fed its own half of the batch."""
  args, _ = CASES[case]
  if not distributed:
    layer = registry.build_bottleneck(REGISTERED[case], embedding_dim=DIM, **args)
    return layer, tf.function(lambda x: tf.nest.flatten(layer(x, training=True)))
  strategy = _strategy()
  with strategy.scope():
    layer = registry.build_bottleneck(REGISTERED[case], embedding_dim=DIM, **args)

  @tf.function
  def step(x):
    halves = strategy.experimental_distribute_values_from_function(
      lambda ctx: tf.split(x, 2)[ctx.replica_id_in_sync_group]
    )
    out = strategy.run(lambda v: tf.nest.flatten(layer(v, training=True)), args=(halves,))
    return [tf.stack(strategy.experimental_local_results(t)) for t in out]

  return layer, step


def _run(layer, step, batches):
  """Per batch: every output of the training call and then every weight."""
  return [[t.numpy() for t in step(x)] + [_values(v) for v in layer.weights] for x in batches]


@pytest.mark.parametrize("distributed", [False, True], ids=["one_device", "two_replicas"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_restored_checkpoint_replays_the_draws_bit_for_bit(tmp_path, case, distributed):
  keras.utils.set_random_seed(3)
  rng = np.random.default_rng(0)
  batches = [tf.constant(rng.standard_normal((4, 6, DIM)).astype(np.float32)) for _ in range(7)]
  layer, step = _make(case, distributed)
  generator = getattr(layer, CASES[case][1])
  states = trainer_lib.random_states(layer)
  assert any(v is generator.state for v in states)  # what the trainer checkpoints
  _run(layer, step, batches[:3])
  saved = _values(generator.state)
  checkpoint = tf.train.Checkpoint(layer=layer, random=states)
  path = checkpoint.write(str(tmp_path / "ckpt"))
  unbroken = _run(layer, step, batches[3:5])
  assert _values(generator.state)[1] > saved[1]  # the calls drew from it

  tf.random.set_seed(99)  # TensorFlow's stateful RNG plays no part
  checkpoint.read(path).assert_consumed()
  np.testing.assert_array_equal(_values(generator.state), saved)
  resumed = _run(layer, step, batches[3:5])
  for want, got in zip(unbroken, resumed):
    for a, b in zip(want, got):
      np.testing.assert_array_equal(a, b)

  # Another generator state (everything else restored alike): other draws.
  checkpoint.read(path).assert_consumed()
  generator.state.assign(saved + np.array([1, 0], saved.dtype))
  other = _run(layer, step, batches[3:5])
  assert any(
    not np.array_equal(a, b) for want, got in zip(unbroken, other) for a, b in zip(want, got)
  )


def test_next_seed_is_per_replica_or_shared_and_the_state_stays_identical():
  strategy = _strategy()
  with strategy.scope():
    generator = keras.random.SeedGenerator(5, name="probe_seed")

  @tf.function
  def seeds():
    return strategy.run(
      lambda: (replicas.next_seed(generator), replicas.next_seed(generator, per_replica=False))
    )

  own, shared = seeds()
  own = [t.numpy() for t in strategy.experimental_local_results(own)]
  shared = [t.numpy() for t in strategy.experimental_local_results(shared)]
  assert not np.array_equal(own[0], own[1])  # replicas draw independently
  np.testing.assert_array_equal(shared[0], shared[1])  # one draw for all
  np.testing.assert_array_equal(_values(generator.state), [5, 2])  # two steps, on every copy
  # On one device: the seed keras.random would take, so the same draw.
  alone = keras.random.SeedGenerator(5, name="alone_seed")
  twin = keras.random.SeedGenerator(5, name="twin_seed")
  np.testing.assert_array_equal(
    tf.random.stateless_uniform([3], replicas.next_seed(alone)).numpy(),
    keras.random.uniform([3], seed=twin).numpy(),
  )


LATENT = """
{model}.hidden_size = 16
{model}.num_layers = 1
{model}.num_heads = 2
{model}.filter_size = 32
{model}.dropout = 0.0
{model}.compress_steps = 1
{model}.mask_startup_steps = 0
{model}.latent_loss_start_step = 0
{model}.latent_layers = 1
{model}.bottleneck = {name!r}
{model}.bottleneck_args = {args!r}
"""


def teardown_function():
  gin.clear_config()


@pytest.mark.parametrize("model_name", ["latent_transformer_vq", "latent_transformer_em"])
@pytest.mark.parametrize("case", list(CASES))
def test_random_states_of_a_latent_transformer_hold_the_bottlenecks_generator(model_name, case):
  args, attribute = CASES[case]
  gin.clear_config()
  gin.parse_config(LATENT.format(model=model_name, name=REGISTERED[case], args=args))
  keras.utils.set_random_seed(4)
  model = registry.build_model(model_name, vocab_size=20)
  rng = np.random.default_rng(1)
  features = {
    "inputs": tf.constant(rng.integers(3, 20, (2, 6)), tf.int32),
    "targets": tf.constant(rng.integers(3, 20, (2, 8)), tf.int32),
  }
  model(features, training=False)
  generator = getattr(model.bottleneck, attribute)
  states = trainer_lib.random_states(model)
  assert [v for v in states if v is generator.state] and generator.state.path.endswith(
    "seed_generator_state"
  )
  before = generator.state.numpy()
  model(features, training=True)
  assert generator.state.numpy()[1] > before[1]  # a training step drew from it
