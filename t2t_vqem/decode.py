"""Inference: text in, text out, in length-sorted batches; batch-1 latency side by side."""

import time

import numpy as np
import tensorflow as tf

from t2t_vqem import constants
from t2t_vqem.models import transformer


def decode_function(model, beam_size=None, alpha=None, jit_compile=False, width_multiple=8):
  """model.decode compiled once for any [batch, length] int32 input.

  With jit_compile, the decode is compiled by XLA, once per input shape: the
  input is padded with PAD to a width that is a multiple of `width_multiple`
  (fewer shapes, fewer compilations; padding is masked, the output is the
  unpadded input's), the model decodes into buffers whose widths follow from
  the input's (`decode(..., trim=False)`), and the padding columns are trimmed
  outside the compiled part.
  """
  signature = [tf.TensorSpec([None, None], tf.int32)]
  if not jit_compile:
    return tf.function(
      lambda inputs: model.decode(inputs, beam_size=beam_size, alpha=alpha),
      input_signature=signature,
    )
  compiled = tf.function(
    lambda inputs: model.decode(inputs, beam_size=beam_size, alpha=alpha, trim=False),
    jit_compile=True,
  )

  def run(inputs):
    width = tf.shape(inputs)[1]
    padded = tf.pad(inputs, [[0, 0], [0, -width % width_multiple]])
    return transformer.trim_padding(compiled(padded))

  return tf.function(run, input_signature=signature)


def encode_texts(vocab, sources):
  """Python strings -> list of id lists, each ending with EOS."""
  ids = vocab.tokenize(tf.constant(list(sources))).to_list()
  return [row + [constants.EOS_ID] for row in ids]


def _padded(rows):
  width = max(len(r) for r in rows)
  batch = np.zeros([len(rows), width], np.int32)
  for j, row in enumerate(rows):
    batch[j, : len(row)] = row
  return tf.constant(batch)


def _in_length_order(function, vocab, encoded, batch_size, progress=None):
  """Applies function(*padded batches) -> ids to rows sorted by length; texts in input order."""
  order = np.argsort([len(rows[0]) for rows in encoded], kind="stable")
  texts = [None] * len(encoded)
  for start in range(0, len(order), batch_size):
    chosen = order[start : start + batch_size]
    columns = zip(*[encoded[i] for i in chosen])
    ids = function(*[_padded(list(column)) for column in columns])
    for j, text in zip(chosen, vocab.detokenize(ids).numpy()):
      texts[j] = text.decode("utf-8")
    if progress:
      progress(min(start + batch_size, len(order)), len(order))
  return texts


def translate(
  model, vocab, sources, beam_size=None, alpha=None, batch_size=32, decode_fn=None, progress=None
):
  """Translates Python strings; returns the detokenized hypotheses in order.

  Sources are decoded in batches sorted by length (little padding), then put
  back in the input order.
  """
  decode_fn = decode_fn or decode_function(model, beam_size, alpha)
  encoded = [(row,) for row in encode_texts(vocab, sources)]
  return _in_length_order(decode_fn, vocab, encoded, batch_size, progress)


def reconstruct(model, vocab, sources, targets, batch_size=32):
  """Teacher-forced outputs of a latent model (latents from the target encoder), as text."""
  fn = tf.function(model.reconstruct, input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2)
  encoded = list(zip(encode_texts(vocab, sources), encode_texts(vocab, targets)))
  return _in_length_order(fn, vocab, encoded, batch_size)


def batch1_times(decode_fns, vocab, sources, warmup=3):
  """Per-sentence decode times at batch size 1, in ms, of several decoders side by side.

  decode_fns: {name: compiled decode function (see `decode_function`)}. Each
  source is tokenized beforehand and decoded by every function in turn, the
  order rotating from one sentence to the next, so machine noise hits all
  alike; the clock covers one decode, including reading the result back to
  the host. The first `warmup` sentences are decoded once untimed.

  Returns:
    {name: [ms per sentence]}.
  """
  fns = list(decode_fns.items())
  encoded = encode_texts(vocab, sources)
  for row in encoded[:warmup]:
    for _, fn in fns:
      fn(tf.constant([row], tf.int32)).numpy()
  times = {name: [] for name, _ in fns}
  for i, row in enumerate(encoded):
    batch = tf.constant([row], tf.int32)
    for j in range(len(fns)):
      name, fn = fns[(i + j) % len(fns)]
      start = time.perf_counter()
      fn(batch).numpy()
      times[name].append((time.perf_counter() - start) * 1e3)
  return times
