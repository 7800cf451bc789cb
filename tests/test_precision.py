"""Mixed precision and XLA: a tiny model trains as it does in float32 without XLA.

Tolerances: XLA computes the same float32 values in another order, so the
losses agree to float32 round-off accumulated over the steps (1e-4 relative).
bfloat16 keeps 8 bits of mantissa (a relative step of 2^-8 = 0.4% per value);
the loss, a mean over hundreds of tokens, lands within 2% of float32's after
the same steps on the same batches, while training moves it by far more than
that (checked).
"""

import gin
import numpy as np
import pytest
import tiny

from t2t_vqem.train import trainer as trainer_lib

TINY = (
  tiny.LATENT_EM
  + """
latent_transformer_em.bottleneck_args = {'codebook_size': 16, 'num_samples': 3}
make_optimizer.learning_rate = 0.01
"""
)
STEPS = 12


def teardown_function():
  gin.clear_config()


def losses(tmp_path, *bindings, one_batch=False):
  """The losses of STEPS training steps; one_batch: all on the first batch (one input
  shape, so XLA compiles once instead of once per batch shape)."""
  gin.clear_config()
  gin.parse_config(TINY + "\n".join(bindings))
  trainer = trainer_lib.Trainer(str(tmp_path), data_dir=str(tmp_path.parent / "data"))
  first = next(trainer.train_iterator)
  batches = (
    [first] * STEPS
    if one_batch
    else [first] + [next(trainer.train_iterator) for _ in range(STEPS - 1)]
  )
  found = [trainer.train_step(batch) for batch in batches]
  assert all(bool(values["finite"]) for values in found)
  return trainer, np.array([float(values["loss"]) for values in found])


@pytest.fixture(scope="module")
def float32(tmp_path_factory):
  return losses(tmp_path_factory.mktemp("float32"))[1]


def test_xla_gives_float32s_losses(tmp_path):
  """Hard EM, its bottleneck on its XLA path (bottleneck_args jit_compile, needed for XLA)."""
  vq = [
    "Trainer.model = 'latent_transformer_vq'",
    "Trainer.jit_compile = True",
    "latent_transformer_vq.hidden_size = 16",
    "latent_transformer_vq.num_layers = 1",
    "latent_transformer_vq.num_heads = 2",
    "latent_transformer_vq.filter_size = 32",
    "latent_transformer_vq.dropout = 0.0",
    "latent_transformer_vq.compress_steps = 1",
    "latent_transformer_vq.mask_startup_steps = 0",
    "latent_transformer_vq.latent_loss_start_step = 0",
    "latent_transformer_vq.bottleneck_args = {'codebook_size': 16, 'jit_compile': True}",
  ]
  _, compiled = losses(tmp_path / "xla", *vq, one_batch=True)
  _, graph = losses(tmp_path / "graph", *vq, "Trainer.jit_compile = False", one_batch=True)
  np.testing.assert_allclose(compiled, graph, rtol=1e-4)
  assert graph[0] - graph[-1] > 0.1 * graph[0]


def test_mixed_bfloat16_trains_to_float32s_loss_with_float32_weights_and_codebook(
  tmp_path, float32
):
  trainer, mixed = losses(tmp_path, "Trainer.precision = 'mixed_bfloat16'")
  assert float32[0] - float32[-1] > 0.1 * float32[0]  # training moved the loss by > 10%
  np.testing.assert_allclose(mixed[-3:], float32[-3:], rtol=0.02)
  assert trainer.model.dtype_policy.compute_dtype == "bfloat16"
  assert {v.dtype for v in trainer.model.variables if "seed" not in v.path} == {"float32"}
  # Built under the run's policy only: the next model is float32 again.
  gin.clear_config()
  gin.parse_config(TINY)
  assert (
    trainer_lib.Trainer(
      str(tmp_path / "next"), data_dir=str(tmp_path.parent / "data")
    ).model.dtype_policy.name
    == "float32"
  )


def test_mixed_float16_scales_the_loss(tmp_path, float32):
  trainer, mixed = losses(tmp_path, "Trainer.precision = 'mixed_float16'")
  assert trainer.steps.scaled and trainer.step == STEPS
  np.testing.assert_allclose(mixed[-3:], float32[-3:], rtol=0.02)


def test_unknown_precision_and_xla_on_two_replicas_are_refused(tmp_path):
  gin.parse_config(TINY + "Trainer.precision = 'float8'")
  with pytest.raises(ValueError, match="unknown precision 'float8'; accepted: float32"):
    trainer_lib.Trainer(str(tmp_path / "a"), data_dir=str(tmp_path / "data"))
  gin.clear_config()
  gin.parse_config(
    TINY
    + "Trainer.jit_compile = True\nmake_strategy.name = 'mirrored'\n"
    + "make_strategy.devices = ['CPU:0', 'CPU:1']"
  )
  with pytest.raises(ValueError, match="jit_compile=True takes one replica per worker"):
    trainer_lib.Trainer(str(tmp_path / "b"), data_dir=str(tmp_path / "data"))
