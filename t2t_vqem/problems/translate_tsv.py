"""The user's own parallel corpus: `source<TAB>target` lines, one file per split."""

import hashlib
import os

import tensorflow as tf

from t2t_vqem import registry
from t2t_vqem.problems import problem


def check_tsv(path, split):
  """Fails with the file and line number of the first malformed line."""
  if not path:
    raise ValueError(
      f"no TSV file set for the {split!r} split: bind "
      f"translate_tsv.{split}_path in a Gin file or --gin_param"
    )
  if not os.path.isfile(path):
    raise FileNotFoundError(f"TSV file for the {split!r} split not found: {path!r}")
  count = 0
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      line = line.rstrip("\n")
      if not line.strip():
        continue
      fields = line.split("\t")
      if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
        raise ValueError(
          f"{path}:{number}: malformed line (expected 'source<TAB>target', "
          f"found {len(fields)} tab-separated field(s)): {line[:80]!r}"
        )
      count += 1
  if count == 0:
    raise ValueError(f"TSV file for the {split!r} split is empty: {path!r}")


@registry.register_problem
class TranslateTsv(problem.TranslationProblem):
  """Your own parallel corpus: train/dev/test files of source<TAB>target lines."""

  def __init__(
    self,
    train_path=None,
    dev_path=None,
    test_path=None,
    data_dir=None,
    vocab_size=8000,
    max_length=256,
    vocab_sample_size=1_000_000,
  ):
    super().__init__(data_dir, vocab_size, max_length, vocab_sample_size)
    self.paths = {"train": train_path, "dev": dev_path, "test": test_path}
    self._checked = set()
    self._train_digest = None

  @property
  def problem_dir(self):
    # The vocabulary is learned from the training file, so its content is part of
    # where it is cached: another corpus in the same data_dir gets its own.
    if self._train_digest is None:
      check_tsv(self.paths["train"], "train")
      digest = hashlib.sha256()
      with open(self.paths["train"], "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          digest.update(block)
      self._train_digest = digest.hexdigest()[:12]
    return super().problem_dir + f"-{self._train_digest}"

  def text_pairs(self, split):
    problem.check_split(split)
    path = self.paths[split]
    if split not in self._checked:
      check_tsv(path, split)
      self._checked.add(split)
    lines = tf.data.TextLineDataset(path).filter(
      lambda line: tf.strings.length(tf.strings.strip(line)) > 0
    )

    def split_line(line):
      fields = tf.strings.split(line, "\t")
      return tf.strings.strip(fields[0]), tf.strings.strip(fields[1])

    return lines.map(split_line)
