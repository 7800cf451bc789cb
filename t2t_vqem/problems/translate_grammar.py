"""The embedded default translation problem: needs no download and no file."""

import hashlib
import json

import tensorflow as tf

from t2t_vqem import registry
from t2t_vqem.problems import grammar
from t2t_vqem.problems import problem


@registry.register_problem
class TranslateGrammarEnde(problem.TranslationProblem):
  """Embedded English -> German-like corpus from a seeded grammar (no download)."""

  def __init__(
    self,
    data_dir=None,
    vocab_size=2000,
    max_length=64,
    vocab_sample_size=1_000_000,
    seed=1234,
    num_train=60000,
    num_eval=1000,
    vocab_type="sentencepiece",
  ):
    super().__init__(data_dir, vocab_size, max_length, vocab_sample_size, vocab_type)
    self.seed, self.num_train, self.num_eval = seed, num_train, num_eval
    self._digests = {}  # split -> sha256 of its generated pairs

  @property
  def problem_dir(self):
    # The vocabulary depends on the generated corpus, so the corpus settings
    # are part of where it is cached.
    return super().problem_dir + f"-s{self.seed}-n{self.num_train}"

  def _pairs(self, split):
    problem.check_split(split)
    return grammar.generate_pairs(
      split, seed=self.seed, num_train=self.num_train, num_eval=self.num_eval
    )

  def split_fingerprint(self, split):
    """The generator parameters the split depends on, and the sha256 of its pairs.

    The hash makes a change of the grammar's code a change of the data too.
    """
    if split not in self._digests:
      text = json.dumps(self._pairs(split), ensure_ascii=False)
      self._digests[split] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    size = {"num_train": self.num_train} if split == "train" else {"num_eval": self.num_eval}
    return {"seed": self.seed, **size, "sha256": self._digests[split]}

  def text_pairs(self, split):
    sources, targets = zip(*self._pairs(split))
    return tf.data.Dataset.from_tensor_slices((list(sources), list(targets)))
