"""The embedded default translation problem: needs no download and no file."""

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
  ):
    super().__init__(data_dir, vocab_size, max_length, vocab_sample_size)
    self.seed, self.num_train, self.num_eval = seed, num_train, num_eval

  @property
  def problem_dir(self):
    # The vocabulary depends on the generated corpus, so the corpus settings
    # are part of where it is cached.
    return super().problem_dir + f"-s{self.seed}-n{self.num_train}"

  def text_pairs(self, split):
    problem.check_split(split)
    pairs = grammar.generate_pairs(
      split, seed=self.seed, num_train=self.num_train, num_eval=self.num_eval
    )
    sources, targets = zip(*pairs)
    return tf.data.Dataset.from_tensor_slices((list(sources), list(targets)))
