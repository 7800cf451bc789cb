"""Every registered bottleneck inside the latent models, chosen by Gin alone:
a few training steps, decoding, and a SavedModel export whose reloaded
signatures answer as the model does; a user module's bottleneck through --import."""

import os
import subprocess
import sys
import textwrap

import gin
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the exported vocabulary's tf.text ops)
from test_trainer import TINY

from t2t_vqem import decode
from t2t_vqem import export as export_lib
from t2t_vqem import registry
from t2t_vqem.train import trainer as trainer_lib

# name, arguments: every registered bottleneck, and product quantization.
BOTTLENECKS = [
  ("hard_em", {"codebook_size": 16, "init_from_first_batch": True}),
  ("soft_em", {"codebook_size": 16, "num_samples": 3, "init_from_first_batch": True}),
  ("vq", {"codebook_size": 16}),
  ("gumbel_softmax", {"codebook_size": 16, "temperature_warmup_steps": 20}),
  ("semhash", {"num_bits": 4, "startup_steps": 5}),
  ("hard_em", {"codebook_size": 4, "num_blocks": 2}),
]
IDS = [f"{name}-blocks{args.get('num_blocks', 1)}" for name, args in BOTTLENECKS]
SOURCES = ["The dog sleeps.", "A man reads a book."]

LATENT = """
Trainer.model = 'latent_transformer'
latent_transformer.hidden_size = 16
latent_transformer.num_layers = 1
latent_transformer.num_heads = 2
latent_transformer.filter_size = 32
latent_transformer.dropout = 0.0
latent_transformer.compress_steps = 1
latent_transformer.residual_convs = 1
latent_transformer.mask_startup_steps = 0
latent_transformer.latent_loss_start_step = 0
latent_transformer.latent_layers = 1
"""

IMAGE = """
Trainer.model = 'image_vqvae'
Trainer.problem = 'image_shapes'
Trainer.batch_size = 4
Trainer.eval_every = 0
Trainer.log_every = 1
Trainer.eval_pictures = 0
image_shapes.num_train = 40
image_shapes.num_eval = 8
image_vqvae.hidden_size = 8
image_vqvae.latents_per_position = 1
image_vqvae.latent_dim = 8
image_vqvae.prior_hidden_size = 8
image_vqvae.prior_layers = 1
image_vqvae.prior_heads = 2
image_vqvae.prior_filter_size = 16
image_vqvae.prior_block_length = 16
image_vqvae.prior_dropout = 0.0
"""


def teardown_function():
  gin.clear_config()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """One data and vocabulary cache for the module's runs."""
  return str(tmp_path_factory.mktemp("data"))


def _train(tmp_path, data_dir, config, name, args, steps=3):
  gin.clear_config()
  model = "latent_transformer" if "latent_transformer" in config else "image_vqvae"
  gin.parse_config(
    config + f"\n{model}.bottleneck = {name!r}\n{model}.bottleneck_args = {args!r}\n"
    f"Trainer.train_steps = {steps}\n"
  )
  trainer = trainer_lib.Trainer(str(tmp_path / "run"), data_dir=data_dir)
  before = [np.array(v) for v in trainer.model.trainable_weights]
  trainer.train()
  after = [np.array(v) for v in trainer.model.trainable_weights]
  assert trainer.step == steps
  assert registry.bottleneck(name).registered_name == name
  assert isinstance(trainer.model.bottleneck, registry.bottleneck(name))
  assert any(np.any(a != b) for a, b in zip(after, before))
  assert all(np.all(np.isfinite(w)) for w in after)
  return trainer


@pytest.mark.parametrize("name,args", BOTTLENECKS, ids=IDS)
def test_latent_transformer_trains_decodes_and_exports_with_any_bottleneck(
  tmp_path, data_dir, name, args
):
  trainer = _train(tmp_path, data_dir, TINY + LATENT, name, args)
  model, vocab = trainer.model, trainer.vocab
  assert model.num_codes == model.bottleneck.num_codes
  translations = decode.translate(model, vocab, SOURCES, batch_size=len(SOURCES))
  assert len(translations) == len(SOURCES)
  export_dir = str(tmp_path / "export")
  server = export_lib.export_model(model, trainer.problem, export_dir)
  served = tf.saved_model.load(export_dir)
  got = served.signatures["serving_default"](sources=tf.constant(SOURCES))["translations"]
  assert [t.decode() for t in got.numpy()] == translations
  # encode: the bottleneck's codes of the compressed targets, as the model computes them.
  codes = served.signatures["encode"](
    sources=tf.constant(SOURCES), targets=tf.constant(translations)
  )["codes"].numpy()
  want = server.encode(tf.constant(SOURCES), tf.constant(translations))["codes"].numpy()
  np.testing.assert_array_equal(codes, want)
  assert ((codes >= -1) & (codes < model.num_codes)).all()
  # translate_with_codes decodes through bottleneck.embed, as model.translate_codes does.
  given = np.where(codes < 0, 0, codes)[:, :1]
  out = served.signatures["translate_with_codes"](
    sources=tf.constant(SOURCES), codes=tf.constant(given, tf.int32)
  )
  rows = decode.encode_texts(vocab, SOURCES)
  inputs = tf.constant([r + [0] * (max(map(len, rows)) - len(r)) for r in rows], tf.int32)
  memory, memory_mask = model.encode_source(inputs)
  ids = model.translate_codes(
    tf.constant(given), tf.ones([len(SOURCES)], tf.int32), memory, memory_mask
  )
  want = [t.decode() for t in vocab.detokenize(ids).numpy()]
  assert [t.decode() for t in out["translations"].numpy()] == want


@pytest.mark.parametrize("name,args", BOTTLENECKS[:-1], ids=IDS[:-1])
def test_image_vqvae_trains_decodes_and_exports_with_any_bottleneck(tmp_path, data_dir, name, args):
  trainer = _train(tmp_path, data_dir, IMAGE, name, args, steps=2)
  model = trainer.model
  images = next(iter(trainer.problem.batches("test", 4)))["targets"]
  codes = model.encode(images)
  assert codes.shape == (4,) + model.field_shape
  np.testing.assert_array_equal(
    codes.numpy(), model.bottleneck.encode(model.encode_continuous(images)).numpy()
  )
  pictures = model.decode(codes)
  export_dir = str(tmp_path / "export")
  export_lib.export_model(model, trainer.problem, export_dir)
  served = tf.saved_model.load(export_dir)
  np.testing.assert_array_equal(
    served.signatures["encode"](images=images)["codes"].numpy(), codes.numpy()
  )
  np.testing.assert_array_equal(
    served.signatures["decode"](codes=codes)["images"].numpy(), pictures.numpy()
  )


TOY = '''
import tensorflow as tf
from t2t_vqem import registry
from t2t_vqem.bottlenecks import base


@registry.register_bottleneck("toy_sign")
class ToySign(base.Bottleneck):
  """A user's bottleneck: the sign of the first coordinate (2 codes)."""

  def __init__(self, scale=1.0, embedding_dim=None, **kwargs):
    super().__init__(embedding_dim=embedding_dim, **kwargs)
    self.scale = scale
    self._build_if_dim_known()

  @property
  def num_codes(self):
    return 2

  def _build_weights(self, dim):
    self.table = self.add_weight(name="table", shape=(2, dim), initializer="glorot_uniform")

  def encode(self, x):
    return tf.cast(tf.convert_to_tensor(x)[..., 0] > 0, tf.int32)

  def embed(self, codes):
    return self.scale * tf.gather(self.table, codes)

  def call(self, x, training=None, mask=None):
    codes = self.encode(x)
    q = self.embed(codes)
    return base.BottleneckOutput(
        quantized=tf.cast(x, q.dtype) + tf.stop_gradient(q - tf.cast(x, q.dtype)),
        codes=codes, soft_targets=tf.one_hot(codes, 2), loss=tf.constant(0.0),
        perplexity=tf.constant(1.0), usage=tf.constant(1.0), draws=codes)
'''


def test_a_user_module_registers_a_bottleneck_found_by_import_and_trained(tmp_path):
  (tmp_path / "toy_bottleneck.py").write_text(TOY)
  config = tmp_path / "toy.gin"
  config.write_text(
    TINY
    + LATENT
    + textwrap.dedent("""
      latent_transformer.bottleneck = 'toy_sign'
      toy_sign.scale = 0.5
      Trainer.train_steps = 2
      """)
  )
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  helped = subprocess.run(
    [
      sys.executable,
      "-m",
      "t2t_vqem.cli.trainer",
      "--registry_help",
      f"--import={tmp_path / 'toy_bottleneck.py'}",
    ],
    capture_output=True,
    text=True,
    timeout=300,
    env=env,
  )
  assert helped.returncode == 0, helped.stderr[-2000:]
  assert "toy_sign" in helped.stdout and "scale=1.0" in helped.stdout
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "t2t_vqem.cli.trainer",
      f"--gin_file={config}",
      f"--import={tmp_path / 'toy_bottleneck.py'}",
      f"--output_dir={tmp_path / 'run'}",
      f"--data_dir={tmp_path / 'data'}",
    ],
    capture_output=True,
    text=True,
    timeout=600,
    env=env,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  operative = (tmp_path / "run" / "operative_config.gin").read_text()
  assert "toy_sign.scale = 0.5" in operative
  assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
