"""BLEU: sacrebleu's corpus BLEU against a hand computation."""

import math

import pytest

from t2t_vqem import metrics


def test_bleu_matches_a_hand_computed_case():
  hypothesis = "the cat sat on a mat"
  reference = "the cat sat on the mat"
  # n-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths, so no brevity penalty.
  expected = 100 * math.exp(sum(math.log(p) for p in (5 / 6, 3 / 5, 2 / 4, 1 / 3)) / 4)
  score, signature = metrics.corpus_bleu([hypothesis], [reference])
  assert score == pytest.approx(expected, abs=1e-6)
  assert signature.startswith("nrefs:1|")


def test_bleu_brevity_penalty_and_perfect_match():
  assert metrics.corpus_bleu(["a b c d e"], ["a b c d e"])[0] == pytest.approx(100.0)
  # hypothesis of 4 words against 5: every n-gram matches, BP = exp(1 - 5/4)
  score, _ = metrics.corpus_bleu(["a b c d"], ["a b c d e"])
  assert score == pytest.approx(100 * math.exp(1 - 5 / 4), abs=1e-6)


def test_bleu_needs_one_hypothesis_per_reference():
  with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
    metrics.corpus_bleu(["a", "b"], ["a"])
