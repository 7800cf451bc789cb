"""A real English-German parallel corpus from Debian's `trans-de-en` package.

`trans-de-en` (source package `ding`) ships the German-English dictionary of the
Ding project, edited by Frank Richter and contributors at TU Chemnitz
(https://dict.tu-chemnitz.de/), as one file, /usr/share/trans/de-en. Its license
is GPL version 2 or later (the file's header and the package's copyright file).
Each line is `German :: English`, both sides split by ` | ` into aligned
sub-entries; besides words and phrases many sub-entries are example sentences
written and translated by the dictionary's editors, e.g.
`Es war purer Zufall. | It was sheer/pure coincidence.` Only those pairs are
kept where both sides look like a sentence (capital first letter, ends in . ! or
?, at least --min_words words); synonyms after `; ` are dropped (the first kept),
labels such as [ugs.], {adj} and <...> are removed, brackets around optional
words are opened, and pairs with `/` alternatives or etw./sb. placeholders are
dropped. About 17,000 pairs remain, short everyday sentences (8 words on
average).

  python benchmarks/real_corpus.py --output_dir=/tmp/real_corpus

downloads the package with `apt-get download trans-de-en` (or give
--package_file=trans-de-en_1.9-6_all.deb, or a directory it was extracted to)
and writes OUTPUT_DIR/{train,dev,test}.tsv as `source<TAB>target` lines.
"""

import gzip
import os
import re
import subprocess
import tempfile

from absl import app
from absl import flags
import corpus_splits

PACKAGE = "trans-de-en"
DATA_PATH = "usr/share/trans/de-en"
CHANGELOG_PATH = "usr/share/doc/trans-de-en/changelog.Debian.gz"

flags.DEFINE_string("output_dir", "/tmp/real_corpus", "Where {train,dev,test}.tsv go.")
flags.DEFINE_string(
  "package_file",
  None,
  f"The {PACKAGE} .deb or a directory it was extracted to (default: apt-get download).",
)
flags.DEFINE_enum("source_lang", "en", ["en", "de"], "Source side: en (en->de) or de (de->en).")
flags.DEFINE_integer("max_words", 50, "Drop pairs with a side longer than this many words.")
flags.DEFINE_integer("min_words", 3, "Drop pairs with a side shorter than this many words.")
flags.DEFINE_integer("dev_size", 500, "Dev pairs (at most 10% of the corpus).")
flags.DEFINE_integer("test_size", 500, "Test pairs (at most 10% of the corpus).")
flags.DEFINE_integer("seed", 1234, "Shuffle seed.")
FLAGS = flags.FLAGS

SENTENCE = re.compile(r"^[\"'„‚“]?[A-ZÄÖÜ0-9].*[.!?][\"'“”‘’]?$")
LABEL = re.compile(r"\s*(\[[^\]]*\]|\{[^}]*\}|<[^>]*>)")
PLACEHOLDER = re.compile(r"\b(etw|jdm|jdn|jds|jd|sb|sth)\.")


def extract(package_file, tmp):
  """Returns the root of the extracted package (under tmp), downloading it first if not given."""
  if package_file and os.path.isdir(package_file):
    return package_file
  if not package_file:
    subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp, check=True)
    package_file = os.path.join(tmp, [f for f in os.listdir(tmp) if f.endswith(".deb")][0])
  root = os.path.join(tmp, "root")
  subprocess.run(["dpkg-deb", "-x", package_file, root], check=True)
  return root


def clean(side):
  side = side.split("; ")[0]  # the first of several synonyms
  side = LABEL.sub("", side).replace("(", "").replace(")", "")
  return " ".join(side.split())


def read_pairs(path):
  """(german, english) sentence pairs and the file's header fields."""
  header, pairs = {}, []
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.startswith("#"):
        key, _, value = line[1:].partition("::")
        header[key.strip()] = value.strip()
        continue
      if " :: " not in line:
        continue
      german, english = line.rstrip("\n").split(" :: ", 1)
      germans, englishes = german.split(" | "), english.split(" | ")
      if len(germans) != len(englishes):
        continue
      for de, en in zip(map(clean, germans), map(clean, englishes)):
        if not (SENTENCE.match(de) and SENTENCE.match(en)):
          continue
        if "/" in de + en or "~" in de + en or PLACEHOLDER.search(f"{de} {en}"):
          continue
        lengths = (len(de.split()), len(en.split()))
        if min(lengths) < FLAGS.min_words or max(lengths) > FLAGS.max_words:
          continue
        pairs.append((de, en))
  return header, pairs


def main(_):
  with tempfile.TemporaryDirectory(prefix="real_corpus_") as tmp:
    root = extract(FLAGS.package_file, tmp)
    header, pairs = read_pairs(os.path.join(root, DATA_PATH))
    version = "?"
    changelog = os.path.join(root, CHANGELOG_PATH)
    if os.path.exists(changelog):
      with gzip.open(changelog, "rt", encoding="utf-8") as f:
        version = f.readline().split("(")[1].split(")")[0]  # "ding (1.9-6) unstable; ..."
  if FLAGS.source_lang == "en":
    pairs = [(en, de) for de, en in pairs]
  pairs = sorted(set(pairs))
  splits = corpus_splits.write_splits(
    pairs, FLAGS.output_dir, FLAGS.dev_size, FLAGS.test_size, FLAGS.seed
  )
  target_lang = {"en": "de", "de": "en"}[FLAGS.source_lang]
  words = sum(len(s.split()) + len(t.split()) for s, t in pairs) / (2 * len(pairs))
  print(f"package: {PACKAGE} {version} (Ding dictionary {header.get('Version', '?')})")
  print(f"license: {header.get('License', '?')}")
  print(f"languages: {FLAGS.source_lang} -> {target_lang}")
  print(f"pairs: {len(pairs)}, {words:.1f} words a sentence on average")
  for name, split in splits.items():
    print(f"{name}: {len(split)} -> {os.path.join(FLAGS.output_dir, name + '.tsv')}")


if __name__ == "__main__":
  app.run(main)
