"""The user's own parallel corpus: `source<TAB>target` lines, one file per split.

Files are UTF-8; a byte-order mark at the start of a line is dropped, Windows
line endings (CRLF) are accepted, blank lines are skipped, and fields are
stripped of ASCII whitespace (as tf.strings.strip does). Any other line must
hold exactly two non-blank tab-separated fields; `check_tsv` names the file
and line of the first that does not.
"""

import codecs
import os

import tensorflow as tf

from t2t_vqem import registry
from t2t_vqem.problems import problem

BOM = codecs.BOM_UTF8.decode("utf-8")
WHITESPACE = " \t\n\r\f\v"  # what tf.strings.strip strips


def check_tsv(path, split):
  """Fails with the file and line number of the first malformed or non-UTF-8 line."""
  if not path:
    raise ValueError(
      f"no TSV file set for the {split!r} split: bind "
      f"translate_tsv.{split}_path in a Gin file or --gin_param"
    )
  if not os.path.isfile(path):
    raise FileNotFoundError(f"TSV file for the {split!r} split not found: {path!r}")
  count = 0
  with open(path, "rb") as f:
    for number, raw in enumerate(f, 1):
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise ValueError(
          f"{path}:{number}: not UTF-8 text (byte {e.start + 1} of the line is "
          f"{raw[e.start : e.start + 1]!r}); translate_tsv reads UTF-8 files only"
        ) from None
      line = line.rstrip("\n").removesuffix("\r").removeprefix(BOM)
      if not line.strip(WHITESPACE):
        continue
      fields = line.split("\t")
      if len(fields) != 2 or not all(field.strip(WHITESPACE) for field in fields):
        raise ValueError(
          f"{path}:{number}: malformed line (expected 'source<TAB>target', "
          f"found {len(fields)} tab-separated field(s)): {line[:80]!r}"
        )
      count += 1
  if count == 0:
    raise ValueError(f"TSV file for the {split!r} split is empty: {path!r}")


def _stat(path):
  """What tells whether a file changed since it was read: (size, mtime in ns)."""
  status = os.stat(path)
  return status.st_size, status.st_mtime_ns


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
    vocab_type="sentencepiece",
  ):
    super().__init__(data_dir, vocab_size, max_length, vocab_sample_size, vocab_type)
    self.paths = {"train": train_path, "dev": dev_path, "test": test_path}
    self._checked = {}  # split -> _stat of the file when check_tsv passed
    self._digests = {}  # split -> (_stat, sha256) of the file when hashed

  def _check(self, split):
    """check_tsv on the split's file, again only when the file changed."""
    path = self.paths[split]
    status = _stat(path) if path and os.path.isfile(path) else None
    if status is None or self._checked.get(split) != status:
      check_tsv(path, split)
      self._checked[split] = status

  def split_fingerprint(self, split):
    """{"path" (absolute), "size", "sha256"} of the split's file; None if no file is set.

    A file that does not exist has size and sha256 None. The hash is computed
    once per instance, again only when the file's size or mtime changes.
    """
    problem.check_split(split)
    path = self.paths[split]
    if not path:
      return None
    if not os.path.isfile(path):
      return {"path": os.path.abspath(path), "size": None, "sha256": None}
    status = _stat(path)
    if self._digests.get(split, (None,))[0] != status:
      self._digests[split] = status, problem.file_sha256(path)
    return {"path": os.path.abspath(path), "size": status[0], "sha256": self._digests[split][1]}

  def describe(self, split):
    return self.paths[split]

  @property
  def problem_dir(self):
    # The vocabulary is learned from the training file, so its content is part of
    # where it is cached: another corpus in the same data_dir gets its own.
    self._check("train")
    return super().problem_dir + "-" + self.split_fingerprint("train")["sha256"][:12]

  def text_pairs(self, split):
    problem.check_split(split)
    self._check(split)
    lines = tf.data.TextLineDataset(self.paths[split])  # drops "\n" and a "\r" before it
    lines = lines.map(lambda line: tf.strings.regex_replace(line, "^" + BOM, ""))
    lines = lines.filter(lambda line: tf.strings.length(tf.strings.strip(line)) > 0)

    def split_line(line):
      fields = tf.strings.split(line, "\t")
      return tf.strings.strip(fields[0]), tf.strings.strip(fields[1])

    return lines.map(split_line)
