"""A translation problem whose training targets are a teacher's outputs (distillation).

  Trainer.problem = 'translate_distilled'
  translate_distilled.base_problem = 'translate_grammar_ende'
  translate_distilled.distill_dir = 'runs/x/distill'

The train split serves the (source, teacher output) pairs written by
`t2t_vqem.distill`; dev and test are the base problem's, with their gold
references. The vocabulary is the base problem's (the same file), and data
distilled with another vocabulary is refused.
"""

import hashlib
import os

import tensorflow as tf

from t2t_vqem import distill as distill_lib
from t2t_vqem import registry
from t2t_vqem.problems import problem


@registry.register_problem
class TranslateDistilled(problem.TranslationProblem):
  """A base problem with sequence-level distilled training targets (Kim & Rush 2016)."""

  def __init__(self, base_problem=None, distill_dir=None, data_dir=None):
    if not base_problem:
      raise ValueError(
        "translate_distilled.base_problem is not set: name the registered "
        "problem that was distilled, e.g. 'translate_grammar_ende'"
      )
    if base_problem == "translate_distilled":
      raise ValueError("translate_distilled.base_problem cannot be 'translate_distilled'")
    if not distill_dir:
      raise ValueError(
        "translate_distilled.distill_dir is not set: give the directory the "
        "distillation wrote (with info.json and shard-*.tsv)"
      )
    self.base = registry.build_problem(base_problem, data_dir=data_dir)
    base = self.base
    super().__init__(
      base.data_dir, base.vocab_size, base.max_length, base.vocab_sample_size, base.vocab_type
    )
    self.base_problem, self.distill_dir = base_problem, distill_dir
    self._checked = False
    self._digest = None  # (sizes and mtimes of the shards, their sha256)

  @property
  def problem_dir(self):
    return self.base.problem_dir

  @property
  def vocab_path(self):
    return self.base.vocab_path

  @property
  def vocab(self):
    return self.base.vocab

  def split_fingerprint(self, split):
    """train: the distill_dir, its shard count and the sha256 of the shards; else the base's."""
    problem.check_split(split)
    if split != "train":
      return self.base.split_fingerprint(split)
    paths = distill_lib.shard_paths(self.distill_dir)
    status = [(os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths]
    if self._digest is None or self._digest[0] != status:
      digest = hashlib.sha256()
      for path in paths:
        digest.update(problem.file_sha256(path).encode("ascii"))
      self._digest = status, digest.hexdigest()
    return {
      "distill_dir": os.path.abspath(self.distill_dir),
      "shards": len(paths),
      "sha256": self._digest[1],
    }

  def fingerprint(self):
    return dict(super().fingerprint(), base_problem=self.base_problem)

  def describe(self, split):
    return self.distill_dir if split == "train" else self.base.describe(split)

  def setting(self, name):
    # vocab_size, max_length, vocab_sample_size and vocab_type are the base problem's.
    return self.base.setting(name)

  def check(self):
    """Refuses data distilled from another problem, with another vocabulary, or unfinished."""
    if self._checked:
      return
    info = distill_lib.read_info(self.distill_dir)
    if info["problem"] != self.base_problem:
      raise distill_lib.DistillMismatchError(
        f"distilled data in {self.distill_dir!r} comes from problem {info['problem']!r}, "
        f"not translate_distilled.base_problem = {self.base_problem!r}"
      )
    self.vocab  # learns the base vocabulary if needed  # noqa: B018
    distill_lib.check_vocab(info, self.vocab_path, self.distill_dir)
    distill_lib.shard_paths(self.distill_dir)
    self._checked = True

  def text_pairs(self, split):
    problem.check_split(split)
    if split != "train":
      return self.base.text_pairs(split)
    self.check()
    lines = tf.data.TextLineDataset(distill_lib.shard_paths(self.distill_dir))

    def split_line(line):
      fields = tf.strings.split(line, "\t", maxsplit=1)
      return fields[0], fields[1]

    return lines.map(split_line)
