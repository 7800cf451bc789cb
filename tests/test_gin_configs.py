"""Every shipped Gin config parses against the registered problems and models; every
run of every paper table and figure config builds its model and takes a training step."""

import pathlib

import gin
import numpy as np
import pytest
import tensorflow as tf

from t2t_vqem import config
from t2t_vqem import registry

config.register_everything()
CONFIGS = sorted(p.name for p in pathlib.Path(config.PACKAGE_GIN_DIR).glob("*.gin"))


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_config_parses_and_names_registered_things(name):
  gin.clear_config()
  try:
    config.parse_gin([name], [], finalize=False)
    try:
      model, problem = (
        gin.query_parameter("Trainer.model"),
        gin.query_parameter("Trainer.problem"),
      )
    except ValueError:
      return  # a pipeline config names its stages' configs instead
    registry.model(model)
    registry.problem(problem)
  finally:
    gin.clear_config()


def test_missing_config_lists_the_shipped_ones():
  with pytest.raises(config.UsageError, match="transformer_quickstart.gin"):
    config.find_gin_file("nope.gin")


# -- every paper config builds the models it names -----------------------------

STUDIES = [n for n in CONFIGS if n.startswith("paper_")]
VOCAB = 48  # the translation runs' vocabulary here (the real one needs the data)


def _study_runs(name):
  """[(run name, the run's Gin items)] of a shipped study config: its teacher (if
  any) and each row, as the study composes them (row gin, row_gin, shared_gin)."""
  gin.clear_config()
  config.parse_gin([name], [], finalize=False)

  def bound(key, default=()):
    try:
      return list(gin.query_parameter(f"Study.{key}") or default)
    except ValueError:
      return list(default)

  shared, row_gin = bound("shared_gin"), bound("row_gin")
  runs = [("teacher", bound("teacher_gin") + shared)] if bound("teacher_gin") else []
  runs += [(row["name"], row["gin"] + row_gin + shared) for row in bound("rows")]
  gin.clear_config()
  return runs


def _features(problem_name, rng):
  """A tiny training batch of the problem's kind (random tokens, random pictures)."""
  problem = registry.problem(problem_name)
  if hasattr(problem, "image_shape"):
    shape = (2,) + tuple(problem.image_shape)
    return {"targets": tf.constant(rng.integers(0, 256, shape), tf.uint8)}, {
      "image_shape": tuple(problem.image_shape)
    }
  tokens = lambda: tf.constant(rng.integers(3, VOCAB, (2, 16)), tf.int32)  # noqa: E731
  return {"inputs": tokens(), "targets": tokens()}, {"vocab_size": VOCAB}


# Explicit arguments win over a run's Gin bindings: the models are built one layer
# deep, with narrow feed-forward layers. Everything a row varies (hidden size, heads,
# compression, bottleneck and its codebook, samples, blocks) stays as its config
# gives it, so their constraints (heads dividing the hidden size, ...) are checked.
SHALLOW = {
  "num_layers": 1,
  "latent_layers": 1,
  "filter_size": 32,
  "prior_layers": 1,
  "prior_filter_size": 32,
}


def _explicit(model_name, kwargs):
  """SHALLOW's arguments that the run's model takes, and kwargs."""
  names = {p.name for p in registry.constructor_parameters(registry.model(model_name))}
  return {k: v for k, v in SHALLOW.items() if k in names} | kwargs


@pytest.mark.parametrize("name", STUDIES)
def test_paper_config_builds_every_runs_model_and_takes_a_training_step(name):
  """Each run of each paper table / figure config (teacher and rows) builds its model
  from its own bindings and computes finite training losses on a tiny batch of its
  problem's kind, with the vocabulary shrunk to VOCAB (the real one needs the data)
  and the models one layer deep (SHALLOW)."""
  rng = np.random.default_rng(0)
  runs = _study_runs(name)
  assert runs
  try:
    for run, items in runs:
      with config.stage_config(items):
        model_name, problem_name = (
          gin.query_parameter("Trainer.model"),
          gin.query_parameter("Trainer.problem"),
        )
        features, kwargs = _features(problem_name, rng)
        model = registry.build_model(model_name, **_explicit(model_name, kwargs))
        losses, _ = model.loss_terms(features, training=True, step=tf.constant(0, tf.int64))
      assert losses, (name, run)
      for loss, (num, den) in losses.items():
        value = float(num) / max(float(den), 1e-9)
        assert np.isfinite(value), (name, run, loss, value)
      del model
  finally:
    tf.keras.backend.clear_session()
