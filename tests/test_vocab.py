"""Vocabulary: learnt by tensorflow-text, exact round trip, EOS and PAD handling."""

import tensorflow as tf

from t2t_vqem.problems import vocab as vocab_lib

SENTENCES = [
  "Yesterday the dog saw the cat.",
  "Gestern sah der Hund die Katze, weil er müde war.",
  "The dog's bone (a big one) is here!",
  "Das Mädchen hat 3 Äpfel gekauft?",
]


def _vocab(tmp_path, size=400):
  texts = tf.data.Dataset.from_tensor_slices(SENTENCES * 10)
  return vocab_lib.learn_vocab(texts, size, str(tmp_path / "vocab.txt"))


def test_reserved_tokens_come_first(tmp_path):
  vocab = _vocab(tmp_path)
  assert vocab.tokens[:3] == ["<pad>", "<EOS>", "[UNK]"]
  assert (vocab_lib.PAD_ID, vocab_lib.EOS_ID, vocab_lib.UNK_ID) == (0, 1, 2)


def test_round_trip_is_exact_up_to_whitespace(tmp_path):
  vocab = _vocab(tmp_path)
  for sentence in SENTENCES + ["the  dog\tsaw   Katze ."]:
    ids = vocab.encode(sentence)
    assert vocab_lib.PAD_ID not in ids and vocab_lib.EOS_ID not in ids
    assert vocab.decode(ids) == " ".join(sentence.split())


def test_subwords_when_the_vocabulary_is_small(tmp_path):
  vocab = _vocab(tmp_path, size=60)
  ids = vocab.encode(SENTENCES[1])
  assert len(ids) > len(SENTENCES[1].split())  # words were split into pieces
  assert vocab.decode(ids) == SENTENCES[1]


def test_detokenize_stops_at_eos_and_skips_padding(tmp_path):
  vocab = _vocab(tmp_path)
  a, b = vocab.encode(SENTENCES[0]), vocab.encode(SENTENCES[2])
  batch = [a + [1] + b, b + [1, 0, 0, 0]]
  width = max(map(len, batch))
  batch = [row + [0] * (width - len(row)) for row in batch]
  texts = vocab.detokenize(tf.constant(batch)).numpy()
  assert [t.decode() for t in texts] == [SENTENCES[0], SENTENCES[2]]


def test_unknown_characters_become_unk(tmp_path):
  vocab = _vocab(tmp_path)
  assert vocab_lib.UNK_ID in vocab.encode("zebra ☃")
