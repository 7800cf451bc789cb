"""Problems: TSV corpus and its errors, WMT14 through TFDS (mock data), batching."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from t2t_vqem import registry
from t2t_vqem.problems import problem as problem_lib
from t2t_vqem.problems import vocab as vocab_lib

PAIRS = [
  ("the dog sleeps .", "der Hund schläft ."),
  ("the cat sees the dog .", "die Katze sieht den Hund ."),
  (
    "a man reads a long book because he is tired .",
    "ein Mann liest ein langes Buch , weil er müde ist .",
  ),
]


def _write_tsv(path, pairs):
  path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
  return str(path)


def _tsv_problem(tmp_path, **kwargs):
  paths = {
    f"{split}_path": _write_tsv(tmp_path / f"{split}.tsv", PAIRS * n)
    for split, n in (("train", 20), ("dev", 1), ("test", 1))
  }
  paths.update(kwargs)
  return registry.build_problem(
    "translate_tsv", data_dir=str(tmp_path / "data"), vocab_size=300, **paths
  )


def test_tsv_pairs_and_examples_end_with_eos(tmp_path):
  problem = _tsv_problem(tmp_path)
  sources, references = problem.sources_and_references("dev")
  assert list(zip(sources, references)) == PAIRS
  vocab = problem.vocab
  for features, (s, t) in zip(problem.examples("dev").as_numpy_iterator(), PAIRS):
    assert features["inputs"].tolist() == vocab.encode(s) + [vocab_lib.EOS_ID]
    assert features["targets"].tolist() == vocab.encode(t) + [vocab_lib.EOS_ID]


def test_tsv_vocabulary_of_another_corpus_in_the_same_data_dir_is_its_own(tmp_path):
  first = _tsv_problem(tmp_path)
  other_pairs = [("green apples fall .", "grüne Äpfel fallen .")] * 20
  (tmp_path / "other").mkdir()
  other_train = _write_tsv(tmp_path / "other" / "train.tsv", other_pairs)
  other = _tsv_problem(tmp_path, train_path=other_train)
  assert other.vocab_path != first.vocab_path
  # Each learned from its own training file: its words round-trip, the other's are unknown.
  assert other.vocab.decode(other.vocab.encode("grüne Äpfel")) == "grüne Äpfel"
  assert vocab_lib.UNK_ID in first.vocab.encode("grüne Äpfel")
  assert first.vocab.decode(first.vocab.encode("der Hund")) == "der Hund"
  assert vocab_lib.UNK_ID in other.vocab.encode("der Hund")
  # The same file again: the cached vocabulary.
  assert _tsv_problem(tmp_path).vocab_path == first.vocab_path


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
  problem = registry.build_problem(
    "translate_grammar_ende", data_dir=str(tmp_path), num_train=2000, num_eval=200, vocab_size=500
  )
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
  full = [
    b["inputs"].shape[0]
    for b in problem.batches("train", budget, repeat=True, num_replicas=2)
    .take(30)
    .as_numpy_iterator()
  ]
  assert all(n % 2 == 0 for n in full)


def test_bucket_boundaries_are_increasing_and_below_max():
  bounds = problem_lib.bucket_boundaries(256)
  assert bounds[0] == 8 and all(b < 256 for b in bounds)
  assert np.all(np.diff(bounds) > 0)


def test_wmt_through_tfds_mock_data_translates_english_to_german(tmp_path):
  problem = registry.build_problem(
    "translate_ende_wmt", data_dir=str(tmp_path), vocab_size=200, download=False
  )
  with tfds.testing.mock_data(num_examples=12):
    pairs = list(problem.text_pairs("test").as_numpy_iterator())
    raw = list(tfds.load("wmt14_translate/de-en", split="test").as_numpy_iterator())
    assert len(pairs) == 12
    # TFDS yields (de, en); the problem swaps them to en -> de.
    assert pairs == [(ex["en"], ex["de"]) for ex in raw]
    batch = next(iter(problem.batches("train", 512)))
    assert batch["inputs"].dtype == tf.int32


# -- what a problem tells the trainer: model inputs, batch measure, evaluation ------------


def _grammar_problem(tmp_path_factory):
  return registry.build_problem(
    "translate_grammar_ende",
    data_dir=str(tmp_path_factory.getbasetemp() / "data"),
    num_train=300,
    num_eval=20,
    vocab_size=300,
  )


def test_text_problem_counts_target_tokens_and_batches_by_tokens(tmp_path_factory):
  problem = _grammar_problem(tmp_path_factory)
  assert problem.item_unit == "tokens"
  assert problem.batch_amount(batch_tokens=512, batch_size=8) == 512
  dummy = problem.dummy_features()
  assert dummy["inputs"].numpy().tolist()[0][-1] == vocab_lib.EOS_ID
  lengths = [len(f["targets"]) for f in problem.examples("dev").as_numpy_iterator()]
  counted = sum(float(problem.batch_items(b)) for b in problem.batches("dev", 256))
  assert counted == sum(lengths)  # EOS included, padding not


def test_image_problem_counts_pictures_and_batches_by_pictures(tmp_path):
  problem = registry.build_problem("image_shapes", data_dir=str(tmp_path), num_train=10, num_eval=5)
  assert problem.item_unit == "images" and problem.reports_test_results
  assert problem.batch_amount(batch_tokens=512, batch_size=8) == 8
  assert problem.dummy_features()["targets"].shape == (1, 32, 32, 3)
  sizes = [float(problem.batch_items(b)) for b in problem.batches("dev", 3)]
  assert sizes == [3.0] * (len(sizes) - 1) + [sizes[-1]] and sum(sizes) == 5
  assert problem.output_metrics(object(), "dev", 4) == {}


class _EmptyTranslator:
  """Translates every source to nothing (EOS only)."""

  interface = "translation"

  def decode(self, inputs, beam_size=None, alpha=None):
    del beam_size, alpha
    return tf.fill([tf.shape(inputs)[0], 1], vocab_lib.EOS_ID)


class _CopyingLatentModel(_EmptyTranslator):
  """Its teacher-forced output is the target itself."""

  interface = "latent_translation"

  def reconstruct(self, inputs, targets):
    del inputs
    return targets


def test_text_output_metrics_follow_the_models_declared_interface(tmp_path_factory):
  problem = _grammar_problem(tmp_path_factory)
  assert problem.output_metrics(_EmptyTranslator(), "dev", 0) == {}
  assert problem.output_metrics(_EmptyTranslator(), "dev", 8) == {"bleu_greedy": 0.0}
  latent = problem.output_metrics(_CopyingLatentModel(), "dev", 8)
  assert latent == {"bleu_greedy": 0.0, "bleu_teacher_forced": pytest.approx(100.0)}
