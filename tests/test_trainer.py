"""Trainer: Gin wiring, checkpoint and exact resume, 2 replicas == 1 replica, bad output_dir."""

import json
import os
import re

import gin
import numpy as np
import pytest
import tensorflow as tf
import tiny

from t2t_vqem import registry
from t2t_vqem.train import trainer as trainer_lib

TINY = tiny.TRANSFORMER


@pytest.fixture
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.getbasetemp() / "data")


def make_trainer(output_dir, data_dir, *bindings):
  gin.clear_config()
  gin.parse_config(TINY + "\n".join(bindings))
  return trainer_lib.Trainer(str(output_dir), data_dir=data_dir)


def weights(trainer):
  return [np.array(v) for v in trainer.model.weights]


def train_losses(trainer, steps):
  """Runs `steps` steps, returns the loss after each."""
  return [float(trainer.train_step(next(trainer.train_iterator))["loss"]) for _ in range(steps)]


def teardown_function():
  gin.clear_config()


def test_logged_values_are_means_over_the_logging_window(tmp_path, data_dir):
  """train() logs (and returns) the mean of each value over log_every steps."""
  windowed = make_trainer(
    tmp_path / "a", data_dir, "Trainer.train_steps = 3", "Trainer.log_every = 3"
  )
  logged = windowed.train()
  stepped = make_trainer(tmp_path / "b", data_dir)
  losses = train_losses(stepped, 3)
  assert len(set(losses)) == 3
  np.testing.assert_allclose(logged["loss"], np.mean(losses), rtol=1e-5)


def test_gin_values_reach_the_model_and_the_operative_config(tmp_path, data_dir):
  trainer = make_trainer(tmp_path, data_dir, "Trainer.train_steps = 2")
  assert trainer.model.hidden_size == 16 and len(trainer.model.weights) > 0
  trainer.train()
  config = (tmp_path / "operative_config.gin").read_text()
  assert "transformer.hidden_size = 16" in config
  assert "Trainer.train_steps = 2" in config
  assert trainer.step == 2
  assert os.path.exists(tmp_path / "checkpoints" / "ckpt-2.index")


@pytest.mark.parametrize("replicas", [1, 2])
def test_resume_continues_exactly_where_it_stopped(tmp_path, data_dir, replicas):
  """On one replica and on two (each fed its own slices from the checkpointed iterator)."""
  common = ["Trainer.checkpoint_every = 3"]
  if replicas == 2:
    common += ["make_strategy.name = 'mirrored'", "make_strategy.devices = ['CPU:0', 'CPU:1']"]
  straight = make_trainer(tmp_path / "a", data_dir, "Trainer.train_steps = 6", *common)
  straight.train()

  first = make_trainer(tmp_path / "b", data_dir, "Trainer.train_steps = 3", *common)
  first.train()
  at_three = weights(first)
  resumed = make_trainer(tmp_path / "b", data_dir, "Trainer.train_steps = 6", *common)
  assert resumed.num_replicas == replicas
  assert resumed.restore() == 3
  for saved, restored in zip(at_three, weights(resumed)):
    np.testing.assert_array_equal(saved, restored)
  resumed.train()
  assert resumed.step == 6
  # Model, optimizer state and data position all resumed: same end point.
  for a, b in zip(weights(straight), weights(resumed)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_two_replicas_follow_one_replica_on_the_same_global_batch(tmp_path, data_dir, optimizer):
  common = [
    "Trainer.batch_multiple = 2",
    f"make_optimizer.name = '{optimizer}'",
    "make_optimizer.learning_rate = 0.05",
  ]
  one = make_trainer(tmp_path / "one", data_dir, "make_strategy.name = 'default'", *common)
  one_losses, one_weights = train_losses(one, 5), weights(one)
  two = make_trainer(
    tmp_path / "two",
    data_dir,
    "make_strategy.name = 'mirrored'",
    "make_strategy.devices = ['CPU:0', 'CPU:1']",
    *common,
  )
  assert two.num_replicas == 2
  two_losses, two_weights = train_losses(two, 5), weights(two)
  np.testing.assert_allclose(one_losses, two_losses, rtol=1e-4)
  assert one_losses[-1] < one_losses[0]
  # With SGD the step is linear in the gradient: this fails if the replicas'
  # gradients were averaged instead of summed.
  for a, b in zip(one_weights, two_weights):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_output_dir_of_another_model_is_refused(tmp_path, data_dir):
  make_trainer(tmp_path, data_dir, "Trainer.train_steps = 1").train()

  @registry.register_model("test_other_model")
  class Other:
    def __init__(self, vocab_size):
      pass

  with pytest.raises(
    trainer_lib.OutputDirError, match="holds a checkpoint of model 'transformer'"
  ) as info:
    make_trainer(tmp_path, data_dir, "Trainer.model = 'test_other_model'")
  # It names the Gin parameter that would fit the directory, as a binding Gin accepts.
  binding = re.search(r"or (\S+ = '\w+')", str(info.value)).group(1)
  assert binding == "Trainer.model = 'transformer'"
  gin.clear_config()
  gin.parse_config(binding)
  assert gin.query_parameter("Trainer.model") == "transformer"


def test_checkpoint_of_other_sizes_is_refused(tmp_path, data_dir):
  make_trainer(tmp_path, data_dir, "Trainer.train_steps = 1").train()
  bigger = make_trainer(
    tmp_path, data_dir, "Trainer.train_steps = 2", "transformer.hidden_size = 24"
  )
  with pytest.raises(trainer_lib.OutputDirError, match="does not match"):
    bigger.train()


def test_run_info_records_the_machine_the_run_started_on_and_keeps_it(tmp_path, data_dir):
  make_trainer(tmp_path, data_dir, "Trainer.train_steps = 1")
  path = tmp_path / trainer_lib.RUN_INFO
  started_on = json.loads(path.read_text())["started_on"]
  assert f"{os.cpu_count()} cores" in started_on
  assert started_on.endswith(f"TensorFlow {tf.__version__}")
  # A resumed run (here: moved to another machine) keeps the record of where it began.
  info = dict(json.loads(path.read_text()), started_on="elsewhere")
  path.write_text(json.dumps(info))
  make_trainer(tmp_path, data_dir, "Trainer.train_steps = 1")
  assert json.loads(path.read_text())["started_on"] == "elsewhere"


def test_load_run_builds_the_runs_model_and_gives_the_global_config_back(tmp_path, data_dir):
  make_trainer(tmp_path, data_dir, "Trainer.train_steps = 1").train()
  gin.clear_config()
  gin.parse_config(
    "transformer.hidden_size = 24\ntransformer.num_layers = 3\nTrainer.model = 'some_other_model'"
  )
  before = gin.config_str()
  problem, model, path = trainer_lib.load_run(str(tmp_path), data_dir=data_dir)
  assert gin.config_str() == before
  assert gin.query_parameter("transformer.hidden_size") == 24
  # The run's sizes (TINY), not the global ones; its weights, not fresh ones.
  assert (model.hidden_size, model.num_layers) == (16, 1)
  assert problem.name == "translate_grammar_ende" and problem.num_train == 300
  assert path.endswith("ckpt-1")
  gin.clear_config()
  trained = make_trainer(tmp_path, data_dir, "Trainer.train_steps = 1")
  trained.restore()
  for a, b in zip(weights(trained), [np.array(v) for v in model.weights]):
    np.testing.assert_array_equal(a, b)


def test_load_run_applies_extra_bindings_over_the_runs_config(tmp_path, data_dir):
  make_trainer(tmp_path, data_dir, "Trainer.train_steps = 1").train()
  gin.clear_config()
  problem, _, _ = trainer_lib.load_run(
    str(tmp_path), data_dir=data_dir, gin_params=["translate_grammar_ende.num_eval = 7"]
  )
  assert problem.num_eval == 7 and problem.num_train == 300
  assert gin.config_str().strip() == ""
