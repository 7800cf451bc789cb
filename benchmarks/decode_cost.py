"""Benchmark: graph ops and batch-1 latency of the decoders of a latent_speed.py run.

Loads the trained `transformer_quickstart` and n_c = 3 `latent_transformer_em_quickstart`
runs that benchmarks/latent_speed.py left in --runs_dir (no training here), then
prints, for greedy, beam 4 and the latent model's decode: the number of ops in
the compiled decode graph (its nodes plus those of the functions it calls, the
while-loop bodies) and the median batch-1 latency over --sentences test
sources, the three timed side by side in one process (decode.batch1_times).

With --stages, it also times, side by side with the decoders, the prefixes of both
decodes: the teacher's source encoder; the latent model's source encoder, and its encoder
plus latent prediction (the cached greedy search over latents). Their differences are
the cost of the stages, and with the mean number of greedy steps and of latent steps
(tokens decoded, EOS included; latents decoded + 1 for END) they give the cost of one step of
each search.

The t2t_vqem imported is whatever is on the path, so two versions of the code
can be compared on the same checkpoints by running this script alternately
with each (see BENCHMARKS.md):

  python benchmarks/decode_cost.py --runs_dir=/tmp/bench_latent3k
  PYTHONPATH=/tmp/old_checkout python benchmarks/decode_cost.py --runs_dir=/tmp/bench_latent3k
"""

import json
import os

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

import t2t_vqem
from t2t_vqem import config as config_lib
from t2t_vqem import decode
from t2t_vqem.train import trainer as trainer_lib

flags.DEFINE_string("runs_dir", "/tmp/bench_latent_speed", "latent_speed.py's --output_dir.")
flags.DEFINE_integer("sentences", 100, "Test sentences timed at batch size 1.")
flags.DEFINE_bool("stages", False, "Also time the encoders and the latent prediction alone.")
FLAGS = flags.FLAGS

RUNS = ("transformer_quickstart", "latent_transformer_em_quickstart_3")


def restored(run):
  """(problem, model, checkpoint path) of one of latent_speed's runs, from its operative config."""
  run_dir = os.path.join(FLAGS.runs_dir, run)
  if not os.path.isdir(os.path.join(run_dir, "checkpoints")):
    raise SystemExit(
      f"no checkpoints in {run_dir}: train it with benchmarks/latent_speed.py "
      f"--output_dir={FLAGS.runs_dir} first"
    )
  return trainer_lib.load_run(run_dir)


def graph_ops(function):
  """Ops of a tf.function's graph for [batch, length] int32 input, called functions included."""
  graph_def = function.get_concrete_function().graph.as_graph_def()
  return len(graph_def.node) + sum(len(f.node_def) for f in graph_def.library.function)


def main(_):
  config_lib.register_everything()
  (problem, teacher, teacher_ckpt), (_, latent, latent_ckpt) = (restored(r) for r in RUNS)
  fns = {
    "greedy": decode.decode_function(teacher, 1),
    "beam 4": decode.decode_function(teacher, 4),
    "latent n_c=3": decode.decode_function(latent, 1),
  }
  if FLAGS.stages:
    signature = [tf.TensorSpec([None, None], tf.int32)]
    fns["teacher encoder"] = tf.function(lambda x: teacher.encode(x)[0], input_signature=signature)
    fns["latent encoder"] = tf.function(
      lambda x: latent.encode_source(x)[0], input_signature=signature
    )
    fns["latent encoder + latents"] = tf.function(
      lambda x: latent.source_latents(x, 1, 0.0)[2], input_signature=signature
    )
  sources, _ = problem.sources_and_references("test", FLAGS.sentences)
  times = decode.batch1_times(fns, problem.vocab, sources)
  result = {
    "code": os.path.dirname(os.path.dirname(os.path.abspath(t2t_vqem.__file__))),
    "checkpoints": [teacher_ckpt, latent_ckpt],
  }
  for name, fn in fns.items():
    result[name] = {
      "graph_ops": graph_ops(fn),
      "median_ms": round(float(np.median(times[name])), 2),
    }
  result["greedy / latent"] = round(
    result["greedy"]["median_ms"] / result["latent n_c=3"]["median_ms"], 2
  )
  if FLAGS.stages:
    batches = [tf.constant([row]) for row in decode.encode_texts(problem.vocab, sources)]
    tokens = np.mean([int(np.sum(fns["greedy"](b).numpy() > 0)) for b in batches])  # EOS incl.
    latents = np.mean([1 + int(latent.source_latents(b, 1, 0.0)[3].numpy()[0]) for b in batches])
    mean = {name: float(np.mean(t)) for name, t in times.items()}
    result["stages (means, ms)"] = {
      "greedy steps per sentence": round(tokens, 2),
      "latent steps per sentence": round(latents, 2),
      "teacher encoder": round(mean["teacher encoder"], 2),
      "greedy, per step": round((mean["greedy"] - mean["teacher encoder"]) / tokens, 2),
      "latent encoder": round(mean["latent encoder"], 2),
      "latent prediction, per step": round(
        (mean["latent encoder + latents"] - mean["latent encoder"]) / latents, 2
      ),
      "parallel decoder pass": round(mean["latent n_c=3"] - mean["latent encoder + latents"], 2),
    }
  print(json.dumps(result))


if __name__ == "__main__":
  tf.get_logger().setLevel("ERROR")
  app.run(main)
