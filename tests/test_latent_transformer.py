"""Latent Transformer: compress/decompress shapes and masks, batched == batch-1 decode,
overfitting to exact reconstruction, hard and soft EM training on the embedded problem."""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from t2t_vqem import decode
from t2t_vqem.layers import compression
from t2t_vqem.models import latent_transformer
from t2t_vqem.train import trainer as trainer_lib

TINY = dict(
  hidden_size=32,
  num_layers=1,
  num_heads=2,
  filter_size=64,
  dropout=0.0,
  bottleneck_args={"codebook_size": 16, "init_from_first_batch": True},
  compress_steps=2,
  mask_startup_steps=0,
  latent_loss_start_step=0,
)


@pytest.mark.parametrize("length", [1, 5, 8, 13])
def test_compress_decompress_shapes_and_padding_invariance(length):
  steps, hidden = 3, 8
  keras.utils.set_random_seed(0)
  compress = compression.Compress1D(hidden, steps)
  decompress = compression.Decompress1D(hidden, steps)
  compress.build()
  decompress.build()
  x = tf.random.normal([1, length, hidden])
  alone = compression.pad_to_multiple(x, 8)
  padded_length = -(-length // 8) * 8
  assert alone.shape == (1, padded_length, hidden)
  mask = tf.sequence_mask([length], padded_length)
  z = compress(alone, padding_mask=mask)
  latent_mask = compression.downsample_mask(mask, steps)
  assert z.shape == (1, padded_length // 8, hidden)
  assert latent_mask.numpy().sum() == -(-length // 8)
  # The same sequence inside a batch padded to 24 more positions gives the same latents.
  batch = tf.concat(
    [tf.pad(alone, [[0, 0], [0, 24], [0, 0]]), tf.random.normal([1, padded_length + 24, hidden])], 0
  )
  batch_mask = tf.concat(
    [tf.pad(mask, [[0, 0], [0, 24]]), tf.ones([1, padded_length + 24], tf.bool)], 0
  )
  z_batch = compress(batch, padding_mask=batch_mask)
  np.testing.assert_allclose(z_batch[0, : z.shape[1]], z[0], atol=1e-5)
  assert not np.any(z_batch[0, z.shape[1] :].numpy())
  y = decompress(z, padding_mask=latent_mask)
  assert y.shape == (1, padded_length, hidden)
  up = compression.upsample_mask(latent_mask, steps).numpy()[0]
  assert not np.any(y.numpy()[0][~up])


def _pairs(n, length, vocab, seed=0):
  rng = np.random.RandomState(seed)
  rows = []
  for _ in range(n):
    src = rng.randint(3, vocab, size=rng.randint(3, length)).tolist() + [1]
    rows.append((src, src[::-1][1:] + [1]))  # reverse task, EOS last
  width = max(len(s) for s, _ in rows)
  inputs = np.array([s + [0] * (width - len(s)) for s, _ in rows], np.int32)
  targets = np.array([t + [0] * (width - len(t)) for _, t in rows], np.int32)
  return {"inputs": tf.constant(inputs), "targets": tf.constant(targets)}


def _overfit(model, features, steps):
  optimizer = keras.optimizers.Adam(3e-3)
  optimizer.build(model.trainable_variables)

  @tf.function
  def step(i):
    with tf.GradientTape() as tape:
      losses, _ = model.loss_terms(features, training=True, step=i)
      loss = tf.add_n([num / tf.maximum(den, 1.0) for num, den in losses.values()])
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  for i in range(steps):
    step(tf.constant(i))


@pytest.fixture(scope="module")
def overfit_model():
  keras.utils.set_random_seed(1)
  model = latent_transformer.LatentTransformerVq(
    vocab_size=12, **dict(TINY, bottleneck_args=dict(TINY["bottleneck_args"], decay=0.9))
  )
  features = _pairs(6, 9, 12)
  _overfit(model, features, 400)
  return model, features


def test_tiny_model_overfits_to_exact_reconstruction(overfit_model):
  model, features = overfit_model
  reconstructed = model.reconstruct(features["inputs"], features["targets"]).numpy()
  targets = features["targets"].numpy()
  np.testing.assert_array_equal(reconstructed[:, : targets.shape[1]], targets)
  assert not reconstructed[:, targets.shape[1] :].any()


@pytest.mark.parametrize("beam_size", [1, 3])
def test_batched_decode_equals_batch_one(overfit_model, beam_size):
  model, features = overfit_model
  inputs = features["inputs"].numpy()
  batched = model.decode(inputs, beam_size=beam_size).numpy()
  for row, source in enumerate(inputs):
    alone = model.decode(source[None, : int((source > 0).sum())], beam_size=beam_size).numpy()[0]
    width = max(len(alone), batched.shape[1])
    np.testing.assert_array_equal(
      np.pad(alone, (0, width - len(alone))), np.pad(batched[row], (0, width - batched.shape[1]))
    )
  # Every decoded row is a sequence of tokens ending with EOS then PAD.
  for row in batched:
    n = int((row > 0).sum())
    assert not row[n:].any()


def test_schedule_gold_rate_and_latent_loss_start():
  model = latent_transformer.LatentTransformerEm(
    vocab_size=12, **dict(TINY, mask_startup_steps=100, latent_loss_start_step=50)
  )
  # The reference code's schedule: 1 - lin(step) * exp(step), T2T's inverse_lin_decay
  # over 100 steps times inverse_exp_decay over 25, both rising from 0.01.
  for step in (0, 10, 50, 99, 100, 200):
    lin = min(step / 100, 1.0) * 0.99 + 0.01
    exp = 0.01 ** (max(25 - step, 0) / 25)
    np.testing.assert_allclose(float(model.gold_rate(step)), 1 - min(lin * exp, 1.0), atol=1e-6)
  assert float(model.gold_rate(100)) == 0.0
  features = _pairs(3, 6, 12)
  before, _ = model.loss_terms(features, training=False, step=49)
  after, _ = model.loss_terms(features, training=False, step=50)
  assert float(before["latent_prediction"][0]) == 0.0
  assert float(after["latent_prediction"][0]) > 0.0
  # The latent predictor's labels: one per latent plus END, each summing to 1.
  f = model.forward(features)
  labels, mask = f["latent_labels"].numpy(), f["predictor_mask"].numpy()
  np.testing.assert_allclose(labels[mask].sum(-1), 1.0, rtol=1e-5)
  lengths = (features["targets"].numpy() > 0).sum(1)
  np.testing.assert_array_equal(mask.sum(1), -(-lengths // 4) + 1)
  assert (labels[np.arange(3), mask.sum(1) - 1].argmax(-1) == model.end_id).all()


TRAIN = """
Trainer.problem = 'translate_grammar_ende'
Trainer.batch_tokens = 512
Trainer.eval_every = 0
Trainer.eval_bleu_examples = 0
Trainer.log_every = 50
Trainer.train_steps = 200
Trainer.checkpoint_every = 1000
translate_grammar_ende.num_train = 2000
translate_grammar_ende.num_eval = 50
translate_grammar_ende.vocab_size = 500
make_optimizer.learning_rate = 2e-3
make_optimizer.warmup_steps = 50
"""


@pytest.mark.parametrize("model", ["latent_transformer_vq", "latent_transformer_em"])
def test_hard_and_soft_em_train_on_the_embedded_problem(tmp_path_factory, model):
  gin.clear_config()
  sizes = "\n".join(
    f"{model}.{k} = {v!r}"
    for k, v in dict(
      TINY, bottleneck_args={"codebook_size": 64, "init_from_first_batch": True}
    ).items()
  )
  gin.parse_config(TRAIN + f"Trainer.model = '{model}'\n{sizes}\n")
  data_dir = str(tmp_path_factory.getbasetemp() / "data")
  trainer = trainer_lib.Trainer(str(tmp_path_factory.mktemp(model)), data_dir=data_dir)
  first = None
  for _ in range(200):
    values = trainer.train_step(next(trainer.train_iterator))
    first = first or float(values["reconstruction"])
  values = {k: float(v) for k, v in values.items()}
  gin.clear_config()
  assert all(np.isfinite(v) for v in values.values()), values
  assert values["reconstruction"] < first
  assert values["usage"] * 64 > 1  # more than one code in use
  assert values["perplexity"] > 1.0
  results = trainer.evaluate()
  assert np.isfinite(results["reconstruction"])


def _never_predicting_end(seed, **sizes):
  """An untrained Latent Transformer whose latent predictor never chooses END on its own
  (END's bias far below every code's), so every row runs to its latent-count limit."""
  keras.utils.set_random_seed(seed)
  model = latent_transformer.LatentTransformerEm(vocab_size=12, **dict(TINY, **sizes))
  bias = model.latent_logits.bias.numpy()
  bias[model.end_id] = -1e4
  model.latent_logits.bias.assign(bias)
  return model


@pytest.mark.parametrize("beam_size", [1, 3])
def test_latent_count_limit_binds_per_row(beam_size):
  extra, factor = 3, 4  # TINY: compress_steps = 2
  model = _never_predicting_end(3, max_decode_extra=extra)
  # Sources of 1 to 13 tokens (EOS included), PAD-padded to one width.
  lengths = np.array([1, 2, 5, 6, 9, 13])
  rng = np.random.RandomState(4)
  inputs = np.zeros([len(lengths), lengths.max()], np.int32)
  for row, n in enumerate(lengths):
    inputs[row, : n - 1] = rng.randint(3, 12, size=n - 1)
    inputs[row, n - 1] = 1  # EOS
  expected = np.ceil((lengths + extra) / factor).astype(int)  # [1 1 2 3 3 4]
  _, _, codes, count = model.source_latents(inputs, beam_size=beam_size)
  np.testing.assert_array_equal(count.numpy(), expected)
  assert codes.shape == (len(lengths), expected.max())
  codes = codes.numpy()
  for row, n in enumerate(expected):
    assert (codes[row, :n] < model.num_codes).all() and not codes[row, n:].any()
  # A given max_decode_length binds every row alike: ceil(10 / 4) = 3 latents.
  _, _, codes, count = model.source_latents(inputs, beam_size=beam_size, max_decode_length=10)
  np.testing.assert_array_equal(count.numpy(), [3] * len(lengths))
  # decode() gives each row at most its latents' 2^n_c tokens per latent.
  ids = model.decode(inputs, beam_size=beam_size).numpy()
  for row, n in enumerate(expected):
    assert not ids[row, n * factor :].any()


def test_batched_decode_equals_batch_one_when_the_length_limit_binds():
  # Every row runs to its own limit (test_latent_count_limit_binds_per_row), which
  # must come from the row's own source length, not the batch's width.
  model = _never_predicting_end(3)
  inputs = _pairs(4, 12, 12, seed=5)["inputs"].numpy()
  batched = model.decode(inputs).numpy()
  for row, source in enumerate(inputs):
    alone = model.decode(source[None, : int((source > 0).sum())]).numpy()[0]
    width = max(len(alone), batched.shape[1])
    np.testing.assert_array_equal(
      np.pad(alone, (0, width - len(alone))), np.pad(batched[row], (0, width - batched.shape[1]))
    )


# -- fidelity to the reference code (Tensor2Tensor's transformer_nat.py) -------------------


def _np_layer_norm(x, norm):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-6) * norm.gamma.numpy() + norm.beta.numpy()


def _np_conv(x, conv, stride=1):
  """Conv1D with 'same' padding in numpy: x [T, H] -> [T / stride, H]."""
  kernel, bias = conv.kernel.numpy(), conv.bias.numpy()  # [k, H, H], [H]
  k = kernel.shape[0]
  out_len = -(-x.shape[0] // stride)
  pad = max((out_len - 1) * stride + k - x.shape[0], 0)
  padded = np.pad(x, [[pad // 2, pad - pad // 2], [0, 0]])
  return np.stack(
    [sum(padded[i * stride + j] @ kernel[j] for j in range(k)) + bias for i in range(out_len)]
  )


def test_compressor_is_the_reference_codes_stack():
  """Compress1D = residual blocks (norm, 3 x (ReLU, kernel-3 conv), added) then n_c times
  (ReLU, kernel-2 stride-2 conv); checked against numpy with the layer's own weights."""
  steps, hidden, blocks = 2, 6, 2
  keras.utils.set_random_seed(1)
  compress = compression.Compress1D(hidden, steps, residual_layers=blocks)
  compress.build()
  x = np.random.RandomState(0).normal(size=(8, hidden)).astype(np.float32)
  got = compress(tf.constant(x[None]))[0].numpy()
  want = x
  for i in range(blocks):
    y = _np_layer_norm(want, getattr(compress.residual, f"norm_{i}"))
    for j in range(3):
      y = _np_conv(np.maximum(y, 0), getattr(compress.residual, f"conv_{i}_{j}"))
    want = want + y
  for i in range(steps):
    want = _np_conv(np.maximum(want, 0), getattr(compress, f"stride_{i}"), stride=2)
  assert want.shape == (2, hidden)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_gold_warm_up_is_teacher_forcing():
  """With the latents held fixed and gold rate 1, the decoder's logits at position i do
  not change when a gold target at a position >= i changes, and do change with the gold
  target before i (the warm-up feeds the shifted-right answer, never the answer)."""
  vocab, length = 20, 8
  model = latent_transformer.LatentTransformerEm(
    vocab_size=vocab, **dict(TINY, mask_startup_steps=100)
  )
  rng = np.random.RandomState(0)
  inputs = tf.constant(rng.randint(3, vocab, size=(1, 5)), tf.int32)
  memory, memory_mask = model.encode_source(inputs)
  z_q = tf.constant(rng.normal(size=(1, length // 4, 32)), tf.float32)
  latent_mask = tf.ones([1, length // 4], tf.bool)
  targets = rng.randint(3, vocab, size=(1, length))

  def logits(t):
    gold = model.embedding(tf.constant(t, tf.int32))
    return model.decode_latents(z_q, latent_mask, memory, memory_mask, gold, 1.0).numpy()[0]

  base = logits(targets)
  for i in range(length):
    changed = targets.copy()
    changed[0, i:] = (changed[0, i:] + 1 - 3) % (vocab - 3) + 3
    moved = np.abs(logits(changed) - base).max(-1)
    np.testing.assert_allclose(moved[: i + 1], 0.0, atol=1e-5)
    if i + 1 < length:
      assert moved[i + 1] > 1e-4, f"gold target {i} does not reach position {i + 1}"


def test_warm_up_with_a_bidirectional_decoder_is_refused():
  with pytest.raises(ValueError, match="decoder_causal=True"):
    latent_transformer.LatentTransformerEm(
      vocab_size=12, **dict(TINY, mask_startup_steps=10, decoder_causal=False)
    )
  with pytest.raises(ValueError, match="latent_predictor_inputs"):
    latent_transformer.LatentTransformerEm(vocab_size=12, **dict(TINY, latent_predictor_inputs="x"))


@pytest.mark.parametrize("inputs", ["bottleneck", "embedding"])
def test_latent_predictor_inputs_and_gradients(inputs):
  """ "bottleneck" (the reference code): the latent predictor's loss trains the source
  encoder and, through z_q, the target encoder; "embedding" (ours): neither."""
  model = latent_transformer.LatentTransformerVq(
    vocab_size=12, **dict(TINY, latent_predictor_inputs=inputs)
  )
  features = _pairs(3, 6, 12)
  names = ("source_encoder", "compress", "latent_predictor")
  variables = [getattr(model, name).trainable_variables for name in names]
  with tf.GradientTape() as tape:
    losses, _ = model.loss_terms(features, training=False, step=10)
    num, den = losses["latent_prediction"]
    loss = num / den
  grads = tape.gradient(loss, variables)
  grads = {
    name: [tf.zeros_like(v) if g is None else g for v, g in zip(vs, gs)]
    for name, vs, gs in zip(names, variables, grads)
  }
  norm = {name: float(tf.linalg.global_norm(g)) for name, g in grads.items()}
  assert norm["latent_predictor"] > 0
  if inputs == "bottleneck":
    assert norm["source_encoder"] > 0 and norm["compress"] > 0
    assert not hasattr(model, "latent_embedding")
  else:
    assert norm["source_encoder"] == 0 and norm["compress"] == 0


@pytest.mark.parametrize("beam_size", [1, 3])
def test_xla_compiled_decode_equals_plain_decode(overfit_model, beam_size):
  # The XLA-compiled decode (fixed-width buffers, inputs padded to a multiple of 8,
  # output trimmed outside) gives the plain decode's ids, batched and at batch 1.
  model, features = overfit_model
  inputs = features["inputs"].numpy()
  fn = decode.decode_function(model, beam_size, jit_compile=True)
  np.testing.assert_array_equal(fn(inputs).numpy(), model.decode(inputs, beam_size).numpy())
  source = inputs[:1, : int((inputs[0] > 0).sum())]
  np.testing.assert_array_equal(fn(source).numpy(), model.decode(source, beam_size).numpy())
