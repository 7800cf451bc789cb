"""Data faults: caches keyed by what they were made from, bad TSV input, impossible batching.

Every cache (the vocabulary) is keyed by a fingerprint of its data and checked
against the record beside it; bad TSV input and settings under which no batch
can be made fail at once, with one line naming the file, line or setting.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from t2t_vqem import registry
from t2t_vqem.problems import problem as problem_lib
from t2t_vqem.problems import vocab as vocab_lib

PAIRS = [
  ("the dog sleeps .", "der Hund schläft ."),
  ("the cat sees the dog .", "die Katze sieht den Hund ."),
  ("a man reads a book .", "ein Mann liest ein Buch ."),
]
VOCAB_SIZE = 100


def _write(path, data):
  """Writes bytes, or text as UTF-8 with "\\n" line endings; returns the path as a string."""
  if isinstance(data, str):
    data = data.encode("utf-8")
  path.write_bytes(data)
  return str(path)


def _lines(pairs):
  return "".join(f"{s}\t{t}\n" for s, t in pairs)


def _tsv(tmp_path, train, folder="corpus", **kwargs):
  """translate_tsv on `train` (bytes or text) with small dev/test files, in tmp_path/data."""
  (tmp_path / folder).mkdir(exist_ok=True)
  paths = {
    "train_path": _write(tmp_path / folder / "train.tsv", train),
    "dev_path": _write(tmp_path / folder / "dev.tsv", _lines(PAIRS)),
    "test_path": _write(tmp_path / folder / "test.tsv", _lines(PAIRS)),
  }
  kwargs.setdefault("vocab_size", VOCAB_SIZE)
  return registry.build_problem(
    "translate_tsv", data_dir=str(tmp_path / "data"), **dict(paths, **kwargs)
  )


def _grammar(tmp_path, **kwargs):
  settings = dict(num_train=60, num_eval=5, vocab_size=VOCAB_SIZE)
  settings.update(kwargs)
  return registry.build_problem("translate_grammar_ende", data_dir=str(tmp_path), **settings)


@pytest.fixture
def warnings(monkeypatch):
  """The warnings problem.py logs, formatted."""
  logged = []
  monkeypatch.setattr(
    problem_lib.logging, "warning", lambda message, *args: logged.append(message % args)
  )
  return logged


# -- caches keyed and checked by what they were made from ---------------------------------


def test_two_corpora_with_the_same_vocab_size_get_their_own_vocabulary(tmp_path):
  # vocab_size 200: room for every word of both corpora as one piece.
  first = _tsv(tmp_path, _lines(PAIRS * 10), vocab_size=200)
  zebra = [("the zebra sleeps .", "das Zebra schläft .")] * 10
  second = _tsv(tmp_path, _lines(PAIRS * 10 + zebra), folder="other", vocab_size=200)
  assert first.data_dir == second.data_dir
  assert first.vocab_path != second.vocab_path
  assert "\u2581zebra" in second.vocab.tokens and "\u2581zebra" not in first.vocab.tokens
  assert len(first.vocab.encode("zebra")) > len(second.vocab.encode("zebra")) == 1
  # Each vocabulary has its record: what it was learnt from, and its own sha256.
  for problem in (first, second):
    record = json.loads(open(problem_lib.vocab_record_path(problem.vocab_path)).read())
    assert record["learnt_from"] == problem.vocab_key()
    assert record["sha256"] == problem_lib.file_sha256(problem.vocab_path)


def test_same_data_gives_equal_fingerprints_and_the_same_vocabulary(tmp_path):
  one, two = _tsv(tmp_path, _lines(PAIRS * 5)), _tsv(tmp_path, _lines(PAIRS * 5))
  fingerprint = one.fingerprint()
  assert fingerprint == two.fingerprint()
  assert json.loads(json.dumps(fingerprint)) == fingerprint  # plain JSON
  assert fingerprint["train"]["sha256"] == problem_lib.file_sha256(one.paths["train"])
  assert fingerprint["train"]["path"] == os.path.abspath(one.paths["train"])
  assert (fingerprint["vocab_size"], fingerprint["max_length"]) == (VOCAB_SIZE, 256)
  # The same content elsewhere: another fingerprint (its path) but the same vocabulary.
  moved = _tsv(tmp_path, _lines(PAIRS * 5), folder="moved")
  assert moved.fingerprint()["train"] != fingerprint["train"]
  assert moved.vocab_path == one.vocab_path
  # The generated problems: equal settings, equal fingerprints.
  assert _grammar(tmp_path).fingerprint() == _grammar(tmp_path).fingerprint()
  shapes = dict(data_dir=str(tmp_path), num_train=6, num_eval=3)
  image = registry.build_problem("image_shapes", **shapes).fingerprint()
  assert image == registry.build_problem("image_shapes", **shapes).fingerprint()
  assert image["dev"]["num_eval"] == 3 and image["train"]["count"] == 6


def test_fingerprints_are_the_same_in_another_process(tmp_path):
  tsv, grammar = _tsv(tmp_path, _lines(PAIRS * 5)), _grammar(tmp_path / "data")
  script = (
    "import json, sys\n"
    "import t2t_vqem.problems\n"
    "from t2t_vqem import registry\n"
    "args = json.loads(sys.argv[1])\n"
    "print(json.dumps([registry.build_problem(n, **a).fingerprint() for n, a in args]))\n"
  )
  args = [
    ["translate_tsv", {f"{split}_path": path for split, path in tsv.paths.items()}],
    ["translate_grammar_ende", dict(num_train=60, num_eval=5)],
  ]
  for _, kwargs in args:
    kwargs.update(data_dir=str(tmp_path / "data"), vocab_size=VOCAB_SIZE)
  env = dict(os.environ, PYTHONHASHSEED="12345", TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run(
    [sys.executable, "-c", script, json.dumps(args)],
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  found = json.loads(result.stdout.strip().splitlines()[-1])
  assert found == [tsv.fingerprint(), grammar.fingerprint()]


def test_a_file_is_hashed_once_and_again_only_when_it_changes(tmp_path, monkeypatch):
  problem = _tsv(tmp_path, _lines(PAIRS))
  hashed = []
  real = problem_lib.file_sha256
  monkeypatch.setattr(problem_lib, "file_sha256", lambda path: hashed.append(path) or real(path))
  before = problem.fingerprint()
  problem.fingerprint(), problem.vocab_path, problem.problem_dir
  assert len(hashed) == 3  # train, dev, test
  _write(tmp_path / "corpus" / "train.tsv", _lines(PAIRS * 2))
  after = problem.fingerprint()
  assert len(hashed) == 4 and after["train"] != before["train"] and after["dev"] == before["dev"]


def test_vocab_sample_size_and_generator_settings_key_the_vocabulary(tmp_path):
  base = _tsv(tmp_path, _lines(PAIRS * 5))
  sampled = _tsv(tmp_path, _lines(PAIRS * 5), vocab_sample_size=4)
  assert base.fingerprint() != sampled.fingerprint()
  assert sampled.problem_dir == base.problem_dir and sampled.vocab_path != base.vocab_path
  grammar = _grammar(tmp_path)
  for change in ({"seed": 7}, {"num_train": 61}, {"vocab_sample_size": 10}):
    other = _grammar(tmp_path, **change)
    assert other.fingerprint() != grammar.fingerprint(), change
    assert other.vocab_path != grammar.vocab_path, change
  # num_eval changes dev and test, not what the vocabulary is learnt from.
  other = _grammar(tmp_path, num_eval=6)
  differ = problem_lib.differing_fields(other.fingerprint(), grammar.fingerprint())
  assert differ == ["dev", "test"] and other.vocab_path == grammar.vocab_path


def test_a_tampered_record_or_vocabulary_is_learnt_again(tmp_path, warnings):
  problem = _tsv(tmp_path, _lines(PAIRS * 5))
  path, tokens = problem.vocab_path, problem.vocab.tokens
  record_path = problem_lib.vocab_record_path(path)
  record = json.loads(open(record_path).read())
  record["learnt_from"]["vocab_sample_size"] = 7
  _write(pathlib.Path(record_path), json.dumps(record))
  again = _tsv(tmp_path, _lines(PAIRS * 5))
  assert again.vocab.tokens == tokens and again.vocab_path == path
  assert len(warnings) == 1 and "(differing: vocab_sample_size); learning it again" in warnings[0]
  assert json.loads(open(record_path).read())["learnt_from"] == problem.vocab_key()
  # An edited vocabulary file: its sha256 is not the recorded one.
  _write(pathlib.Path(path), "\n".join(tokens[:-1]) + "\n")
  assert _tsv(tmp_path, _lines(PAIRS * 5)).vocab.tokens == tokens
  assert "was changed after it was learnt" in warnings[1]
  # A missing record (a learning killed before writing it).
  os.remove(record_path)
  assert _tsv(tmp_path, _lines(PAIRS * 5)).vocab.tokens == tokens
  assert "has no record" in warnings[2] and os.path.exists(record_path)
  # A good cache is read without a warning.
  assert _tsv(tmp_path, _lines(PAIRS * 5)).vocab.tokens == tokens and len(warnings) == 3


def test_an_older_versions_unkeyed_vocabulary_is_used_with_a_warning(tmp_path, warnings):
  problem = _tsv(tmp_path, _lines(PAIRS * 5), vocab_type="wordpiece")
  tokens = list(vocab_lib.RESERVED_TOKENS) + ["\u2581the", "\u2581dog"]
  legacy = os.path.join(problem.problem_dir, f"vocab.{VOCAB_SIZE}.txt")
  os.makedirs(problem.problem_dir)
  _write(pathlib.Path(legacy), "\n".join(tokens) + "\n")
  assert problem.vocab_path == legacy and problem.vocab.tokens == tokens
  assert len(warnings) == 1 and "cannot be checked" in warnings[0] and legacy in warnings[0]
  # It is a WordPiece vocabulary: a SentencePiece problem learns its own beside it.
  sentencepiece = _tsv(tmp_path, _lines(PAIRS * 5), vocab_type="sentencepiece")
  assert sentencepiece.vocab_path.endswith(".model") and sentencepiece.vocab.tokens != tokens
  assert len(warnings) == 1


# -- bad TSV input: one clear line, never a crash or a hang --------------------------------


def test_bytes_that_are_not_utf8_name_file_and_line(tmp_path):
  problem = _tsv(tmp_path, b"the dog\tder Hund\nthe \xff cat\tdie Katze\n")
  with pytest.raises(ValueError, match=r"train\.tsv:2: not UTF-8 text \(byte 5 of the line"):
    problem.text_pairs("train")


def test_a_byte_order_mark_is_dropped(tmp_path):
  bom = "\ufeff"
  problem = _tsv(tmp_path, bom + _lines(PAIRS * 5))
  sources, targets = problem.sources_and_references("train", limit=2)
  assert sources[:2] == ["the dog sleeps .", "the cat sees the dog ."]
  first = next(problem.examples("train").as_numpy_iterator())
  assert first["inputs"].tolist() == problem.vocab.encode(PAIRS[0][0]) + [vocab_lib.EOS_ID]
  assert not any(bom in token for token in problem.vocab.tokens)


def test_windows_line_endings_leave_no_carriage_return(tmp_path):
  problem = _tsv(tmp_path, _lines(PAIRS * 5).replace("\n", "\r\n") + "\r\n")
  pairs = list(problem.text_pairs("train").as_numpy_iterator())
  assert len(pairs) == 15
  assert not any(b"\r" in field for pair in pairs for field in pair)
  assert pairs[0] == tuple(text.encode("utf-8") for text in PAIRS[0])


def test_blank_lines_are_skipped(tmp_path):
  text = "\n" + _lines(PAIRS[:1]) + "  \n\t\n\n" + _lines(PAIRS[1:])
  problem = _tsv(tmp_path, text)
  sources, references = problem.sources_and_references("train")
  assert list(zip(sources, references)) == PAIRS


def test_a_line_of_three_fields_names_file_and_line(tmp_path):
  problem = _tsv(tmp_path, _lines(PAIRS[:1]) + "a\tb\tc\n")
  with pytest.raises(ValueError, match=r"train\.tsv:2: malformed line .*found 3 tab-separated"):
    problem.text_pairs("train")


def test_no_training_pair_within_max_length_fails_at_once(tmp_path):
  problem = _tsv(tmp_path, _lines(PAIRS * 5), max_length=4)
  shortest = min(
    max(len(problem.vocab.encode(s)), len(problem.vocab.encode(t))) + 1 for s, t in PAIRS
  )
  message = (
    rf"no train pair of .*train\.tsv fits max_length=4 \(the shortest has {shortest} subwords, "
    rf"EOS included\); raise translate_tsv\.max_length to at least {shortest}"
  )
  with pytest.raises(ValueError, match=message):
    problem.batches("train", 64, shuffle=True, repeat=True)
  # One pair that fits is enough: batches come.
  short = _tsv(tmp_path, _lines(PAIRS * 5) + "dog\tHund\n", folder="short", max_length=4)
  batch = next(iter(short.batches("train", 64, repeat=True)))
  assert batch["inputs"].shape[1] <= 4


def test_batch_tokens_below_one_example_per_replica_is_refused(tmp_path):
  problem = _tsv(tmp_path, _lines(PAIRS * 5), max_length=16)
  message = (
    r"batch_tokens=24 cannot hold one example of max_length=16 subwords on each of 2 "
    r"replica\(s\); use batch_tokens >= 32 \(max_length x replicas\) or lower "
    r"translate_tsv\.max_length"
  )
  with pytest.raises(ValueError, match=message):
    problem.batches("train", 24, repeat=True, num_replicas=2)
  # The smallest accepted budget: every bucket holds one example per replica.
  batch = next(iter(problem.batches("train", 32, repeat=True, num_replicas=2)))
  assert batch["inputs"].shape[0] % 2 == 0 and batch["inputs"].shape[0] >= 2
