"""WordPiece vocabulary (vocab_type 'wordpiece'), and what every vocabulary type shares.

A vocabulary turns strings into int32 ids and back with tensorflow(-text) ops
only: `tokenize` (strings [B] -> ragged ids, no EOS), `detokenize` (ids [B, L]
-> strings, everything from the first EOS on and PAD dropped), `encode` and
`decode` (one Python string), `size`, `path`, `tokens` (the pieces by id).
Two types exist: SentencePiece (t2t_vqem.problems.sentencepiece_vocab, the
default, a `*.model` file) and the WordPiece vocabulary here (a `*.txt` file),
kept so that runs made with it keep their ids. `vocab_type_of` tells a file's
type by its name.

WordPiece cuts text into words as follows: whitespace is normalised to single spaces,
every word gets the prefix MARK ("\u2581"), punctuation is split off as its own
piece (without MARK, so "dog's" -> "\u2581dog", "'", "s"). Each piece is then
split by WordPiece (continuations carry "##"). Because spaces are carried by
MARK, detokenization is exact up to whitespace normalisation: join the pieces,
drop "##", turn MARK into a space.

The WordPiece vocabulary is learnt with tensorflow-text's vocabulary builder
(82-110 sentences/s on 2 cores in benchmarks/vocab_speed.py: hours for 1M
pairs) and stored one token a line.
"""

import tensorflow as tf
import tensorflow_text as tf_text

from t2t_vqem import constants
from t2t_vqem import files

PAD = "<pad>"
EOS = "<EOS>"
UNK = "[UNK]"
RESERVED_TOKENS = (PAD, EOS, UNK)  # in the order of their ids
PAD_ID, EOS_ID, UNK_ID = constants.PAD_ID, constants.EOS_ID, constants.UNK_ID
MARK = "\u2581"
_PUNCTUATION = r"\p{P}"
SENTENCEPIECE_SUFFIX = ".model"  # a SentencePiece model; any other file is WordPiece tokens


def vocab_type_of(path):
  """'sentencepiece' for a `*.model` file, else 'wordpiece' (one token a line)."""
  return "sentencepiece" if path.endswith(SENTENCEPIECE_SUFFIX) else "wordpiece"


def ids_before_eos(ids):
  """Int ids [B, L] (dense, PAD-padded, may contain EOS) -> ragged int32 [B, (kept)]:
  each row up to its first EOS, PAD ids dropped."""
  ids = tf.cast(ids, tf.int32)
  before_eos = tf.math.cumsum(tf.cast(tf.equal(ids, EOS_ID), tf.int32), axis=-1) == 0
  return tf.ragged.boolean_mask(ids, tf.logical_and(before_eos, tf.not_equal(ids, PAD_ID)))


class TextCodec:
  """`encode` and `decode` of one Python string, over a vocabulary's tokenize/detokenize."""

  def encode(self, sentence):
    """One Python string -> list of ids, no EOS."""
    return self.tokenize(tf.constant([sentence]))[0].numpy().tolist()

  def decode(self, ids):
    """A list of ids -> Python string (stops at EOS)."""
    return self.detokenize(tf.constant([list(ids) or [PAD_ID]]))[0].numpy().decode("utf-8")


def split_words(text):
  """String tensor [B] -> ragged [B, (words)]: MARK-prefixed words, punctuation apart."""
  text = tf.strings.regex_replace(tf.strings.strip(text), r"\s+", " ")
  text = tf.strings.regex_replace(" " + text, " ", " " + MARK)
  return tf_text.regex_split(text, r"\s|" + _PUNCTUATION, _PUNCTUATION)


def learn_vocab(texts, vocab_size, path):
  """Learns a WordPiece vocabulary of about `vocab_size` tokens; writes it to `path`.

  Args:
    texts: a tf.data.Dataset of scalar strings (source and target sentences).
    vocab_size: the target size; the learnt vocabulary may be a little smaller.
    path: file to write (atomically), one token a line, RESERVED_TOKENS first.
  Returns:
    the Vocab read back from `path`.
  """
  from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset

  words = texts.batch(1024).map(
    lambda t: tf.strings.reduce_join(split_words(t), axis=-1, separator=" "),
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  tokens = bert_vocab_from_dataset.bert_vocab_from_dataset(
    words,
    vocab_size=vocab_size,
    reserved_tokens=list(RESERVED_TOKENS),
    bert_tokenizer_params={"lower_case": False},
    learn_params={},
  )
  files.write_text(path, "\n".join(tokens) + "\n")
  return Vocab(path)


def read_tokens(path):
  """The tokens of a vocabulary file, one a line; RESERVED_TOKENS must come first."""
  with open(path, encoding="utf-8") as f:
    tokens = [line.rstrip("\n") for line in f]
  if tuple(tokens[:3]) != RESERVED_TOKENS:
    raise ValueError(
      f"vocabulary {path!r} must start with the reserved tokens "
      f"{list(RESERVED_TOKENS)}, found {tokens[:3]}"
    )
  return tokens


def wordpiece_tokenizer(token_to_id):
  """The WordPiece tokenizer over a lookup table from token strings to int64 ids."""
  return tf_text.WordpieceTokenizer(
    token_to_id,
    suffix_indicator="##",
    max_bytes_per_word=200,
    token_out_type=tf.int64,
    unknown_token=UNK,
  )


def wordpiece_ids(wordpiece, text):
  """String tensor [B] -> ragged int32 ids [B, (pieces)], no EOS (see `split_words`)."""
  return tf.cast(wordpiece.tokenize(split_words(text)).merge_dims(-2, -1), tf.int32)


def join_pieces(ids, id_to_token):
  """Int ids [B, L] (dense, PAD-padded, may contain EOS) -> strings [B].

  Everything from the first EOS on is dropped, as are PAD ids; UNK stays
  visible as "[UNK]". id_to_token maps an int32 id tensor to token strings.
  """
  kept = ids_before_eos(ids)
  pieces = kept.with_flat_values(id_to_token(kept.flat_values))
  pieces = tf.strings.regex_replace(pieces, "^##", "")
  text = tf.strings.reduce_join(pieces, axis=-1)
  return tf.strings.strip(tf.strings.regex_replace(text, MARK, " "))


class Vocab(TextCodec):
  """WordPiece vocabulary with MARK-based reversible detokenization."""

  def __init__(self, path):
    self.tokens = read_tokens(path)
    self.path = path
    self.size = len(self.tokens)
    self._wordpiece = wordpiece_tokenizer(
      tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(self.tokens, tf.range(self.size, dtype=tf.int64)),
        default_value=UNK_ID,
      )
    )
    self._token_strings = tf.constant(self.tokens)

  def tokenize(self, text):
    """String tensor [B] -> ragged int32 ids [B, (pieces)], no EOS."""
    return wordpiece_ids(self._wordpiece, text)

  def detokenize(self, ids):
    """Int ids [B, L] -> strings [B] (see `join_pieces`)."""
    return join_pieces(tf.convert_to_tensor(ids), lambda flat: tf.gather(self._token_strings, flat))
