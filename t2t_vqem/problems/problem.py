"""Problem base classes: a data set with splits, a vocabulary and its batching.

A Problem turns raw data into batched `tf.data` pipelines of int32 features
{"inputs": [B, S], "targets": [B, T]} (PAD = 0, every row ends with EOS = 1).
Everything that depends on the kind of data is the problem's: the features
that build a model (`dummy_features`), what a batch is measured in
(`batch_amount`, `batch_items`, `item_unit`), and what an evaluation adds to
the losses (`output_metrics`, `output_pictures`, `reports_test_results`).
Problems drive a model only through its declared interface
(`t2t_vqem.registry.model_interface`); the trainer and Gin wire the two.
"""

import functools
import os

from absl import logging
import tensorflow as tf

from t2t_vqem import constants
from t2t_vqem import decode
from t2t_vqem import metrics
from t2t_vqem import registry
from t2t_vqem.problems import vocab as vocab_lib

SPLITS = constants.SPLITS
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
  item_unit = "tokens"

  def __init__(self, data_dir=None, vocab_size=32000, max_length=256, vocab_sample_size=1_000_000):
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

  @property
  def vocab_path(self):
    return os.path.join(self.problem_dir, f"vocab.{self.vocab_size}.txt")

  @functools.cached_property
  def vocab(self):
    """The shared vocabulary, learnt from the training split on first use."""
    if not os.path.exists(self.vocab_path):
      logging.info(
        "Learning a %d-token WordPiece vocabulary for %s from at most %d training pairs into %s",
        self.vocab_size,
        self.name,
        self.vocab_sample_size,
        self.vocab_path,
      )
      pairs = self.text_pairs("train").take(self.vocab_sample_size)
      texts = pairs.flat_map(lambda s, t: tf.data.Dataset.from_tensor_slices(tf.stack([s, t])))
      return vocab_lib.learn_vocab(texts, self.vocab_size, self.vocab_path)
    return vocab_lib.Vocab(self.vocab_path)

  def examples(self, split, drop_long=True):
    """Unbatched {"inputs", "targets"} int32 id sequences, each ending with EOS."""
    check_split(split)
    vocab = self.vocab
    eos = tf.constant([constants.EOS_ID], tf.int32)

    def encode(sources, targets):
      return {"inputs": vocab.tokenize(sources), "targets": vocab.tokenize(targets)}

    ds = self.text_pairs(split).batch(256).map(encode, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.unbatch().map(lambda f: {k: tf.concat([v, eos], 0) for k, v in f.items()})
    if drop_long:
      ds = ds.filter(
        lambda f: tf.logical_and(
          tf.size(f["inputs"]) <= self.max_length, tf.size(f["targets"]) <= self.max_length
        )
      )
    return ds

  def batches(self, split, batch_tokens, shuffle=False, repeat=False, num_replicas=1, seed=None):
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
