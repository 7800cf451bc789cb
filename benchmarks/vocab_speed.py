"""Benchmark: how long learning the shared vocabulary takes, SentencePiece vs WordPiece.

Learns a --vocab_size (32,000) piece vocabulary from --pairs (1,000,000)
sentence pairs with

  * the SentencePiece learner (t2t_vqem.problems.sentencepiece_vocab), from a
    fast reader of the TSV file (the learner's own time), and through
    translate_tsv's `problem.vocab` (what a run pays: check and hash the file,
    read it through the problem's text_pairs, learn, record);
  * the WordPiece learner (t2t_vqem.problems.vocab, vocab_type 'wordpiece') on
    --wordpiece_pairs subsamples only (a full run takes about an hour): its
    sentences/s are measured and the time for --pairs is extrapolated from the
    largest subsample (linearly: it counts the words of every sentence), marked
    "extrapolated". --wordpiece_pairs=0 skips it; a value >= --pairs runs it whole.

Data: real word statistics, not real sentences. No English-German text of a
million pairs is on the machine, so each sentence is drawn from the English
and German frequency lists of the `wordfreq` package (321k and 635k words with
their frequencies in large web, news, subtitle and Wikipedia corpora; a
Zipfian vocabulary with real word forms, umlauts, numbers, names and emoji):
words independently by frequency, the length gamma-distributed (mean about
23 words, a news sentence's), the first letter capitalised, a final "." (the
lists are lowercase). A generated corpus with a small lexicon (t2t_vqem's grammar)
would flatter any learner. The corpus is seeded and cached in --work_dir.

Prints a Markdown table (learner, sentences, pieces, seconds, sentences/s,
note) and the command; the machine's load average is printed with it, since
other jobs share its cores.

  pip install -r benchmarks/requirements.txt   # wordfreq
  python benchmarks/vocab_speed.py --work_dir=/tmp/vocab_speed
"""

import os
import shutil
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from t2t_vqem import registry
from t2t_vqem.problems import sentencepiece_vocab
from t2t_vqem.problems import vocab as wordpiece_vocab

flags.DEFINE_string("work_dir", "/tmp/vocab_speed", "Corpus cache and scratch vocabularies.")
flags.DEFINE_integer("pairs", 1_000_000, "Sentence pairs to learn from.")
flags.DEFINE_integer("vocab_size", 32000, "Pieces asked for.")
flags.DEFINE_list(
  "wordpiece_pairs", ["5000", "20000"], "Subsample sizes (pairs) for the WordPiece learner."
)
flags.DEFINE_integer("seed", 1234, "Corpus seed.")
FLAGS = flags.FLAGS


def _sentences(lang, count, rng):
  """`count` sentences of words drawn by their wordfreq frequency in `lang`."""
  import wordfreq

  frequencies = wordfreq.get_frequency_dict(lang, wordlist="large")
  words = np.array(list(frequencies), dtype=object)
  cumulative = np.cumsum(np.fromiter(frequencies.values(), float))
  cumulative /= cumulative[-1]
  lengths = np.minimum(rng.gamma(3.0, 7.5, count).astype(int) + 1, 120)  # mean ~23 words
  drawn = words[np.searchsorted(cumulative, rng.random(lengths.sum()))]
  sentences, start = [], 0
  for length in lengths:
    chosen = drawn[start : start + length]
    start += length
    text = " ".join(chosen)
    sentences.append(text[:1].upper() + text[1:] + ".")
  return sentences, len(words)


def make_corpus(path, pairs, seed):
  """Writes `pairs` English<TAB>German lines to `path` (kept: a later run reuses it)."""
  if os.path.exists(path):
    return
  rng = np.random.default_rng(seed)
  english, english_words = _sentences("en", pairs, rng)
  german, german_words = _sentences("de", pairs, rng)
  print(f"corpus: {english_words} English and {german_words} German words to draw from")
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    for source, target in zip(english, german):
      f.write(f"{source}\t{target}\n")
  os.replace(path + ".tmp", path)


def fast_texts(path, pairs):
  """The sentences of the first `pairs` lines of the TSV file, in batches (vectorised reading)."""
  lines = tf.data.TextLineDataset(path).take(pairs).batch(4096)

  def sentences(batch):
    fields = tf.strings.split(batch, "\t").to_tensor()
    return tf.concat([fields[:, 0], fields[:, 1]], 0)

  return lines.map(sentences)


def timed(function):
  start = time.time()
  result = function()
  return result, time.time() - start


def fresh(path):
  if os.path.isdir(path):
    shutil.rmtree(path)
  os.makedirs(path)
  return path


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  os.makedirs(FLAGS.work_dir, exist_ok=True)
  corpus = os.path.join(FLAGS.work_dir, f"corpus-{FLAGS.pairs}-{FLAGS.seed}.tsv")
  _, seconds = timed(lambda: make_corpus(corpus, FLAGS.pairs, FLAGS.seed))
  print(f"corpus {corpus} ready in {seconds:.0f} s")
  scratch = fresh(os.path.join(FLAGS.work_dir, "scratch"))
  sentences = 2 * FLAGS.pairs
  rows, load = [], [os.getloadavg()[0]]

  def row(learner, count, vocab, seconds, note=""):
    rows.append((learner, count, vocab.size if vocab else "-", seconds, count / seconds, note))

  path = os.path.join(scratch, "alone.model")
  vocab, seconds = timed(
    lambda: sentencepiece_vocab.learn_vocab(fast_texts(corpus, FLAGS.pairs), FLAGS.vocab_size, path)
  )
  row("SentencePiece BPE, learn_vocab", sentences, vocab, seconds, "learner alone")
  load.append(os.getloadavg()[0])

  problem = registry.build_problem(
    "translate_tsv",
    train_path=corpus,
    dev_path=corpus,
    test_path=corpus,
    data_dir=fresh(os.path.join(scratch, "data")),
    vocab_size=FLAGS.vocab_size,
    vocab_sample_size=FLAGS.pairs,
  )
  vocab, seconds = timed(lambda: problem.vocab)
  row(
    "SentencePiece BPE, translate_tsv problem.vocab",
    sentences,
    vocab,
    seconds,
    "what a run pays: file checked, hashed, read by text_pairs",
  )
  load.append(os.getloadavg()[0])

  sizes = sorted(min(int(n), FLAGS.pairs) for n in FLAGS.wordpiece_pairs if int(n) > 0)
  rate = None
  for pairs in sizes:
    path = os.path.join(scratch, f"wordpiece-{pairs}.txt")
    texts = fast_texts(corpus, pairs).unbatch()
    vocab, seconds = timed(lambda: wordpiece_vocab.learn_vocab(texts, FLAGS.vocab_size, path))
    rate = 2 * pairs / seconds
    note = "subsample" if pairs < FLAGS.pairs else ""
    row("WordPiece (tf.text bert_vocab), learn_vocab", 2 * pairs, vocab, seconds, note)
    load.append(os.getloadavg()[0])
  if sizes and sizes[-1] < FLAGS.pairs:
    rows.append(
      (
        "WordPiece (tf.text bert_vocab), learn_vocab",
        sentences,
        "-",
        sentences / rate,
        rate,
        f"**extrapolated** from the {2 * sizes[-1]}-sentence run's rate, not measured",
      )
    )

  print()
  print("| learner | sentences | pieces | seconds | sentences/s | note |")
  print("|---|---:|---:|---:|---:|---|")
  for learner, count, pieces, seconds, per_second, note in rows:
    print(f"| {learner} | {count:,} | {pieces} | {seconds:,.1f} | {per_second:,.0f} | {note} |")
  print()
  print("load average (1 min) before and after each row:", " ".join(f"{x:.1f}" for x in load))
  print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
  app.run(main)
