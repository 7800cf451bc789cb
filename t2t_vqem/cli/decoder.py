"""t2t_vqem-decoder: translates a split or a text file with a trained run; prints BLEU.

t2t_vqem-decoder --output_dir=runs/tq --split=test --beam_size=4
t2t_vqem-decoder --output_dir=runs/tq --decode_from_file=src.txt --decode_to_file=hyp.txt
"""

import os
import sys

from absl import flags

from t2t_vqem import config
from t2t_vqem import constants
from t2t_vqem import decode
from t2t_vqem import files
from t2t_vqem import metrics
from t2t_vqem.cli import common
from t2t_vqem.train import trainer as trainer_lib

flags.DEFINE_string("output_dir", None, "A training run's output_dir.")
flags.DEFINE_string("checkpoint", None, "A checkpoint path (default: the run's latest).")
flags.DEFINE_enum(
  "split", constants.TEST, constants.SPLITS, "Split to decode when no --decode_from_file."
)
flags.DEFINE_string("decode_from_file", None, "Source sentences, one a line.")
flags.DEFINE_string("reference_file", None, "References for --decode_from_file, for BLEU.")
flags.DEFINE_string("decode_to_file", None, "Where hypotheses go (default: in output_dir).")
flags.DEFINE_integer("beam_size", None, "Beam size (1: greedy; default: the model's).")
flags.DEFINE_float("alpha", None, "Length penalty exponent (default: the model's).")
flags.DEFINE_integer("batch_size", 32, "Sentences per decode batch.")
flags.DEFINE_bool(
  "jit_compile",
  False,
  "Compile the decode with XLA (once per padded input width; the same outputs, "
  "several times faster for small models on CPU: BENCHMARKS.md, 'Decoding with XLA').",
)
flags.DEFINE_integer("max_sentences", None, "Decode at most this many sentences.")
FLAGS = flags.FLAGS


def read_lines(path):
  if not os.path.isfile(path):
    raise FileNotFoundError(f"file not found: {path!r}")
  with open(path, encoding="utf-8") as f:
    return [line.rstrip("\n") for line in f]


@common.one_line_errors
def main(argv):
  if len(argv) > 1:
    raise config.UsageError(f"unexpected arguments {argv[1:]}; flags are --name=value")
  if not FLAGS.output_dir:
    raise config.UsageError("--output_dir (a training run) is required")
  config.register_everything(FLAGS["import"].value)
  problem, model, _ = trainer_lib.load_run(
    FLAGS.output_dir, FLAGS.checkpoint, FLAGS.data_dir, FLAGS.gin_file, FLAGS.gin_param
  )
  if problem.vocab is None:
    raise config.UsageError(
      f"{FLAGS.output_dir!r} holds a model of problem {problem.name!r}, which has no text "
      "vocabulary; the decoder translates text. The trainer writes an image run's "
      f"test bits/dim to OUTPUT_DIR/{trainer_lib.TEST_RESULTS} and its pictures to "
      "OUTPUT_DIR/pictures/"
    )

  references = None
  if FLAGS.decode_from_file:
    sources = read_lines(FLAGS.decode_from_file)
    if FLAGS.reference_file:
      references = read_lines(FLAGS.reference_file)
    name = os.path.basename(FLAGS.decode_from_file)
  else:
    sources, references = problem.sources_and_references(FLAGS.split)
    name = FLAGS.split
  if FLAGS.max_sentences:
    sources = sources[: FLAGS.max_sentences]
    references = references[: FLAGS.max_sentences] if references else None

  beam = FLAGS.beam_size or model.beam_size
  show = lambda done, total: print(f"\rdecoded {done}/{total}", end="", file=sys.stderr)
  hypotheses = decode.translate(
    model,
    problem.vocab,
    sources,
    beam_size=beam,
    alpha=FLAGS.alpha,
    batch_size=FLAGS.batch_size,
    decode_fn=decode.decode_function(model, beam, FLAGS.alpha, jit_compile=FLAGS.jit_compile),
    progress=show,
  )
  print(file=sys.stderr)
  out = FLAGS.decode_to_file or os.path.join(FLAGS.output_dir, f"decode.{name}.beam{beam}.txt")
  files.write_text(out, "\n".join(hypotheses) + "\n")
  print(f"wrote {len(hypotheses)} hypotheses to {out}")
  if references:
    score, signature = metrics.corpus_bleu(hypotheses, references)
    print(f"BLEU = {score:.2f}  ({signature})")


def run():
  common.run(main, sys.modules[__name__])


if __name__ == "__main__":
  run()
