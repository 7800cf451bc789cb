"""Vocabularies: SentencePiece (the default) and WordPiece, reserved ids, exact round
trip, EOS and PAD handling, the cache keyed by vocab_type, runs refused on another type.

Tokenization is checked against the `sentencepiece` library's own encoder on the
same model file (an independent implementation of the same model).
"""

import json
import os

from absl import logging
import pytest
import sentencepiece as spm
import tensorflow as tf

from t2t_vqem import files
from t2t_vqem import registry
from t2t_vqem.problems import problem as problem_lib
from t2t_vqem.problems import sentencepiece_vocab
from t2t_vqem.problems import vocab as vocab_lib
from t2t_vqem.train import run_dir

SENTENCES = [
  "Yesterday the dog saw the cat.",
  "Gestern sah der Hund die Katze, weil er müde war.",
  "The dog's bone (a big one) is here!",
  "Das Mädchen hat 3 Äpfel gekauft?",
  "„Grüß Gott“, sagte die Frau – über 20 % weniger!",
]
UNSEEN = ["Zebras grasen nördlich des Flusses.", "Quickly, Jo: vex the wizard!"]


def _learn(vocab_type, tmp_path, size):
  texts = tf.data.Dataset.from_tensor_slices(SENTENCES * 10)
  if vocab_type == "sentencepiece":
    return sentencepiece_vocab.learn_vocab(texts, size, str(tmp_path / f"v{size}.model"))
  return vocab_lib.learn_vocab(texts, size, str(tmp_path / f"v{size}.txt"))


@pytest.fixture(scope="module")
def vocabs(tmp_path_factory):
  """{name: vocabulary}: SentencePiece without byte fallback (300), with it (5000:
  more than the corpus supports), and WordPiece (400)."""
  tmp = tmp_path_factory.mktemp("vocabs")
  return {
    "sentencepiece": _learn("sentencepiece", tmp, 300),
    "sentencepiece_bytes": _learn("sentencepiece", tmp, 5000),
    "wordpiece": _learn("wordpiece", tmp, 400),
  }


ALL = ["sentencepiece", "sentencepiece_bytes", "wordpiece"]
SP = ["sentencepiece", "sentencepiece_bytes"]


def _library(vocab):
  return spm.SentencePieceProcessor(model_file=vocab.path)


# -- reserved ids -----------------------------------------------------------------------


def test_reserved_ids_are_pad_eos_unk(vocabs):
  assert (vocab_lib.PAD_ID, vocab_lib.EOS_ID, vocab_lib.UNK_ID) == (0, 1, 2)
  assert vocabs["wordpiece"].tokens[:3] == ["<pad>", "<EOS>", "[UNK]"]
  for name in SP:
    sp = _library(vocabs[name])
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    assert vocabs[name].tokens[:3] == [sp.id_to_piece(i) for i in range(3)]
    assert vocabs[name].size == sp.get_piece_size() == len(vocabs[name].tokens)
    # PAD decodes to nothing, EOS ends the text, UNK shows as "\u2047" (as the library's).
    word = vocabs[name].encode("dog")
    assert vocabs[name].decode(word + [0, 0]) == vocabs[name].decode(word) == "dog"
    assert vocabs[name].decode(word + [1] + word) == "dog"
    assert vocabs[name].decode([2]) == sp.decode([2]) == "\u2047"


def test_a_corpus_smaller_than_vocab_size_gives_fewer_pieces(vocabs):
  vocab = vocabs["sentencepiece_bytes"]
  assert 256 < vocab.size < 5000
  assert vocab.tokens[3:259] == [f"<0x{b:02X}>" for b in range(256)]  # byte fallback
  assert "<0x00>" not in vocabs["sentencepiece"].tokens  # too small for it


def test_vocab_size_below_the_alphabet_is_refused_with_the_size_needed(tmp_path):
  with pytest.raises(ValueError, match=r"vocab_size=20 is smaller than the \d+ pieces .* use "):
    _learn("sentencepiece", tmp_path, 20)


# -- text round trip, in the graph -----------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_round_trip_is_exact_up_to_whitespace(vocabs, name):
  vocab = vocabs[name]
  for sentence in SENTENCES + ["  the  dog\tsaw   Katze .  ", "Mädchen"]:
    ids = vocab.encode(sentence)
    assert ids and vocab_lib.PAD_ID not in ids and vocab_lib.EOS_ID not in ids
    assert vocab.decode(ids) == " ".join(sentence.split())
  if name != "wordpiece":  # (WordPiece gives empty text one piece, a lone MARK)
    assert vocab.encode("") == [] and vocab.encode(" \t ") == []


@pytest.mark.parametrize("name", SP)
def test_graph_tokenization_is_the_sentencepiece_librarys(vocabs, name):
  vocab, sp = vocabs[name], _library(vocabs[name])
  texts = SENTENCES + UNSEEN + ["zebra \u2603 \U0001f600"]
  tokenize = tf.function(vocab.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
  ids = tokenize(tf.constant(texts)).to_list()
  assert ids == sp.encode(texts)
  detokenize = tf.function(
    vocab.detokenize, input_signature=[tf.TensorSpec([None, None], tf.int32)]
  )
  padded = tf.ragged.constant(ids).to_tensor()
  assert [t.decode() for t in detokenize(padded).numpy()] == sp.decode(ids)


@pytest.mark.parametrize("name", ALL)
def test_detokenize_stops_at_eos_and_skips_padding(vocabs, name):
  vocab = vocabs[name]
  a, b = vocab.encode(SENTENCES[0]), vocab.encode(SENTENCES[2])
  batch = [a + [1] + b, b + [1, 0, 0, 0], [1] + a, [0] * 3 + a]
  width = max(map(len, batch))
  batch = [row + [0] * (width - len(row)) for row in batch]
  texts = [t.decode() for t in vocab.detokenize(tf.constant(batch)).numpy()]
  assert texts == [SENTENCES[0], SENTENCES[2], "", SENTENCES[0]]


def test_characters_outside_the_vocabulary(vocabs):
  text = "Ozean \u2603 Qualle \U0001f600"  # no snowman, emoji, O or Q in the corpus
  seen = set("".join(SENTENCES))
  for name in ("sentencepiece", "wordpiece"):  # no byte pieces: UNK
    assert vocab_lib.UNK_ID in vocabs[name].encode(text)
  # Each unseen character is UNK, which shows as "\u2047".
  expected = "".join(c if c in seen or c == " " else "\u2047" for c in text)
  assert expected == "\u2047zean \u2047 \u2047ualle \u2047"
  assert vocabs["sentencepiece"].decode(vocabs["sentencepiece"].encode(text)) == expected
  # Byte fallback: the characters' UTF-8 bytes, decoded back exactly.
  vocab = vocabs["sentencepiece_bytes"]
  ids = vocab.encode(text)
  assert vocab_lib.UNK_ID not in ids and vocab.decode(ids) == text
  snowman = [vocab.tokens.index(f"<0x{b:02X}>") for b in "\u2603".encode()]
  assert snowman == [3 + b for b in "\u2603".encode()]
  assert any(ids[i : i + 3] == snowman for i in range(len(ids)))


def test_learning_logs_its_progress(tmp_path, monkeypatch):
  lines = []
  monkeypatch.setattr(sentencepiece_vocab, "PROGRESS_EVERY", 20)
  monkeypatch.setattr(logging, "info", lambda message, *args: lines.append(message % args))
  vocab = _learn("sentencepiece", tmp_path, 300)
  assert any(line.startswith("Read 50 sentences for the vocabulary in ") for line in lines)
  assert f"Learnt {vocab.size} pieces from 50 sentences in " in lines[-1]
  assert os.listdir(tmp_path) == ["v300.model"]  # no temporary sentence file left


# -- the problem's vocabulary: cache keyed by type, fingerprint, resumed runs --------------

PAIRS = [
  ("the dog sleeps .", "der Hund schläft ."),
  ("the cat sees the dog .", "die Katze sieht den Hund ."),
  ("a man reads a book .", "ein Mann liest ein Buch ."),
]


def _problem(tmp_path, **kwargs):
  path = tmp_path / "pairs.tsv"
  path.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS * 5), encoding="utf-8")
  paths = {f"{split}_path": str(path) for split in ("train", "dev", "test")}
  return registry.build_problem(
    "translate_tsv", data_dir=str(tmp_path / "data"), vocab_size=100, **paths, **kwargs
  )


def test_the_cache_is_keyed_by_vocab_type(tmp_path, monkeypatch):
  default = _problem(tmp_path)
  assert default.vocab_type == "sentencepiece"
  model = default.vocab.path
  assert model == default.vocab_path and model.endswith(".model")
  assert isinstance(default.vocab, sentencepiece_vocab.SentencePieceVocab)
  assert default.model_kwargs() == {"vocab_size": default.vocab.size}
  wordpiece = _problem(tmp_path, vocab_type="wordpiece")
  assert wordpiece.vocab.path.endswith(".txt") and wordpiece.vocab.tokens[1] == "<EOS>"
  assert os.path.dirname(wordpiece.vocab.path) == os.path.dirname(model)
  for problem in (default, wordpiece):
    record = files.read_json(problem_lib.vocab_record_path(problem.vocab_path))
    assert record["learnt_from"] == json.loads(json.dumps(problem.vocab_key()))
  assert default.vocab_key()["vocab_type"] == "sentencepiece"
  assert "vocab_type" not in wordpiece.vocab_key()  # as older versions keyed WordPiece

  # Back to SentencePiece: the first file, not learnt again.
  def learn_again(*args):
    raise AssertionError("learnt again")

  monkeypatch.setattr(sentencepiece_vocab, "learn_vocab", learn_again)
  again = _problem(tmp_path, vocab_type="sentencepiece")
  assert again.vocab.path == model and again.vocab.tokens == default.vocab.tokens


def test_an_unknown_vocab_type_is_refused(tmp_path):
  with pytest.raises(ValueError, match=r"vocab_type='bpe' .* 'sentencepiece' .* 'wordpiece'"):
    _problem(tmp_path, vocab_type="bpe")


def test_a_run_resumed_with_another_vocab_type_is_refused(tmp_path):
  sentencepiece, wordpiece = _problem(tmp_path), _problem(tmp_path, vocab_type="wordpiece")
  assert sentencepiece.fingerprint()["vocab_type"] == "sentencepiece"
  # WordPiece runs record no vocab_type, as every run before the setting existed.
  assert "vocab_type" not in wordpiece.fingerprint()
  for started, resumed in ((sentencepiece, wordpiece), (wordpiece, sentencepiece)):
    output_dir = tmp_path / f"run-{started.vocab_type}"
    output_dir.mkdir()
    files.write_json(str(output_dir / run_dir.RUN_INFO), {"model": "m", "problem": started.name})
    run_dir.check_run_data(str(output_dir), started.fingerprint())
    run_dir.check_run_data(str(output_dir), started.fingerprint())  # the same: accepted
    with pytest.raises(run_dir.OutputDirError, match=r"\(differing: vocab_type\)"):
      run_dir.check_run_data(str(output_dir), resumed.fingerprint())


def test_the_same_text_gives_the_same_model_file(tmp_path):
  """Byte for byte: the trainer's temporary input file is not recorded in the model."""
  models = []
  for folder in ("a", "b"):
    (tmp_path / folder).mkdir()
    models.append(_learn("sentencepiece", tmp_path / folder, 300).model)
  assert models[0] == models[1] and str(tmp_path).encode() not in models[0]
