"""Shared source/target subword vocabulary learnt with SentencePiece, applied by tf.text ops.

The vocabulary is a SentencePiece model (a serialized ModelProto, `*.model`),
learnt with the `sentencepiece` package's C++ trainer and applied in the graph
by `tensorflow_text.SentencepieceTokenizer` from the same bytes, so
tokenization and detokenization can live inside a SavedModel. Its first pieces
are <pad>, </s>, <unk>: PAD = 0, EOS = 1, UNK = 2 (t2t_vqem.constants), no BOS.

Text is whitespace-normalised as WordPiece's is (`normalize`: runs of ASCII
whitespace become one space, the ends are stripped); SentencePiece marks each
word start with "\u2581" and cuts words into pieces. Detokenization joins the
pieces and turns "\u2581" back into spaces, so the round trip is exact up to
that whitespace normalisation. No other normalisation is done (rule
"identity", not SentencePiece's default NFKC): hypotheses keep the characters
of the references they are scored against ("\u2026" is not made "...", "\u00b2"
not "2").

Characters outside the vocabulary: from BYTE_FALLBACK_MIN_SIZE pieces on, a
character that is no piece is encoded as its UTF-8 bytes (pieces <0x00> ..
<0xFF>) and decodes back to itself, so any UTF-8 text round-trips. Smaller
vocabularies have no room for the 256 byte pieces: there every character of
the training text is a piece (character_coverage 1.0) and a character never
seen is UNK, which detokenizes as UNK_SURFACE "\u2047".

Trainer settings, measured with benchmarks/vocab_speed.py's corpus (real
English and German word frequencies, 1M pairs = 2M sentences; 32,000 pieces,
on 2 cores shared with other jobs, so times are +-30%). `learn_vocab` takes
~40 s there (13 s reading, 26 s training), tensorflow-text's WordPiece
learner 82-110 sentences/s (hours):
  * model_type "bpe": 22-36 s on 2M sentences, where "unigram" took 274 s on
    1M, for the same held-out pieces per word (1.207 vs 1.205);
  * input_sentence_size 2M (a uniform sample when more are read;
    vocab_sample_size already bounds the pairs read): samples of 0.3M, 1M and
    2M sentences gave 1.208, 1.207 and 1.207 pieces per word, and 2M still
    costs only ~25 s;
  * byte_fallback from 4,096 pieces on: it costs 0.2% more pieces per word at
    32k, 0.6% at 8k, but 2.9% at 2k and 6.6% at 1k;
  * num_threads 2 (the machine's cores): 22 s, with 1 thread 30 s;
  * the sentences go to the trainer through a temporary text file beside the
    vocabulary (20 s for 2M sentences, 8 s of it writing), not
    sentence_iterator (28 s): the C++ reader beats a Python generator.
"""

import glob
import io
import os
import re
import time

from absl import logging
import tensorflow as tf
import tensorflow_text as tf_text

from t2t_vqem import files
from t2t_vqem.problems import vocab as vocab_lib

SUFFIX = vocab_lib.SENTENCEPIECE_SUFFIX
RESERVED_PIECES = ("<pad>", "</s>", "<unk>")  # ids PAD_ID, EOS_ID, UNK_ID
MODEL_TYPE = "bpe"
BYTE_FALLBACK_MIN_SIZE = 4096
SAMPLE_SENTENCES = 2_000_000
PROGRESS_EVERY = 500_000  # sentences between two progress lines while reading
UNK_SURFACE = "\u2047"  # what UNK detokenizes as (SentencePiece's default has spaces around it)


def normalize(text):
  """String tensor -> the same with runs of ASCII whitespace made one space, ends stripped."""
  return tf.strings.regex_replace(tf.strings.strip(text), r"\s+", " ")


def trainer_settings(vocab_size):
  """The SentencePieceTrainer arguments for a vocabulary of about `vocab_size` pieces.

  See the module docstring for why each is what it is. hard_vocab_limit=False:
  a corpus too small for vocab_size gives fewer pieces instead of an error.
  """
  byte_fallback = vocab_size >= BYTE_FALLBACK_MIN_SIZE
  return dict(
    model_type=MODEL_TYPE,
    vocab_size=vocab_size,
    hard_vocab_limit=False,
    pad_id=vocab_lib.PAD_ID,
    eos_id=vocab_lib.EOS_ID,
    unk_id=vocab_lib.UNK_ID,
    bos_id=-1,
    unk_surface=UNK_SURFACE,
    normalization_rule_name="identity",
    byte_fallback=byte_fallback,
    character_coverage=0.9995 if byte_fallback else 1.0,
    input_sentence_size=SAMPLE_SENTENCES,
    shuffle_input_sentence=True,
    num_threads=2,
    minloglevel=1,  # the trainer's warnings, not its INFO lines for every merge
  )


def _write_sentences(texts, path):
  """Writes the strings of `texts` (a tf.data.Dataset of strings, scalars or vectors)
  to `path` one a line, whitespace-normalised; returns how many."""
  if texts.element_spec.shape.rank == 0:
    texts = texts.batch(4096)
  texts = texts.map(normalize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
  count, start, next_line = 0, time.time(), PROGRESS_EVERY
  with open(path, "wb") as f:
    for batch in texts.as_numpy_iterator():
      batch = [s for s in batch if s]
      if batch:
        f.write(b"\n".join(batch) + b"\n")
      count += len(batch)
      if count >= next_line:
        logging.info("Read %d sentences for the vocabulary in %.0f s", count, time.time() - start)
        next_line += PROGRESS_EVERY
  return count


def _train(sentences_path, vocab_size):
  """The serialized model learnt from the sentences file; ValueError when it cannot be."""
  import sentencepiece as spm
  from sentencepiece import sentencepiece_model_pb2

  out = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
      input=sentences_path, model_writer=out, **trainer_settings(vocab_size)
    )
  except RuntimeError as e:
    needed = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(e))
    if needed:
      raise ValueError(
        f"vocab_size={vocab_size} is smaller than the {needed.group(1)} pieces the training "
        "text needs (one per distinct character, the 3 reserved ones, and 256 byte pieces "
        f"from vocab_size {BYTE_FALLBACK_MIN_SIZE} on); use vocab_size >= {needed.group(1)}"
      ) from None
    raise ValueError(f"SentencePiece could not learn a vocabulary: {e}") from None
  model = sentencepiece_model_pb2.ModelProto.FromString(out.getvalue())
  # The trainer records its input file; the temporary path would differ on every learning.
  model.trainer_spec.ClearField("input")
  return model.SerializeToString()


def learn_vocab(texts, vocab_size, path):
  """Learns a SentencePiece vocabulary of at most `vocab_size` pieces; writes it to `path`.

  Args:
    texts: a tf.data.Dataset of strings (scalars or vectors of them): source and
      target sentences.
    vocab_size: the target size; a small corpus gives fewer pieces.
    path: the model file to write (atomically).
  Returns:
    the SentencePieceVocab read back from `path`.
  """
  start = time.time()
  sentences_path = f"{path}.sentences-{os.getpid()}.txt"
  for stale in glob.glob(glob.escape(path) + ".sentences-*.txt"):  # a killed learner's
    os.remove(stale)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  try:
    count = _write_sentences(texts, sentences_path)
    if not count:
      raise ValueError("no text to learn the vocabulary from: every sentence read is empty")
    read = time.time() - start
    logging.info(
      "Training a SentencePiece %s vocabulary on %d sentences (%.0f s to read them)",
      MODEL_TYPE,
      min(count, SAMPLE_SENTENCES),
      read,
    )
    model = _train(sentences_path, vocab_size)
  finally:
    if os.path.exists(sentences_path):
      os.remove(sentences_path)
  files.write_bytes(path, model)
  vocab = SentencePieceVocab(path)
  logging.info(
    "Learnt %d pieces from %d sentences in %.0f s", vocab.size, count, time.time() - start
  )
  return vocab


def tokenizer(model):
  """The tf.text tokenizer of a serialized SentencePiece model (bytes), int32 ids."""
  return tf_text.SentencepieceTokenizer(model=model, out_type=tf.int32)


def check_reserved(sp, where):
  """Fails unless the tokenizer's first pieces are RESERVED_PIECES; returns all pieces."""
  pieces = [p.decode("utf-8") for p in sp.id_to_string(tf.range(sp.vocab_size())).numpy()]
  if tuple(pieces[:3]) != RESERVED_PIECES:
    raise ValueError(
      f"SentencePiece model {where!r} must have the pieces {list(RESERVED_PIECES)} as ids "
      f"0, 1, 2 (learnt with pad_id=0, eos_id=1, unk_id=2), found {pieces[:3]}"
    )
  return pieces


def piece_ids(sp, text):
  """String tensor [B] -> ragged int32 ids [B, (pieces)], no EOS."""
  return sp.tokenize(normalize(text))


def pieces_text(sp, ids):
  """Int ids [B, L] (PAD-padded, may contain EOS) -> strings [B]: what comes before the
  first EOS, PAD dropped; UNK shows as UNK_SURFACE."""
  return sp.detokenize(vocab_lib.ids_before_eos(ids))


class SentencePieceVocab(vocab_lib.TextCodec):
  """A SentencePiece model file as a vocabulary: `tokenize`, `detokenize`, `size`, `path`."""

  def __init__(self, path):
    with open(path, "rb") as f:
      self.model = f.read()
    self.path = path
    self._sp = tokenizer(self.model)
    self.tokens = check_reserved(self._sp, path)  # the pieces, by id
    self.size = len(self.tokens)

  def tokenize(self, text):
    """String tensor [B] -> ragged int32 ids [B, (pieces)], no EOS."""
    return piece_ids(self._sp, text)

  def detokenize(self, ids):
    """Int ids [B, L] -> strings [B] (see `pieces_text`)."""
    return pieces_text(self._sp, tf.convert_to_tensor(ids))
