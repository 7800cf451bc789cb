"""How fast the decoders of a table translate, each measured side by side with the others.

Two figures per decoder, both taken in one process with every decoder warmed up
(traced) first, so no compilation is timed:

- Batch-1 latency, the paper's Table 1 column: each source decoded alone, the
  decoders in turn on each sentence (`decode.batch1_times`); the median over
  the sentences, overall and within each band of the reference's length in
  subwords (`LENGTH_BANDS`). A non-autoregressive student gains most on long
  targets, where the autoregressive teacher takes one step per subword.
- Throughput: sentences per second when a whole split is translated in
  length-sorted batches of `batch_size` (`decode.translate`), the decoders in
  turn, `rounds` times; the median rate over the rounds.
"""

import time

import numpy as np
import tensorflow as tf

from t2t_vqem import decode

# Bands of the reference's length in subwords, (lowest, highest), both included.
LENGTH_BANDS = ((1, 20), (21, 50))


def band_name(band):
  return f"{band[0]}-{band[1]}"


def check_bands(bands):
  """The bands as a tuple of (lowest, highest) int pairs with 1 <= lowest <= highest."""
  checked = []
  for band in bands:
    if len(band) != 2 or not all(isinstance(b, int) for b in band) or not 1 <= band[0] <= band[1]:
      raise ValueError(
        f"length band {band!r}: give (lowest, highest) subwords, 1 <= lowest <= highest"
      )
    checked.append((band[0], band[1]))
  return tuple(checked)


def reference_lengths(vocab, references):
  """The length of each reference in subwords of `vocab` (EOS not counted)."""
  return [len(ids) for ids in vocab.tokenize(tf.constant(list(references))).to_list()]


def latencies(decode_fns, vocab, sources, references, bands=LENGTH_BANDS):
  """Batch-1 latency of every decoder, timed side by side.

  Returns:
    {name: {"latency_ms": median, "latency_mean_ms", "latency_sentences",
    "by_length": {"<lo>-<hi>": {"latency_ms": median or None, "sentences": n}}}}:
    by_length over the timed sentences whose reference has lo..hi subwords.
  """
  times = decode.batch1_times(decode_fns, vocab, sources)
  lengths = np.array(reference_lengths(vocab, references))
  result = {}
  for name, t in times.items():
    t = np.array(t)
    by_length = {}
    for band in check_bands(bands):
      chosen = t[(lengths >= band[0]) & (lengths <= band[1])]
      by_length[band_name(band)] = {
        "latency_ms": float(np.median(chosen)) if len(chosen) else None,
        "sentences": int(len(chosen)),
      }
    result[name] = {
      "latency_ms": float(np.median(t)),
      "latency_mean_ms": float(np.mean(t)),
      "latency_sentences": int(len(t)),
      "by_length": by_length,
    }
  return result


def throughputs(decode_fns, vocab, sources, batch_size=64, rounds=2):
  """Sentences per second of every decoder translating `sources` in length-sorted
  batches of batch_size, the decoders in turn for `rounds` rounds (after one untimed
  batch each); {name: {"sentences_per_second": median over rounds,
  "throughput_batch_size", "throughput_sentences", "throughput_rounds"}}."""
  if batch_size < 1 or rounds < 1:
    raise ValueError(f"throughput batch_size {batch_size} and rounds {rounds} must be >= 1")
  sources = list(sources)
  warm = sorted(sources, key=len)[:batch_size]
  for fn in decode_fns.values():
    decode.translate(None, vocab, warm, batch_size=batch_size, decode_fn=fn)
  rates = {name: [] for name in decode_fns}
  for _ in range(rounds):
    for name, fn in decode_fns.items():
      start = time.perf_counter()
      decode.translate(None, vocab, sources, batch_size=batch_size, decode_fn=fn)
      rates[name].append(len(sources) / (time.perf_counter() - start))
  return {
    name: {
      "sentences_per_second": float(np.median(r)),
      "throughput_batch_size": batch_size,
      "throughput_sentences": len(sources),
      "throughput_rounds": rounds,
    }
    for name, r in rates.items()
  }


def add_speedups(rows, greedy, beam=None):
  """Sets each row's speedup_vs_greedy / _vs_beam (ratios of median latencies) and, per
  length band, by_length[band]["speedup_vs_greedy"]; greedy and beam are rows (or None:
  no teacher, speedups None)."""
  for row in rows:
    for key, base in (("speedup_vs_greedy", greedy), ("speedup_vs_beam", beam)):
      row[key] = base["latency_ms"] / row["latency_ms"] if base else None
    for band, cell in row.get("by_length", {}).items():
      base = greedy["by_length"][band]["latency_ms"] if greedy else None
      cell["speedup_vs_greedy"] = base / cell["latency_ms"] if base and cell["latency_ms"] else None
  return rows
