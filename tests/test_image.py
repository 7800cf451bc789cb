"""Image VQ-VAE (§5.2): problems, encoder/decoder shapes, local attention, bits/dim, training."""

import math

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from t2t_vqem import pictures
from t2t_vqem import registry
from t2t_vqem.layers import compression
from t2t_vqem.layers import transformer as layers
from t2t_vqem.models import image_vqvae
from t2t_vqem.problems import shapes
from t2t_vqem.train import trainer as trainer_lib

TINY = dict(
  hidden_size=16,
  latents_per_position=2,
  latent_dim=8,
  bottleneck_args={"codebook_size": 16, "init_from_first_batch": True},
  prior_hidden_size=16,
  prior_layers=2,
  prior_heads=2,
  prior_filter_size=32,
  prior_block_length=16,
  prior_dropout=0.0,
)


def _images(count, seed=0):
  return tf.constant(shapes.generate("train", seed, count))


# -- problems -------------------------------------------------------------------------


def test_embedded_shapes_are_deterministic_and_splits_disjoint(tmp_path):
  problem = registry.build_problem(
    "image_shapes", data_dir=str(tmp_path), num_train=300, num_eval=40
  )
  train = np.stack([f["targets"] for f in problem.examples("train").as_numpy_iterator()])
  assert train.shape == (300, 32, 32, 3) and train.dtype == np.uint8
  again = registry.build_problem("image_shapes", data_dir=str(tmp_path), num_train=300, num_eval=40)
  np.testing.assert_array_equal(
    train, np.stack([f["targets"] for f in again.examples("train").as_numpy_iterator()])
  )
  seen = {row.tobytes() for row in train}
  for split in ("dev", "test"):
    rows = [f["targets"] for f in problem.examples(split).as_numpy_iterator()]
    assert 0 < len(rows) <= 40
    assert not any(row.tobytes() in seen for row in rows)
  dev = {f["targets"].tobytes() for f in problem.examples("dev").as_numpy_iterator()}
  test = {f["targets"].tobytes() for f in problem.examples("test").as_numpy_iterator()}
  assert not dev & test
  # Varied pictures: many distinct colours and not a constant image.
  assert len(np.unique(train.reshape(-1, 3), axis=0)) > 1000
  assert train.std(axis=(1, 2, 3)).min() > 0


def test_drop_seen_removes_pictures_already_in_train():
  train = shapes.generate("train", 3, 5)
  mixed = np.concatenate([train[1:3], shapes.generate("dev", 3, 4)])
  kept = shapes.drop_seen(mixed, train)
  assert len(kept) == 4
  np.testing.assert_array_equal(kept, mixed[2:])


def test_image_batches_split_evenly_and_keep_the_eval_remainder(tmp_path):
  problem = registry.build_problem(
    "image_shapes", data_dir=str(tmp_path), num_train=50, num_eval=10
  )
  train = next(iter(problem.batches("train", 7, shuffle=True, repeat=True, num_replicas=2)))
  assert train["targets"].shape == (6, 32, 32, 3)  # rounded down to a multiple of 2
  sizes = [b["targets"].shape[0] for b in problem.batches("dev", 4)]
  assert sum(sizes) == len(list(problem.examples("dev"))) and sizes[-1] <= 4
  with pytest.raises(ValueError, match="batch_size=1 is smaller than the 2 replicas"):
    problem.batches("train", 1, num_replicas=2)


def test_cifar10_through_tfds_mock_data(tmp_path):
  problem = registry.build_problem("image_cifar10", data_dir=str(tmp_path), download=False)
  with tfds.testing.mock_data(num_examples=10):
    images = [f["targets"] for f in problem.examples("test").as_numpy_iterator()]
    raw = [ex["image"] for ex in tfds.load("cifar10", split="test").as_numpy_iterator()]
    assert len(images) == 10
    for got, want in zip(images, raw):
      np.testing.assert_array_equal(got, want)
    batch = next(iter(problem.batches("train", 4, repeat=True)))
    assert batch["targets"].shape == (4, 32, 32, 3) and batch["targets"].dtype == tf.uint8


# -- layers ---------------------------------------------------------------------------


def test_encoder_and_decoder_shapes_reach_an_8x8x10_field():
  encoder = compression.Compress2D(8, latent_dim=6, latents_per_position=10, compress_steps=2)
  decoder = compression.Decompress2D(8, channels=3, compress_steps=2)
  z = encoder(tf.zeros([2, 32, 32, 3]))
  assert z.shape == (2, 8, 8, 10, 6)
  assert decoder(z).shape == (2, 32, 32, 3, 256)
  # The paper's layer counts: 4 conv / 4 deconv layers of 5x5, 2 of them strided.
  convs = [getattr(encoder, f"conv_{i}") for i in range(4)]
  assert [c.strides for c in convs] == [(2, 2), (2, 2), (1, 1), (1, 1)]
  assert all(c.kernel_size == (5, 5) for c in convs)
  deconvs = [getattr(decoder, f"deconv_{i}") for i in range(4)]
  assert [c.strides for c in deconvs] == [(1, 1), (1, 1), (2, 2), (2, 2)]
  with pytest.raises(ValueError, match="compress_steps=5"):
    compression.Compress2D(8, 6, 10, compress_steps=5)


def test_ordinal_init_puts_a_bump_over_the_values_where_the_features_say():
  # ordinal_init (ours): for channel c, features (a, b, s) = (3c, 3c + 1, 3c + 2) give
  # logit_v = scale (t_v (h_a - h_b) - t_v^2 h_s), t_v = v / 127.5 - 1: with every other
  # feature 0 and zero bias, the argmax is the value nearest (h_a - h_b) / (2 h_s).
  decoder = compression.Decompress2D(8, channels=2, ordinal_init=5.0)
  decoder.build((None, 8, 8, 10, 6))
  kernel = decoder.to_logits.kernel.numpy().reshape(8, 2, 256)
  t = np.arange(256) / 127.5 - 1
  np.testing.assert_allclose(kernel[3:6, 1], 5.0 * np.stack([t, -t, -(t**2)]), atol=1e-5)
  for centre in (-0.9, -0.2, 0.0, 0.37, 0.95):
    h = np.zeros(8, np.float32)
    h[3], h[5] = 2 * max(centre, 0) * 1.5, 1.5  # channel 1: h_a - h_b = 2 h_s centre
    h[4] = 2 * max(-centre, 0) * 1.5
    logits = h @ kernel[:, 1]
    assert int(np.argmax(logits)) == int(np.argmin(np.abs(t - centre)))
  # Off (the paper's): the kernel is the random initialisation only.
  plain = compression.Decompress2D(8, channels=2)
  plain.build((None, 8, 8, 10, 6))
  assert np.abs(plain.to_logits.kernel.numpy()).max() < 1.0
  with pytest.raises(ValueError, match="hidden_size >= 3"):
    compression.Decompress2D(4, channels=3, ordinal_init=1.0)


def test_model_encode_decode_sample_shapes_and_dtypes():
  keras.utils.set_random_seed(0)
  model = image_vqvae.ImageVqvaeVq(**TINY)
  images = _images(3)
  codes = model.encode(images)
  assert codes.shape == (3, 8, 8, 2) and codes.dtype == tf.int32
  assert model.decode(codes).shape == (3, 32, 32, 3) and model.decode(codes).dtype == tf.uint8
  assert model.num_dims == 3072 and model.num_latents == 128
  with pytest.raises(ValueError, match="not divisible"):
    image_vqvae.ImageVqvaeVq(image_shape=(30, 30, 3), **TINY)


def test_encode_is_the_brute_force_nearest_code():
  keras.utils.set_random_seed(1)
  model = image_vqvae.ImageVqvaeVq(**TINY)
  images = _images(2)
  z_e = model.encode_continuous(images).numpy().reshape(-1, 8)
  codebook = model.bottleneck.codebook.numpy()
  distances = ((z_e[:, None, :] - codebook[None]) ** 2).sum(-1)
  np.testing.assert_array_equal(model.encode(images).numpy().reshape(-1), distances.argmin(1))


def test_local_causal_bias_is_the_local_window():
  length, block = 11, 3
  bias = layers.local_causal_bias(length, block).numpy()[0, 0]
  for i in range(length):
    for j in range(length):
      visible = j <= i and j // block >= i // block - 1
      assert (bias[i, j] == 0.0) == visible, (i, j)


@pytest.mark.parametrize("length", [12, 13, 5])
def test_local_attention_equals_full_attention_masked_to_the_window(length):
  keras.utils.set_random_seed(2)
  block = 4
  local = layers.MultiHeadAttention(16, 2, local_block_length=block)
  full = layers.MultiHeadAttention(16, 2)
  local.build()
  full.build()
  full.set_weights(local.get_weights())
  x = tf.random.normal([3, length, 16])
  expected = full(x, bias=layers.local_causal_bias(length, block))
  np.testing.assert_allclose(local(x).numpy(), expected.numpy(), atol=1e-5)


def test_prior_cached_steps_equal_the_full_local_pass():
  keras.utils.set_random_seed(3)
  model = image_vqvae.ImageVqvaeEm(**TINY)
  codes = tf.random.uniform([2, model.num_latents], 0, 16, tf.int32)
  full = model.prior_log_probs(codes).numpy()
  cache = model.prior.init_cache(2, model.num_latents)
  for i in range(0, model.num_latents):
    previous = codes[:, max(i - 1, 0)][:, None]
    y, cache = model.prior(model.prior_inputs(previous, start=i), cache=cache, step=i)
    step = tf.nn.log_softmax(model.prior_logits(y[:, 0])).numpy()
    np.testing.assert_allclose(step, full[:, i], atol=1e-4, err_msg=f"position {i}")


def test_samples_are_reproducible_from_the_seed():
  keras.utils.set_random_seed(4)
  model = image_vqvae.ImageVqvaeEm(**TINY)
  sample = tf.function(model.sample_codes)
  a, b, c = sample(2, [1, 2]), sample(2, [1, 2]), sample(2, [1, 3])
  assert a.shape == (2, 8, 8, 2)
  np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert not np.array_equal(a.numpy(), c.numpy())


# -- metrics --------------------------------------------------------------------------


def test_loss_terms_match_numpy_likelihoods():
  keras.utils.set_random_seed(5)
  model = image_vqvae.ImageVqvaeVq(**TINY)
  images = _images(2)
  losses, extra = model.loss_terms({"targets": images}, training=False)
  mean = lambda pair: float(pair[0] / pair[1])
  # -log P(x | z) per sub-pixel from the decoder's logits, in numpy.
  logits = model({"targets": images}).numpy().astype(np.float64)
  log_p = logits - logits.max(-1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
  labels = images.numpy().astype(np.int64)
  l_r = -np.take_along_axis(log_p, labels[..., None], -1).mean()
  assert mean(losses["reconstruction"]) == pytest.approx(l_r, rel=1e-4)
  # -log p(z) per latent: the prior's log-probabilities at the nearest codes.
  codes = model.encode(images).numpy().reshape(2, -1)
  log_prior = model.prior_log_probs(tf.constant(codes)).numpy()
  l_p = -np.take_along_axis(log_prior, codes[..., None], -1).mean()
  assert mean(extra["prior_nll"]) == pytest.approx(l_p, rel=1e-4)
  # The §5.2 bound by hand: (l_r n_x + l_p n_z) / n_x * log2(e), n_x = 32*32*3, n_z = 8*8*2.
  expected = (l_r * 3072 + l_p * 128) / 3072 / math.log(2)
  assert mean(extra["bits_per_dim"]) == pytest.approx(expected, rel=1e-4)
  assert mean(extra["bits_per_dim_reconstruction"]) + mean(
    extra["bits_per_dim_prior"]
  ) == pytest.approx(expected, rel=1e-4)


def test_picture_grid_layout():
  rows = np.arange(2 * 3 * 4 * 5 * 3).reshape(2, 3, 4, 5, 3).astype(np.uint8)
  grid = pictures.grid(rows, border=1)
  assert grid.shape == (2 * 5 + 1, 3 * 6 + 1, 3)
  np.testing.assert_array_equal(grid[1 + 5 : 1 + 5 + 4, 1 + 2 * 6 : 1 + 2 * 6 + 5], rows[1, 2])
  assert (grid[0] == 255).all() and (grid[:, 0] == 255).all()
  with pytest.raises(ValueError, match="rows, pictures"):
    pictures.grid(rows[0])


# -- training ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["image_vqvae_vq", "image_vqvae_em"])
def test_a_short_run_lowers_test_bits_per_dim_and_writes_pictures(tmp_path, model):
  gin.clear_config()
  sizes = "\n".join(f"{model}.{k} = {v!r}" for k, v in TINY.items())
  gin.parse_config(f"""
Trainer.model = '{model}'
Trainer.problem = 'image_shapes'
Trainer.batch_size = 16
Trainer.train_steps = 60
Trainer.eval_every = 0
Trainer.log_every = 20
Trainer.eval_pictures = 3
image_shapes.num_train = 400
image_shapes.num_eval = 40
soft_em.num_samples = 4
make_optimizer.learning_rate = 3e-3
make_optimizer.warmup_steps = 10
{sizes}
""")
  trainer = trainer_lib.Trainer(str(tmp_path / "run"), data_dir=str(tmp_path / "data"))
  assert len(list(trainer.problem.batches("test", 16))[-1]["targets"]) < 16  # a remainder
  before = trainer.evaluate("test")
  trainer.train()
  after = trainer.evaluate("test")
  gin.clear_config()
  assert before["bits_per_dim"] == pytest.approx(
    before["bits_per_dim_reconstruction"] + before["bits_per_dim_prior"], rel=1e-5
  )
  assert after["bits_per_dim"] < before["bits_per_dim"] - 0.3, (before, after)
  assert after["usage"] * 16 > 1
  picture = tf.io.decode_png(
    tf.io.read_file(str(tmp_path / "run" / "pictures" / "reconstructions-60.png"))
  ).numpy()
  assert picture.shape == (2 * 34 + 2, 3 * 34 + 2, 3)  # originals over reconstructions
  assert (tmp_path / "run" / "pictures" / "samples-60.png").exists()
