"""speed.py: latency bands by the reference's length, throughput passes, speedups."""

import numpy as np
import pytest
import tensorflow as tf

from t2t_vqem import decode
from t2t_vqem import speed


class _WordsVocab:
  """A stand-in vocabulary: one id (3) per whitespace-separated word; detokenize: 'w' * n."""

  def tokenize(self, texts):
    return tf.ragged.constant(
      [[3] * len(t.split()) for t in texts.numpy().astype(str)], dtype=tf.int32
    )

  def detokenize(self, ids):
    return tf.constant([" ".join(["w"] * int(np.sum(row > 0))) for row in ids.numpy()])


def test_latency_bands_take_the_median_of_the_sentences_whose_reference_is_in_the_band(
  monkeypatch,
):
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, 60, 40)
  references = [" ".join(["x"] * n) for n in lengths]
  times = {"a": list(rng.uniform(1, 9, 40)), "b": list(rng.uniform(1, 9, 40))}
  monkeypatch.setattr(decode, "batch1_times", lambda fns, vocab, sources: times)
  got = speed.latencies({"a": None, "b": None}, _WordsVocab(), ["s"] * 40, references)
  for name in ("a", "b"):
    t = np.array(times[name])
    assert got[name]["latency_ms"] == pytest.approx(np.median(t))
    assert got[name]["latency_sentences"] == 40
    for lo, hi in ((1, 20), (21, 50)):
      chosen = [t[i] for i in range(40) if lo <= lengths[i] <= hi]  # brute force
      cell = got[name]["by_length"][f"{lo}-{hi}"]
      assert cell["sentences"] == len(chosen) > 0
      assert cell["latency_ms"] == pytest.approx(np.median(chosen))
  empty = speed.latencies({"a": None}, _WordsVocab(), ["s"] * 40, references, bands=[(70, 80)])
  assert empty["a"]["by_length"]["70-80"] == {"latency_ms": None, "sentences": 0}


def test_speedups_are_ratios_of_the_greedy_rows_medians_overall_and_per_band():
  def row(ms, band_ms):
    return {"latency_ms": ms, "by_length": {"21-50": {"latency_ms": band_ms, "sentences": 3}}}

  greedy, beam, student = row(40.0, 80.0), row(60.0, 120.0), row(10.0, 8.0)
  speed.add_speedups([greedy, beam, student], greedy=greedy, beam=beam)
  assert student["speedup_vs_greedy"] == pytest.approx(4.0)
  assert student["speedup_vs_beam"] == pytest.approx(6.0)
  assert student["by_length"]["21-50"]["speedup_vs_greedy"] == pytest.approx(10.0)
  assert greedy["by_length"]["21-50"]["speedup_vs_greedy"] == pytest.approx(1.0)
  alone = row(10.0, None)
  speed.add_speedups([alone], greedy=None)
  assert (
    alone["speedup_vs_greedy"] is None and alone["by_length"]["21-50"]["speedup_vs_greedy"] is None
  )


def test_throughput_translates_every_source_once_per_round_per_decoder():
  calls = {"x": 0, "y": 0}

  def counter(name):
    def fn(batch):
      calls[name] += int(batch.shape[0])
      return batch

    return fn

  sources = [" ".join(["a"] * n) for n in range(1, 12)]
  got = speed.throughputs(
    {"x": counter("x"), "y": counter("y")}, _WordsVocab(), sources, batch_size=4, rounds=3
  )
  assert calls == {"x": 4 + 3 * 11, "y": 4 + 3 * 11}  # one warm-up batch, then 3 passes
  for name in ("x", "y"):
    assert got[name]["throughput_sentences"] == 11 and got[name]["throughput_batch_size"] == 4
    assert got[name]["throughput_rounds"] == 3 and got[name]["sentences_per_second"] > 0


def test_bad_bands_and_batches_are_refused():
  for bands in ([(0, 5)], [(9, 3)], [(1, 2, 3)], [(1.5, 3)]):
    with pytest.raises(ValueError, match="length band"):
      speed.check_bands(bands)
  with pytest.raises(ValueError, match="must be >= 1"):
    speed.throughputs({}, _WordsVocab(), ["a"], batch_size=0)
