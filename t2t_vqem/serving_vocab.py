"""The vocabulary inside a serving SavedModel: tokenize for the model, detokenize its output.

`asset_vocab(path)` gives the serving vocabulary of a vocabulary file, of the
type its name tells (t2t_vqem.problems.vocab.vocab_type_of):

  * WordPiece (`*.txt`): `AssetVocab`, its two lookup tables initialised from
    the file as a SavedModel asset when the SavedModel is loaded;
  * SentencePiece (`*.model`): `SentencePieceAssetVocab`, the model's bytes a
    constant of the graph (tf.text's SentencepieceTokenizer takes the model
    itself, not a file), the file also an asset for tools that read it.

Either way the SavedModel names no absolute path (it can be moved or copied)
and needs only tensorflow and tensorflow_text to load. Both give

  tokenize(text [B], max_length) -> (ids int32 [B, S] PAD-padded, each row
      at most max_length - 1 subwords then EOS; nonempty bool [B], True where
      the text is not empty or only whitespace)
  detokenize(ids [B, L]) -> strings [B], as the training vocabulary's
"""

import tensorflow as tf

from t2t_vqem.problems import sentencepiece_vocab
from t2t_vqem.problems import vocab as vocab_lib


def _with_eos(ids, text, max_length):
  """Ragged ids [B, (n)] -> (dense ids [B, S], nonempty [B]): see the module docstring."""
  ids = ids[:, : max_length - 1]
  eos = tf.fill([ids.nrows(), 1], vocab_lib.EOS_ID)
  ids = tf.concat([ids, tf.RaggedTensor.from_tensor(eos)], axis=1)
  nonempty = tf.strings.length(tf.strings.strip(text)) > 0
  return ids.to_tensor(default_value=vocab_lib.PAD_ID), nonempty


class AssetVocab(tf.Module):
  """`Vocab`'s tokenization and detokenization over lookup tables read from an asset.

  Same text processing as t2t_vqem.problems.vocab.Vocab (`split_words`, then
  WordPiece; detokenization joins pieces, drops "##" and turns MARK into a
  space), but both tables are initialised from the vocabulary file as a
  SavedModel asset instead of constants, so the SavedModel is relocatable.
  """

  def __init__(self, path):
    super().__init__(name="vocab")
    self.size = len(vocab_lib.read_tokens(path))
    self.asset = tf.saved_model.Asset(path)
    lines = tf.lookup.TextFileIndex.LINE_NUMBER
    whole = tf.lookup.TextFileIndex.WHOLE_LINE
    self.token_to_id = tf.lookup.StaticHashTable(
      tf.lookup.TextFileInitializer(
        self.asset, tf.string, whole, tf.int64, lines, vocab_size=self.size
      ),
      default_value=vocab_lib.UNK_ID,
    )
    self.id_to_token = tf.lookup.StaticHashTable(
      tf.lookup.TextFileInitializer(
        self.asset, tf.int64, lines, tf.string, whole, vocab_size=self.size
      ),
      default_value=vocab_lib.UNK,
    )
    self._wordpiece = vocab_lib.wordpiece_tokenizer(self.token_to_id)

  def tokenize(self, text, max_length):
    """Strings [B] -> (ids [B, S], nonempty [B]); see the module docstring."""
    return _with_eos(vocab_lib.wordpiece_ids(self._wordpiece, text), text, max_length)

  def detokenize(self, ids):
    """Int ids [B, L] (PAD-padded, may contain EOS) -> strings [B], as Vocab.detokenize."""
    return vocab_lib.join_pieces(ids, lambda flat: self.id_to_token.lookup(tf.cast(flat, tf.int64)))


class SentencePieceAssetVocab(tf.Module):
  """SentencePieceVocab's tokenization and detokenization, the model a graph constant.

  The model file is also kept as a SavedModel asset (assets/vocab.*.model), so
  the export carries its vocabulary as a file, as a WordPiece export does.
  """

  def __init__(self, path):
    super().__init__(name="vocab")
    with open(path, "rb") as f:
      model = f.read()
    self.asset = tf.saved_model.Asset(path)
    self._sp = sentencepiece_vocab.tokenizer(model)
    self.size = len(sentencepiece_vocab.check_reserved(self._sp, path))

  def tokenize(self, text, max_length):
    """Strings [B] -> (ids [B, S], nonempty [B]); see the module docstring."""
    return _with_eos(sentencepiece_vocab.piece_ids(self._sp, text), text, max_length)

  def detokenize(self, ids):
    """Int ids [B, L] (PAD-padded, may contain EOS) -> strings [B], as
    SentencePieceVocab.detokenize."""
    return sentencepiece_vocab.pieces_text(self._sp, ids)


def asset_vocab(path):
  """The serving vocabulary of the vocabulary file `path` (see the module docstring)."""
  if vocab_lib.vocab_type_of(path) == "sentencepiece":
    return SentencePieceAssetVocab(path)
  return AssetVocab(path)
