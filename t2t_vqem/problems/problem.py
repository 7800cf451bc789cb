"""Problem base classes: a data set with splits, a vocabulary and its batching.

A Problem turns raw data into batched `tf.data` pipelines of int32 features
{"inputs": [B, S], "targets": [B, T]} (PAD = 0, every row ends with EOS = 1).
Everything that depends on the kind of data is the problem's: the features
that build a model (`dummy_features`), what a batch is measured in
(`batch_amount`, `batch_items`, `item_unit`), and what an evaluation adds to
the losses (`output_metrics`, `output_pictures`, `reports_test_results`).
Problems drive a model only through its declared interface
(`t2t_vqem.registry.model_interface`); the trainer and Gin wire the two.

`Problem.fingerprint()` describes the data a problem reads (a run records it);
the one cache under data_dir, a text problem's vocabulary, is keyed by and
checked against the fingerprint of what it is learnt from (`TranslationProblem.vocab`).
"""

import functools
import hashlib
import json
import os

from absl import logging
import tensorflow as tf

from t2t_vqem import constants
from t2t_vqem import decode
from t2t_vqem import files
from t2t_vqem import metrics
from t2t_vqem import registry
from t2t_vqem.problems import sentencepiece_vocab
from t2t_vqem.problems import vocab as vocab_lib

SPLITS = constants.SPLITS
DATA_DIR_ENV = "T2T_VQEM_DATA_DIR"
# vocab_type -> (its module, whose learn_vocab(texts, size, path) learns one; its file suffix)
VOCAB_TYPES = {
  "sentencepiece": (sentencepiece_vocab, sentencepiece_vocab.SUFFIX),
  "wordpiece": (vocab_lib, ".txt"),
}
LEGACY_VOCAB_TYPE = "wordpiece"  # the only type before vocab_type existed


def default_data_dir():
  return os.environ.get(DATA_DIR_ENV, os.path.join("~", "t2t_vqem_data"))


def check_split(split):
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; accepted splits: {', '.join(SPLITS)}")


file_sha256 = files.sha256  # the one place that hashes a file


def json_digest(value):
  """A short digest (12 hex digits) of a JSON-serialisable value, the same in any process."""
  text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
  return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def differing_fields(found, expected):
  """The sorted keys whose values differ between two dicts (a key missing in one differs)."""
  return sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))


def bucket_boundaries(max_length, min_length=8, step=1.1):
  """Geometric length-bucket boundaries (Tensor2Tensor's), ending at max_length."""
  boundaries, x = [], min_length
  while x < max_length:
    boundaries.append(x)
    x = max(x + 1, int(x * step))
  return boundaries


class Problem:
  """A data set with train/dev/test splits stored under data_dir/<name>.

  Subclasses supply the data (`examples`, `batches`) and the methods below
  that say how a model is built, batched and evaluated on it.
  """

  registered_name = None  # set by the registry
  item_unit = "examples"  # what `batch_items` counts, as the progress line names it
  # Whether the trainer's entry point evaluates the test split after training
  # and writes OUTPUT_DIR/test_results.json.
  reports_test_results = False

  def __init__(self, data_dir=None):
    self.data_dir = os.path.expanduser(data_dir or default_data_dir())

  def split_fingerprint(self, split):
    """A small JSON dict identifying the data of `split`, or None when the problem cannot say.

    Subclasses describe their data: file paths, sizes and content hashes, generator
    parameters, or a dataset's name and version. The same data gives the same dict
    in any process (no timestamps); content hashes are computed once per instance.
    """
    del split
    return None

  def fingerprint(self):
    """A small JSON-serialisable dict describing the data this problem reads.

    {"problem": name, "train"/"dev"/"test": `split_fingerprint(split)`}, plus
    what a subclass adds (text problems: the settings that change their
    examples). Same data and settings give an equal dict in any process; a run
    records it (run_info.json) to refuse a resume on other data.
    """
    fingerprint = {"problem": self.name}
    fingerprint.update({split: self.split_fingerprint(split) for split in SPLITS})
    return fingerprint

  def dummy_features(self):
    """A one-example batch that builds every weight of a model for this problem."""
    raise NotImplementedError(f"{type(self).__name__} does not define dummy_features()")

  def batch_amount(self, batch_tokens, batch_size):
    """Which of the Trainer's batch_tokens and batch_size `batches` takes."""
    raise NotImplementedError(f"{type(self).__name__} does not define batch_amount()")

  def batch_items(self, features):
    """What the progress line counts in a batch (float32 scalar): here its examples."""
    return tf.cast(tf.shape(features["targets"])[0], tf.float32)

  def output_metrics(self, model, split, count):
    """Metrics of the model's outputs on the first `count` examples of `split`."""
    del model, split, count
    return {}

  def output_pictures(self, model, split, count, seed):
    """{name: uint8 picture [H, W, 3]} showing the model's outputs on `split`."""
    del model, split, count, seed
    return {}

  def results_line(self, results):
    """An evaluation's results on one line."""
    return "  ".join(f"{k} {v:.4f}" for k, v in sorted(results.items()))

  @property
  def name(self):
    return self.registered_name or type(self).__name__

  @property
  def problem_dir(self):
    return os.path.join(self.data_dir, self.name)


class TranslationProblem(Problem):
  """Source -> target text pairs with a shared subword vocabulary.

  Subclasses implement `text_pairs(split)` and `split_fingerprint(split)`.

  Args:
    data_dir: where the vocabulary (and any prepared data) is cached.
    vocab_size: target size of the shared subword vocabulary (a small corpus
      may give fewer; the model gets the learnt size, `vocab.size`).
    max_length: training and dev-loss examples longer than this (in subwords,
      EOS included) are dropped.
    vocab_sample_size: at most this many training pairs are read to learn the
      vocabulary.
    vocab_type: 'sentencepiece' (SentencePiece BPE, 32k pieces learnt from 1M
      pairs in 40 s, t2t_vqem.problems.sentencepiece_vocab) or 'wordpiece'
      (tensorflow-text's WordPiece, ~100 sentences/s: hours for 1M pairs; what
      runs made before this setting existed use, so they keep their ids).
  """

  modality = "text"
  item_unit = "tokens"

  def __init__(
    self,
    data_dir=None,
    vocab_size=32000,
    max_length=256,
    vocab_sample_size=1_000_000,
    vocab_type="sentencepiece",
  ):
    super().__init__(data_dir)
    if vocab_size < 16:
      raise ValueError(f"vocab_size={vocab_size} is too small; use at least 16")
    if vocab_type not in VOCAB_TYPES:
      raise ValueError(
        f"vocab_type={vocab_type!r} is not a vocabulary type; accepted: 'sentencepiece' "
        "(the default) or 'wordpiece' (for runs made with a WordPiece vocabulary)"
      )
    self.vocab_type = vocab_type
    self.vocab_size = vocab_size
    self.max_length = max_length
    self.vocab_sample_size = vocab_sample_size
    self._fitting = set()  # splits known to hold a pair of at most max_length subwords

  def text_pairs(self, split):
    """A tf.data.Dataset of (source, target) scalar string pairs."""
    raise NotImplementedError

  def split_fingerprint(self, split):
    """A small JSON dict identifying the pairs of `split` (see Problem.split_fingerprint)."""
    raise NotImplementedError(
      f"{type(self).__name__} does not define split_fingerprint(), which keys its "
      "vocabulary cache and its runs to the data"
    )

  def fingerprint(self):
    """Problem.fingerprint plus the settings that change the examples and the vocabulary.

    vocab_type is left out when it is 'wordpiece' (see `_vocab_settings`).
    """
    fingerprint = super().fingerprint()
    fingerprint.update(self._vocab_settings(), max_length=self.max_length)
    return fingerprint

  def _vocab_settings(self):
    """vocab_size, vocab_sample_size and vocab_type, the settings the vocabulary depends on.

    vocab_type is left out when it is 'wordpiece', the only type before the
    setting existed: a run (and a cached vocabulary) of an older version
    recorded none, and must still match with vocab_type='wordpiece'.
    """
    settings = {"vocab_size": self.vocab_size, "vocab_sample_size": self.vocab_sample_size}
    if self.vocab_type != LEGACY_VOCAB_TYPE:
      settings["vocab_type"] = self.vocab_type
    return settings

  def describe(self, split):
    """Where the pairs of `split` come from, for messages."""
    return f"problem {self.name}"

  def setting(self, name):
    """The Gin name of one of this problem's settings, e.g. 'translate_tsv.max_length'."""
    return f"{self.name}.{name}"

  def model_kwargs(self):
    """What a model needs to know of this problem."""
    return {"vocab_size": self.vocab.size}

  def dummy_features(self):
    return {
      "inputs": tf.constant([[3, constants.EOS_ID]], tf.int32),
      "targets": tf.constant([[3, constants.EOS_ID]], tf.int32),
    }

  def batch_amount(self, batch_tokens, batch_size):
    del batch_size
    return batch_tokens

  def batch_items(self, features):
    """The batch's target tokens (EOS included, padding not)."""
    return tf.reduce_sum(tf.cast(features["targets"] != constants.PAD_ID, tf.float32))

  def output_metrics(self, model, split, count):
    """Greedy BLEU on the first `count` sentences of `split`; for a latent model also BLEU
    with the latents from the target encoder (teacher forced)."""
    if not count:
      return {}
    sources, references = self.sources_and_references(split, count)
    hypotheses = decode.translate(model, self.vocab, sources, beam_size=1)
    results = {"bleu_greedy": metrics.corpus_bleu(hypotheses, references)[0]}
    if registry.model_interface(model) == "latent_translation":
      hypotheses = decode.reconstruct(model, self.vocab, sources, references)
      results["bleu_teacher_forced"] = metrics.corpus_bleu(hypotheses, references)[0]
    return results

  def vocab_key(self):
    """What the vocabulary is learnt from: the training data (not where it lies) and settings."""
    train = dict(self.split_fingerprint(constants.TRAIN) or {})
    train.pop("path", None)  # moved data teaches the same vocabulary
    return dict({"problem": self.name, "train": train}, **self._vocab_settings())

  def _vocab_paths(self, key):
    """(keyed, unkeyed): the vocabulary file of `key` (a vocab_key()), and an older
    version's (WordPiece only: None for another vocab_type)."""
    suffix = VOCAB_TYPES[self.vocab_type][1]
    keyed = os.path.join(self.problem_dir, f"vocab.{self.vocab_size}.{json_digest(key)}{suffix}")
    if self.vocab_type != LEGACY_VOCAB_TYPE:
      return keyed, None
    return keyed, os.path.join(self.problem_dir, f"vocab.{self.vocab_size}.txt")

  @property
  def vocab_path(self):
    """problem_dir/vocab.<vocab_size>.<digest of vocab_key()>.<model|txt> (see `vocab`).

    With vocab_type 'wordpiece', an older version's unkeyed vocab.<vocab_size>.txt
    is used instead while no keyed file exists.
    """
    keyed, unkeyed = self._vocab_paths(self.vocab_key())
    if not os.path.exists(keyed) and unkeyed and os.path.exists(unkeyed):
      return unkeyed
    return keyed

  @functools.cached_property
  def vocab(self):
    """The shared vocabulary, learnt from the training split on first use and cached.

    The cache is keyed by what it is learnt from: its name holds a digest of
    `vocab_key()` (the training data's fingerprint, vocab_size,
    vocab_sample_size and vocab_type) and ends in the type's suffix (.model,
    .txt), so other data or settings never share a file, and
    `vocab_record_path` beside it records that key and the vocabulary's
    sha256. A cached file whose record is missing, unreadable or disagrees
    (a corrupted or edited cache, or a learning killed before its record was
    written) is learnt again, with a warning naming what differs. An older
    version's unkeyed vocab.<vocab_size>.txt has no record: it is used with a
    warning that it cannot be checked against the data (delete it to learn the
    vocabulary again); it is WordPiece, so only vocab_type 'wordpiece' uses it.
    """
    key = self.vocab_key()
    path, unkeyed = self._vocab_paths(key)
    module = VOCAB_TYPES[self.vocab_type][0]
    if not os.path.exists(path) and unkeyed and os.path.exists(unkeyed):
      path = unkeyed
      logging.warning(
        "Vocabulary %s was cached by an older version, with no record of the data it was "
        "learnt from, so it cannot be checked against %s's data; using it as it is "
        "(delete it to learn the vocabulary again)",
        path,
        self.name,
      )
      return vocab_lib.Vocab(path)
    if os.path.exists(path):
      fault = vocab_cache_fault(path, key)
      if fault is None:
        return load_vocab(path)
      logging.warning("Vocabulary cache %s %s; learning it again", path, fault)
    logging.info(
      "Learning a %d-token %s vocabulary for %s from at most %d training pairs into %s",
      self.vocab_size,
      "SentencePiece" if self.vocab_type == "sentencepiece" else "WordPiece",
      self.name,
      self.vocab_sample_size,
      path,
    )
    pairs = self.text_pairs("train").take(self.vocab_sample_size)
    if self.vocab_type == LEGACY_VOCAB_TYPE:  # fed as it always was
      texts = pairs.flat_map(lambda s, t: tf.data.Dataset.from_tensor_slices(tf.stack([s, t])))
    else:  # batches of sentences: a flat_map of a dataset per pair costs ~70 us a pair
      texts = pairs.batch(1024).map(lambda s, t: tf.concat([s, t], 0))
    vocab = module.learn_vocab(texts, self.vocab_size, path)
    record = {"learnt_from": key, "sha256": file_sha256(path)}
    files.write_json(vocab_record_path(path), record)
    return vocab

  def examples(self, split, drop_long=True, shard=None):
    """Unbatched {"inputs", "targets"} int32 id sequences, each ending with EOS.

    shard: (n, i) keeps only every n-th pair from the i-th on, before any
    tokenization (one worker's share); None keeps all.
    """
    check_split(split)
    vocab = self.vocab
    eos = tf.constant([constants.EOS_ID], tf.int32)

    def encode(sources, targets):
      return {"inputs": vocab.tokenize(sources), "targets": vocab.tokenize(targets)}

    pairs = self.text_pairs(split)
    if shard:
      pairs = pairs.shard(*shard)
    ds = pairs.batch(256).map(encode, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.unbatch().map(lambda f: {k: tf.concat([v, eos], 0) for k, v in f.items()})
    if drop_long:
      ds = ds.filter(
        lambda f: tf.logical_and(
          tf.size(f["inputs"]) <= self.max_length, tf.size(f["targets"]) <= self.max_length
        )
      )
    return ds

  def check_fits(self, split):
    """Fails unless some pair of `split` fits max_length (else no batch would ever come).

    Reads the split only until the first pair that fits (at once on any usable
    data; a whole pass only when none fits), once per split and instance.
    """
    if split in self._fitting:
      return
    lengths = self.examples(split, drop_long=False).map(
      lambda f: tf.maximum(tf.size(f["inputs"]), tf.size(f["targets"]))
    )
    shortest = None
    for batch in lengths.batch(1024).as_numpy_iterator():
      if batch.min() <= self.max_length:
        self._fitting.add(split)
        return
      low = int(batch.min())
      shortest = low if shortest is None else min(shortest, low)
    if shortest is None:
      raise ValueError(f"the {split} split of {self.describe(split)} has no pairs")
    raise ValueError(
      f"no {split} pair of {self.describe(split)} fits max_length={self.max_length} "
      f"(the shortest has {shortest} subwords, EOS included); raise "
      f"{self.setting('max_length')} to at least {shortest}"
    )

  def batches(
    self, split, batch_tokens, shuffle=False, repeat=False, num_replicas=1, seed=None, shard=None
  ):
    """Length-bucketed batches of about `batch_tokens` tokens (little padding).

    Each bucket's batch size is a multiple of num_replicas, so a distributed
    step splits every batch evenly. shard: (n, i), one worker's share of the
    pairs (see `examples`). batch_tokens must hold one example of
    max_length subwords per replica, and some pair of the split must fit
    max_length (`check_fits`); else a ValueError says what is accepted.
    """
    smallest = self.max_length * num_replicas
    if batch_tokens < smallest:
      raise ValueError(
        f"batch_tokens={batch_tokens} cannot hold one example of max_length={self.max_length} "
        f"subwords on each of {num_replicas} replica(s); use batch_tokens >= {smallest} "
        f"(max_length x replicas) or lower {self.setting('max_length')}"
      )
    self.check_fits(split)
    boundaries = bucket_boundaries(self.max_length)
    sizes = [
      batch_tokens // bound // num_replicas * num_replicas
      for bound in boundaries + [self.max_length]
    ]
    ds = self.examples(split, shard=shard)
    if shuffle:
      ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    if repeat:
      ds = ds.repeat()
    length = lambda f: tf.maximum(tf.size(f["inputs"]), tf.size(f["targets"]))
    ds = ds.bucket_by_sequence_length(length, boundaries, sizes, drop_remainder=repeat)
    return ds.prefetch(tf.data.AUTOTUNE)

  def sources_and_references(self, split, limit=None):
    """The raw (untokenized) sources and references of a split, as Python strings."""
    check_split(split)
    pairs = self.text_pairs(split)
    if limit:
      pairs = pairs.take(limit)
    sources, references = [], []
    for s, t in pairs.as_numpy_iterator():
      sources.append(s.decode("utf-8"))
      references.append(t.decode("utf-8"))
    return sources, references


def load_vocab(path):
  """The vocabulary in the file `path`, of the type its name tells (`vocab.vocab_type_of`)."""
  if vocab_lib.vocab_type_of(path) == "sentencepiece":
    return sentencepiece_vocab.SentencePieceVocab(path)
  return vocab_lib.Vocab(path)


def vocab_record_path(vocab_path):
  """Where the record of what a cached vocabulary was learnt from lies: <name>.json beside it."""
  return os.path.splitext(vocab_path)[0] + ".json"


def vocab_cache_fault(vocab_path, key):
  """Why the cached vocabulary at `vocab_path` is not the one learnt from `key`, or None."""
  record_path = vocab_record_path(vocab_path)
  if not os.path.exists(record_path):
    return f"has no record {record_path} of what it was learnt from"
  try:
    record = files.read_json(record_path)
  except (OSError, ValueError) as e:
    return f"has an unreadable record {record_path} ({e})"
  found = record.get("learnt_from") if isinstance(record, dict) else None
  differ = differing_fields(found if isinstance(found, dict) else {}, json.loads(json.dumps(key)))
  if differ:
    return (
      f"was recorded in {record_path} as learnt from other data (differing: {', '.join(differ)})"
    )
  if record.get("sha256") != file_sha256(vocab_path):
    return f"was changed after it was learnt (its sha256 is not the one in {record_path})"
  return None
