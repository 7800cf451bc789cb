"""Benchmark: the parts of each decoder's BLEU in a pipeline's or study's evaluation.

For every `<name>.hyp.txt` of an evaluation folder (the hypotheses of the test sentences, in
order), the corpus BLEU (sacrebleu, 13a) against the references split into its factors: the
brevity penalty, the hypothesis / reference length ratio and the 1- to 4-gram precisions;
and the BLEU of each hypothesis file against one decoder's hypotheses taken as references
(--against, by default the teacher's greedy ones): how closely a student copies its
teacher. Nothing is decoded or timed.

  python benchmarks/bleu_parts.py --eval_dir=runs/bible_levers/eval \
      --references=runs/bible_corpus/test.tsv
"""

import glob
import os

from absl import app
from absl import flags
import sacrebleu

FLAGS = flags.FLAGS
flags.DEFINE_string("eval_dir", None, "An evaluation folder holding <name>.hyp.txt files.")
flags.DEFINE_string(
  "references", None, "The references: a text file, one per line, or a TSV (source, target)."
)
flags.DEFINE_string("against", "teacher_greedy", "The hypotheses also used as references.")


def read_lines(path):
  with open(path, encoding="utf-8") as f:
    lines = [line.rstrip("\n") for line in f]
  if path.endswith(".tsv"):
    return [line.split("\t")[1] for line in lines]
  return lines


def main(argv):
  del argv
  paths = sorted(glob.glob(os.path.join(FLAGS.eval_dir, "*.hyp.txt")))
  if not paths:
    raise SystemExit(f"no <name>.hyp.txt in {FLAGS.eval_dir!r}: give a pipeline's eval folder")
  hypotheses = {os.path.basename(p)[: -len(".hyp.txt")]: read_lines(p) for p in paths}
  count = len(next(iter(hypotheses.values())))
  references = read_lines(FLAGS.references)[:count]
  if len(references) < count:
    raise SystemExit(f"{FLAGS.references!r} has {len(references)} references, not {count}")
  against = hypotheses.get(FLAGS.against)
  print(
    f"{count} sentences; BLEU = BP * exp(mean log precision); sacrebleu {sacrebleu.__version__}"
  )
  print(
    f"| decoder | BLEU | brevity penalty | length ratio | 1-4-gram precisions (%) "
    f"| BLEU against {FLAGS.against} |\n|---|---|---|---|---|---|"
  )
  for name, hyps in hypotheses.items():
    if len(hyps) != count:
      raise SystemExit(f"{name}.hyp.txt has {len(hyps)} lines, not {count}")
    bleu = sacrebleu.corpus_bleu(hyps, [references])
    copy = f"{sacrebleu.corpus_bleu(hyps, [against]).score:.2f}" if against else "-"
    precisions = ", ".join(f"{p:.1f}" for p in bleu.precisions)
    print(
      f"| {name} | {bleu.score:.2f} | {bleu.bp:.3f} | {bleu.sys_len / bleu.ref_len:.3f} "
      f"| {precisions} | {copy} |"
    )


if __name__ == "__main__":
  flags.mark_flags_as_required(["eval_dir", "references"])
  app.run(main)
