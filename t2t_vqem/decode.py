"""Inference: text in, text out, in length-sorted batches; batch-1 latency."""

import time

import numpy as np
import tensorflow as tf

from t2t_vqem.problems import vocab as vocab_lib


def decode_function(model, beam_size=None, alpha=None):
  """model.decode compiled once for any [batch, length] int32 input."""
  return tf.function(
      lambda inputs: model.decode(inputs, beam_size=beam_size, alpha=alpha),
      input_signature=[tf.TensorSpec([None, None], tf.int32)])


def encode_sources(vocab, sources):
  """Python strings -> list of id lists, each ending with EOS."""
  ids = vocab.tokenize(tf.constant(list(sources))).to_list()
  return [row + [vocab_lib.EOS_ID] for row in ids]


def translate(model, vocab, sources, beam_size=None, alpha=None, batch_size=32,
              decode_fn=None, progress=None):
  """Translates Python strings; returns the detokenized hypotheses in order.

  Sources are decoded in batches sorted by length (little padding), then put
  back in the input order.
  """
  decode_fn = decode_fn or decode_function(model, beam_size, alpha)
  encoded = encode_sources(vocab, sources)
  order = np.argsort([len(row) for row in encoded], kind="stable")
  hypotheses = [None] * len(encoded)
  for start in range(0, len(order), batch_size):
    rows = [encoded[i] for i in order[start:start + batch_size]]
    width = max(len(r) for r in rows)
    batch = np.zeros([len(rows), width], np.int32)
    for j, row in enumerate(rows):
      batch[j, :len(row)] = row
    texts = vocab.detokenize(decode_fn(tf.constant(batch))).numpy()
    for j, text in zip(order[start:start + batch_size], texts):
      hypotheses[j] = text.decode("utf-8")
    if progress:
      progress(min(start + batch_size, len(order)), len(order))
  return hypotheses


def batch1_latency(model, vocab, sources, beam_size=None, alpha=None, warmup=3):
  """Per-sentence decode latency at batch size 1, in milliseconds.

  Each source is tokenized beforehand; the clock covers the compiled decode of
  one sentence, including reading the result back to the host.

  Returns:
    dict with mean_ms, median_ms and the number of sentences.
  """
  decode_fn = decode_function(model, beam_size, alpha)
  encoded = encode_sources(vocab, sources)
  for row in encoded[:warmup]:
    decode_fn(tf.constant([row], tf.int32)).numpy()
  times = []
  for row in encoded:
    batch = tf.constant([row], tf.int32)
    start = time.perf_counter()
    decode_fn(batch).numpy()
    times.append((time.perf_counter() - start) * 1e3)
  return {"mean_ms": float(np.mean(times)), "median_ms": float(np.median(times)),
          "sentences": len(times)}
