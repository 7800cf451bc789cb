"""Problem base classes: a data set with splits, a vocabulary and its batching.

A Problem turns raw data into batched `tf.data` pipelines of int32 features
{"inputs": [B, S], "targets": [B, T]} (PAD = 0, every row ends with EOS = 1).
Problems know nothing of models; the trainer and Gin wire the two.
"""

import functools
import os

from absl import logging
import tensorflow as tf

from t2t_vqem.problems import vocab as vocab_lib

SPLITS = ("train", "dev", "test")
DATA_DIR_ENV = "T2T_VQEM_DATA_DIR"


def default_data_dir():
  return os.environ.get(DATA_DIR_ENV, os.path.join("~", "t2t_vqem_data"))


def check_split(split):
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; accepted splits: {', '.join(SPLITS)}")


def bucket_boundaries(max_length, min_length=8, step=1.1):
  """Geometric length-bucket boundaries (Tensor2Tensor's), ending at max_length."""
  boundaries, x = [], min_length
  while x < max_length:
    boundaries.append(x)
    x = max(x + 1, int(x * step))
  return boundaries


class Problem:
  """A data set with train/dev/test splits stored under data_dir/<name>."""

  registered_name = None  # set by the registry

  def __init__(self, data_dir=None):
    self.data_dir = os.path.expanduser(data_dir or default_data_dir())

  @property
  def name(self):
    return self.registered_name or type(self).__name__

  @property
  def problem_dir(self):
    return os.path.join(self.data_dir, self.name)


class TranslationProblem(Problem):
  """Source -> target text pairs with a shared WordPiece vocabulary.

  Subclasses implement `text_pairs(split)`.

  Args:
    data_dir: where the vocabulary (and any prepared data) is cached.
    vocab_size: target size of the shared subword vocabulary.
    max_length: training and dev-loss examples longer than this (in subwords,
      EOS included) are dropped.
    vocab_sample_size: at most this many training pairs are read to learn the
      vocabulary.
  """

  modality = "text"

  def __init__(self, data_dir=None, vocab_size=32000, max_length=256,
               vocab_sample_size=1_000_000):
    super().__init__(data_dir)
    if vocab_size < 16:
      raise ValueError(f"vocab_size={vocab_size} is too small; use at least 16")
    self.vocab_size = vocab_size
    self.max_length = max_length
    self.vocab_sample_size = vocab_sample_size

  def text_pairs(self, split):
    """A tf.data.Dataset of (source, target) scalar string pairs."""
    raise NotImplementedError

  def model_kwargs(self):
    """What a model needs to know of this problem."""
    return {"vocab_size": self.vocab.size}

  @property
  def vocab_path(self):
    return os.path.join(self.problem_dir, f"vocab.{self.vocab_size}.txt")

  @functools.cached_property
  def vocab(self):
    """The shared vocabulary, learnt from the training split on first use."""
    if not os.path.exists(self.vocab_path):
      logging.info("Learning a %d-token WordPiece vocabulary for %s from at most "
                   "%d training pairs into %s", self.vocab_size, self.name,
                   self.vocab_sample_size, self.vocab_path)
      pairs = self.text_pairs("train").take(self.vocab_sample_size)
      texts = pairs.flat_map(
          lambda s, t: tf.data.Dataset.from_tensor_slices(tf.stack([s, t])))
      return vocab_lib.learn_vocab(texts, self.vocab_size, self.vocab_path)
    return vocab_lib.Vocab(self.vocab_path)

  def examples(self, split, drop_long=True):
    """Unbatched {"inputs", "targets"} int32 id sequences, each ending with EOS."""
    check_split(split)
    vocab = self.vocab
    eos = tf.constant([vocab_lib.EOS_ID], tf.int32)

    def encode(sources, targets):
      return {"inputs": vocab.tokenize(sources), "targets": vocab.tokenize(targets)}

    ds = self.text_pairs(split).batch(256).map(encode, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.unbatch().map(lambda f: {k: tf.concat([v, eos], 0) for k, v in f.items()})
    if drop_long:
      ds = ds.filter(lambda f: tf.logical_and(
          tf.size(f["inputs"]) <= self.max_length,
          tf.size(f["targets"]) <= self.max_length))
    return ds

  def batches(self, split, batch_tokens, shuffle=False, repeat=False,
              num_replicas=1, seed=None):
    """Length-bucketed batches of about `batch_tokens` tokens (little padding).

    Each bucket's batch size is a multiple of num_replicas, so a distributed
    step splits every batch evenly.
    """
    boundaries = bucket_boundaries(self.max_length)
    sizes = []
    for bound in boundaries + [self.max_length]:
      size = max(1, batch_tokens // bound) // num_replicas * num_replicas
      sizes.append(max(size, num_replicas))
    ds = self.examples(split)
    if shuffle:
      ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    if repeat:
      ds = ds.repeat()
    length = lambda f: tf.maximum(tf.size(f["inputs"]), tf.size(f["targets"]))
    ds = ds.bucket_by_sequence_length(length, boundaries, sizes,
                                      drop_remainder=repeat)
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
