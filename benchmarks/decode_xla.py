"""Benchmark: decoding with and without XLA, teacher and student alike.

Loads a finished pipeline's teacher and student (--pipeline_dir: teacher/ and
student/ of em_distill_quickstart.gin; no training here) and measures greedy,
beam 4 and the student's decode, each as a plain tf.function and compiled with
XLA (`decode.decode_function(..., jit_compile=True)`: inputs padded to a multiple
of --pad subwords, so XLA compiles once per padded width). All six side by side
in one process (t2t_vqem.speed): batch-1 latency over --sentences test sources,
overall and by the reference's length, and sentences/s at batch 64 over them.
Every decoder first translates all the sources once, untimed, so that no
compilation is timed. Prints the medians, the student's speedups over greedy
with and without XLA, XLA's own gain per decoder, and the share of sentences
whose output XLA leaves unchanged.

  python benchmarks/decode_xla.py --pipeline_dir=runs/quickstart --sentences=200

A pipeline that used another run's teacher (Pipeline.teacher_dir) names it with
--teacher_dir:

  python benchmarks/decode_xla.py --pipeline_dir=runs/bible_nc2_8k_alpha1 \
    --teacher_dir=runs/bible_levers/teacher --sentences=100
"""

import json
import os

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from t2t_vqem import config as config_lib
from t2t_vqem import decode
from t2t_vqem import speed
from t2t_vqem.train import trainer as trainer_lib

flags.DEFINE_string("pipeline_dir", None, "A finished em_distill_quickstart.gin run.")
flags.DEFINE_string("teacher_dir", None, "The teacher's run (default: PIPELINE_DIR/teacher).")
flags.DEFINE_integer("sentences", 200, "Test sentences timed at batch size 1.")
flags.DEFINE_integer("pad", 8, "Sources are padded to a multiple of this many subwords.")
FLAGS = flags.FLAGS


def main(_):
  config_lib.register_everything()
  problem, teacher, _ = trainer_lib.load_run(
    FLAGS.teacher_dir or os.path.join(FLAGS.pipeline_dir, "teacher")
  )
  _, student, _ = trainer_lib.load_run(os.path.join(FLAGS.pipeline_dir, "student"))
  fns = {}
  for xla in (False, True):
    tag = " (XLA)" if xla else ""
    fns["greedy" + tag] = decode.decode_function(
      teacher, 1, jit_compile=xla, width_multiple=FLAGS.pad
    )
    fns["beam 4" + tag] = decode.decode_function(
      teacher, 4, jit_compile=xla, width_multiple=FLAGS.pad
    )
    fns["student" + tag] = decode.decode_function(
      student, 1, jit_compile=xla, width_multiple=FLAGS.pad
    )
  sources, references = problem.sources_and_references("test", FLAGS.sentences)
  outputs = {}
  for name, fn in fns.items():  # compiles every padded width, batch 1 and batch 64
    outputs[name] = decode.translate(None, problem.vocab, sources, batch_size=1, decode_fn=fn)
    decode.translate(None, problem.vocab, sources, batch_size=64, decode_fn=fn)
  rows = speed.latencies(fns, problem.vocab, sources, references)
  rates = speed.throughputs(fns, problem.vocab, sources, batch_size=64)
  names = ("greedy", "beam 4", "student")
  result = {}
  for tag in ("", " (XLA)"):
    greedy, student = rows["greedy" + tag], rows["student" + tag]
    speed.add_speedups([student], greedy)
    result["student vs greedy" + tag] = {
      "overall": round(student["speedup_vs_greedy"], 2),
      **{b: round(c["speedup_vs_greedy"] or 0, 2) for b, c in student["by_length"].items()},
    }
  result["median latency ms"] = {n: round(r["latency_ms"], 2) for n, r in rows.items()}
  result["sentences/s at batch 64"] = {
    n: round(r["sentences_per_second"], 1) for n, r in rates.items()
  }
  result["XLA gain, batch 1"] = {
    n: round(rows[n]["latency_ms"] / rows[n + " (XLA)"]["latency_ms"], 2) for n in names
  }
  result["same outputs with XLA"] = {
    n: float(np.mean([a == b for a, b in zip(outputs[n], outputs[n + " (XLA)"])])) for n in names
  }
  result["sentences by band"] = {b: c["sentences"] for b, c in rows["greedy"]["by_length"].items()}
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  tf.get_logger().setLevel("ERROR")
  app.run(main)
