"""Problems: TSV corpus and its errors, WMT14 through TFDS (mock data), batching."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from t2t_vqem import registry
from t2t_vqem.problems import problem as problem_lib
from t2t_vqem.problems import vocab as vocab_lib

PAIRS = [("the dog sleeps .", "der Hund schläft ."),
         ("the cat sees the dog .", "die Katze sieht den Hund ."),
         ("a man reads a long book because he is tired .",
          "ein Mann liest ein langes Buch , weil er müde ist .")]


def _write_tsv(path, pairs):
  path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
  return str(path)


def _tsv_problem(tmp_path, **kwargs):
  paths = {f"{split}_path": _write_tsv(tmp_path / f"{split}.tsv", PAIRS * n)
           for split, n in (("train", 20), ("dev", 1), ("test", 1))}
  paths.update(kwargs)
  return registry.build_problem("translate_tsv", data_dir=str(tmp_path / "data"),
                                vocab_size=300, **paths)


def test_tsv_pairs_and_examples_end_with_eos(tmp_path):
  problem = _tsv_problem(tmp_path)
  sources, references = problem.sources_and_references("dev")
  assert list(zip(sources, references)) == PAIRS
  vocab = problem.vocab
  for features, (s, t) in zip(problem.examples("dev").as_numpy_iterator(), PAIRS):
    assert features["inputs"].tolist() == vocab.encode(s) + [vocab_lib.EOS_ID]
    assert features["targets"].tolist() == vocab.encode(t) + [vocab_lib.EOS_ID]


def test_tsv_malformed_line_names_file_and_line(tmp_path):
  bad = tmp_path / "bad.tsv"
  bad.write_text("a\tb\nno tab here\n", encoding="utf-8")
  problem = _tsv_problem(tmp_path, train_path=str(bad))
  with pytest.raises(ValueError, match=r"bad.tsv:2: malformed line"):
    problem.text_pairs("train")


def test_tsv_missing_and_empty_files(tmp_path):
  problem = _tsv_problem(tmp_path, dev_path=str(tmp_path / "nope.tsv"))
  with pytest.raises(FileNotFoundError, match="nope.tsv"):
    problem.text_pairs("dev")
  (tmp_path / "empty.tsv").write_text("\n")
  problem = _tsv_problem(tmp_path, test_path=str(tmp_path / "empty.tsv"))
  with pytest.raises(ValueError, match="empty"):
    problem.text_pairs("test")
  with pytest.raises(ValueError, match="unknown split 'valid'"):
    problem.text_pairs("valid")


def test_batches_respect_token_budget_and_replicas(tmp_path):
  problem = registry.build_problem("translate_grammar_ende", data_dir=str(tmp_path),
                                   num_train=2000, num_eval=200, vocab_size=500)
  budget, seen = 256, 0
  for batch in problem.batches("dev", budget, num_replicas=2).as_numpy_iterator():
    inputs, targets = batch["inputs"], batch["targets"]
    assert inputs.shape[0] == targets.shape[0]
    rows = inputs.shape[0]
    seen += rows
    longest = max((inputs > 0).sum(1).max(), (targets > 0).sum(1).max())
    # each batch holds about budget tokens of its bucket's length
    assert rows * longest <= budget * 1.2 + longest
    # every row ends with EOS before its padding
    for row in targets:
      n = int((row > 0).sum())
      assert row[n - 1] == vocab_lib.EOS_ID and not row[n:].any()
  expected = sum(1 for f in problem.examples("dev").as_numpy_iterator())
  assert seen == expected
  full = [b["inputs"].shape[0] for b in problem.batches(
      "train", budget, repeat=True, num_replicas=2).take(30).as_numpy_iterator()]
  assert all(n % 2 == 0 for n in full)


def test_bucket_boundaries_are_increasing_and_below_max():
  bounds = problem_lib.bucket_boundaries(256)
  assert bounds[0] == 8 and all(b < 256 for b in bounds)
  assert np.all(np.diff(bounds) > 0)


def test_wmt_through_tfds_mock_data_translates_english_to_german(tmp_path):
  problem = registry.build_problem("translate_ende_wmt", data_dir=str(tmp_path),
                                   vocab_size=200, download=False)
  with tfds.testing.mock_data(num_examples=12):
    pairs = list(problem.text_pairs("test").as_numpy_iterator())
    raw = list(tfds.load("wmt14_translate/de-en", split="test").as_numpy_iterator())
    assert len(pairs) == 12
    # TFDS yields (de, en); the problem swaps them to en -> de.
    assert pairs == [(ex["en"], ex["de"]) for ex in raw]
    batch = next(iter(problem.batches("train", 512)))
    assert batch["inputs"].dtype == tf.int32
