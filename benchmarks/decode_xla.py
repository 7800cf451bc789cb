"""Benchmark: batch-1 decoding with and without XLA, teacher and student alike.

Loads a finished pipeline's teacher and student (--pipeline_dir: teacher/ and
student/ of em_distill_quickstart.gin; no training here) and times, side by side
in one process (decode.batch1_times), greedy, beam 4 and the student's decode,
each as a plain tf.function and compiled with XLA (jit_compile=True). XLA
compiles once per input shape, so every source is padded with PAD to a multiple
of --pad subwords, for all six decoders alike (padding is masked, the outputs are
those of the unpadded source), and every padded length met is decoded once,
untimed, before the timing. Prints the median latency of each, the speedups of
the student over greedy with and without XLA, and XLA's own gain per decoder.

  python benchmarks/decode_xla.py --pipeline_dir=runs/quickstart --sentences=200
"""

import json
import os

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from t2t_vqem import config as config_lib
from t2t_vqem import decode
from t2t_vqem.train import trainer as trainer_lib

flags.DEFINE_string("pipeline_dir", None, "A finished em_distill_quickstart.gin run.")
flags.DEFINE_integer("sentences", 200, "Test sentences timed at batch size 1.")
flags.DEFINE_integer("pad", 8, "Sources are padded to a multiple of this many subwords.")
FLAGS = flags.FLAGS


def padded(fn, multiple):
  def run(inputs):
    length = int(inputs.shape[1])
    width = -(-length // multiple) * multiple
    return fn(tf.pad(inputs, [[0, 0], [0, width - length]]))

  return run


def main(_):
  config_lib.register_everything()
  problem, teacher, _ = trainer_lib.load_run(os.path.join(FLAGS.pipeline_dir, "teacher"))
  _, student, _ = trainer_lib.load_run(os.path.join(FLAGS.pipeline_dir, "student"))
  fns = {}
  for xla in (False, True):
    tag = " (XLA)" if xla else ""
    fns["greedy" + tag] = padded(decode.decode_function(teacher, 1, jit_compile=xla), FLAGS.pad)
    fns["beam 4" + tag] = padded(decode.decode_function(teacher, 4, jit_compile=xla), FLAGS.pad)
    fns["student" + tag] = padded(decode.decode_function(student, 1, jit_compile=xla), FLAGS.pad)
  sources, _ = problem.sources_and_references("test", FLAGS.sentences)
  encoded = decode.encode_texts(problem.vocab, sources)
  widths = sorted({-(-len(row) // FLAGS.pad) * FLAGS.pad for row in encoded})
  for width in widths:  # compile every padded length before any timing
    row = next(r for r in encoded if -(-len(r) // FLAGS.pad) * FLAGS.pad == width)
    for fn in fns.values():
      fn(tf.constant([row], tf.int32)).numpy()
  # The outputs are the same with and without XLA (up to float differences).
  same = {}
  for name in ("greedy", "beam 4", "student"):
    outs = [
      [fns[name + tag](tf.constant([r], tf.int32)).numpy().tolist() for r in encoded[:50]]
      for tag in ("", " (XLA)")
    ]
    same[name] = float(np.mean([a == b for a, b in zip(*outs)]))
  times = decode.batch1_times(fns, problem.vocab, sources)
  median = {name: float(np.median(t)) for name, t in times.items()}
  result = {
    "median_ms": {name: round(ms, 2) for name, ms in median.items()},
    "student speedup vs greedy": round(median["greedy"] / median["student"], 2),
    "student speedup vs greedy, both XLA": round(
      median["greedy (XLA)"] / median["student (XLA)"], 2
    ),
    "XLA gain": {
      name: round(median[name] / median[name + " (XLA)"], 2)
      for name in ("greedy", "beam 4", "student")
    },
    "same outputs with XLA (share of 50 sentences)": same,
    "padded widths": widths,
    "sentences": len(sources),
  }
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  tf.get_logger().setLevel("ERROR")
  app.run(main)
