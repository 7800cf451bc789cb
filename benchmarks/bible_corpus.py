"""A real English-Spanish parallel corpus: two public-domain Bibles, verse by verse.

Debian's `sword-text-web` ships the World English Bible with Deuterocanon (SWORD module
engWEB2015eb, the 2020 stable text of a modern English translation from eBible.org) and
`sword-text-sparv` the Reina-Valera 1909 Spanish Bible (module spaRV1909eb), both as SWORD modules
in OSIS markup under /usr/share/sword, read here with `pysword`. Both packages' copyright files say
`License: public-domain`: "The World English Bible is in the Public Domain. That means that it is
not copyrighted." ("World English Bible" is a trademark of eBible.org, which asks that a changed
text not be called by that name) and, for the Reina-Valera, "This work is not copyrighted. It is in
the Public Domain. You may copy and publish this work freely, but you may not claim copyright on
it." The Debian packaging itself is GPL-2+.

Verses are paired by reference (book, chapter, verse) in the versification each module declares
(NRSVA and KJV); the deuterocanon is only in the English and drops out. Footnotes, cross references
and variant readings go with their content, the other tags (Strong's numbers are in them) without;
psalm titles stay (the Spanish has them in verse 1 too), and the Spanish edition's capitalised first
word of each chapter (`EN el principio`) is written normally. In a few chapters (Num 13, Job 39-40,
Jonah 2, ...) the Spanish follows the Hebrew numbering: chapters whose verses fit better shifted are
dropped, as is the verse before one that only one side has (it often holds both). Then pairs with a
side under --min_words or over --max_words words, or one side over --max_ratio times longer, and
repeated English verses go. About 28,000 pairs remain, 22 English and 21 Spanish words on average:
modern English against 1909 Spanish (`crió`, `á`).

  python benchmarks/bible_corpus.py --output_dir=runs/bible_corpus

downloads both packages with `apt-get download` (or give --package_dir=DIR, a folder holding the
two .deb files or their extracted trees) and writes OUTPUT_DIR/{train,dev,test}.tsv as
`English<TAB>Spanish` lines, one verse a line.
"""

import collections
import functools
import html
import math
import os
import re
import subprocess
import tempfile

from absl import app
from absl import flags
import corpus_splits
from pysword.modules import SwordModules

PACKAGES = {"en": "sword-text-web", "es": "sword-text-sparv"}
SWORD_PATH = "usr/share/sword"

flags.DEFINE_string("output_dir", "/tmp/bible_corpus", "Where {train,dev,test}.tsv go.")
flags.DEFINE_string(
  "package_dir",
  None,
  "A directory holding the two .deb files or their extracted trees (default: apt-get download).",
)
flags.DEFINE_integer("max_words", 40, "Drop pairs with a side longer than this many words.")
flags.DEFINE_integer("min_words", 3, "Drop pairs with a side shorter than this many words.")
flags.DEFINE_float("max_ratio", 2.0, "Drop pairs with a side this many times longer in words.")
flags.DEFINE_integer("dev_size", 500, "Dev pairs.")
flags.DEFINE_integer("test_size", 500, "Test pairs.")
flags.DEFINE_integer("seed", 1234, "Shuffle seed.")
FLAGS = flags.FLAGS

DROP = re.compile(
  r"<(note|rdg|catchWord)\b.*?</\1>|<title\b(?![^>]*canonical=\"true\")[^>]*>.*?</title>", re.S
)
INLINE = re.compile(r"</?(w|transChange|q|seg|hi|name|divineName|foreign|reference)\b[^>]*>")
TAG = re.compile(r"<[^>]*>")
CAPS = re.compile(r"\b[^\W\d_a-záéíóúñü]{2,}\b(?=[\s,;:.!?]+\w*[a-záéíóúñü]|$)")


def extract(package_dir, tmp):
  """Returns the SWORD library roots (folders holding mods.d/), one per package."""
  if not package_dir:
    package_dir = tmp
    subprocess.run(["apt-get", "download", *PACKAGES.values()], cwd=tmp, check=True)
  roots = {}
  for lang, package in PACKAGES.items():
    trees = [os.path.join(package_dir, package), package_dir]
    root = next((t for t in trees if os.path.isdir(os.path.join(t, SWORD_PATH, "mods.d"))), None)
    if root is None:  # extract the .deb
      deb = [f for f in sorted(os.listdir(package_dir)) if f.startswith(package + "_")][-1]
      root = os.path.join(tmp, package)
      subprocess.run(["dpkg-deb", "-x", os.path.join(package_dir, deb), root], check=True)
    roots[lang] = root
  return roots


def read_module(root, lang):
  """{(book, chapter, verse): raw OSIS text} in the module's own versification, and its conf."""
  modules = SwordModules(os.path.join(root, SWORD_PATH))
  key, conf = next((k, c) for k, c in modules.parse_modules().items() if c.get("lang") == lang)
  bible = modules.get_bible_from_module(key)
  if hasattr(bible, "_decompressed_text"):  # zText: pysword inflates a whole book for each verse
    bible._decompressed_text = functools.lru_cache(maxsize=2)(bible._decompressed_text)
  verses = {}
  for books in bible.get_structure().get_books().values():
    for book in books:
      refs = [
        (book.osis_name, c + 1, v + 1) for c, n in enumerate(book.chapter_lengths) for v in range(n)
      ]
      texts = list(bible.get_iter(books=book.name, clean=False))
      assert len(texts) == len(refs), book.name
      verses.update(zip(refs, texts))
  return key, conf, verses


def clean(text):
  text = DROP.sub(" ", text)  # notes, variant readings and headings, with their content
  text = TAG.sub(" ", INLINE.sub("", text))
  text = html.unescape(text).replace("¶", " ").replace("[", "").replace("]", "")
  text = " ".join(text.split())
  text = re.sub(r" +(?=[,.;:!?)’”])", "", text)
  return re.sub(r"(?<=[(“‘¿¡]) +", "", text)


def decapitalize(verses):
  """`EN el principio` -> `En el principio`: the capitalised first word of each chapter."""
  cases = collections.Counter(w for t in verses.values() for w in re.findall(r"\w+", t))

  def fix(match, text):
    word = match.group()
    word = word.capitalize() if cases[word.capitalize()] > cases[word.lower()] else word.lower()
    if re.search(r"(^|[.!?])[”’]?\W*$", text[: match.start()]):  # starts a sentence
      word = word[0].upper() + word[1:]
    return word

  for ref, text in verses.items():
    if ref[2] == 1 and (match := CAPS.search(text)):
      verses[ref] = text[: match.start()] + fix(match, text) + text[match.end() :]


def shifted(source, target, chapter, verses):
  """Whether the target's verses fit the source's better when moved by up to 3 verses."""

  def mismatch(offset):
    refs = [(*chapter, v) for v in verses]
    pairs = [(source.get(r), target.get((*chapter, r[2] + offset))) for r in refs]
    logs = [abs(math.log(len(s.split()) / len(t.split()))) for s, t in pairs if s and t]
    return sum(logs) / len(logs) if len(logs) >= 3 else float("inf")

  here = mismatch(0)
  return here > 0.25 and min(mismatch(o) for o in (-3, -2, -1, 1, 2, 3)) < 0.8 * here


def align(source, target):
  """Verse pairs present in both, without chapters whose numbering differs between the two."""
  chapters = collections.defaultdict(list)
  for book, chapter, verse in target:
    chapters[book, chapter].append(verse)
  skip = {(*c, v) for c, vs in chapters.items() if shifted(source, target, c, vs) for v in vs}
  for book, chapter, verse in target:
    if bool(source.get((book, chapter, verse))) != bool(target[book, chapter, verse]):
      skip.add((book, chapter, verse - 1))  # the verse before may hold this one's text
  refs = [r for r in target if source.get(r) and target[r]]
  print(
    f"common verses: {len(refs)}; in renumbered chapters or next to a verse one side lacks: "
    f"{sum(r in skip for r in refs)}"
  )
  return [(source[r], target[r]) for r in refs if r not in skip]


def main(_):
  with tempfile.TemporaryDirectory(prefix="bible_corpus_") as tmp:
    roots = extract(FLAGS.package_dir, tmp)
    verses = {}
    for lang, root in roots.items():
      key, conf, raw = read_module(root, lang)
      verses[lang] = {ref: clean(text) for ref, text in raw.items()}
      read = sum(1 for text in verses[lang].values() if text)
      about = f"{key}, {conf.get('description')}, {conf.get('distributionlicense')}"
      print(f"{PACKAGES[lang]} {conf.get('version')} ({about})")
      print(f"  versification {conf.get('versification')}: {read} verses")
  decapitalize(verses["es"])
  pairs = align(verses["en"], verses["es"])
  words = lambda pair: sorted(len(side.split()) for side in pair)  # [shorter, longer]
  pairs = [p for p in pairs if FLAGS.min_words <= words(p)[0] and words(p)[1] <= FLAGS.max_words]
  print(f"with {FLAGS.min_words} to {FLAGS.max_words} words a side: {len(pairs)}")
  pairs = [p for p in pairs if words(p)[1] <= FLAGS.max_ratio * words(p)[0]]
  print(f"with at most {FLAGS.max_ratio}x more words on one side: {len(pairs)}")
  first = {}
  for source, target in pairs:
    first.setdefault(source, target)
  pairs = list(first.items())
  print(f"without repeated sources: {len(pairs)}")
  splits = corpus_splits.write_splits(
    pairs, FLAGS.output_dir, FLAGS.dev_size, FLAGS.test_size, FLAGS.seed
  )
  for side, name in enumerate(["en", "es"]):
    words = sum(len(p[side].split()) for p in pairs) / len(pairs)
    print(f"{name}: {words:.1f} words a verse on average")
  for name, split in splits.items():
    print(f"{name}: {len(split)} -> {os.path.join(FLAGS.output_dir, name + '.tsv')}")


if __name__ == "__main__":
  app.run(main)
