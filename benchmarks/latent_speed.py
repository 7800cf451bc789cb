"""Benchmark (the paper's Table 1, on this CPU): batch-1 decode latency and BLEU of
latent_transformer_em at n_c = 3 and 4 against the autoregressive `transformer`
of the same width and depth, greedy and beam 4, on the embedded problem.

Every model is trained for --train_steps with its quickstart config (resuming
from --output_dir if already there), then all are timed in one process,
sentence by sentence in interleaved order, so machine noise hits all alike.

  python benchmarks/latent_speed.py --output_dir=/tmp/bench_latent --train_steps=2000
"""

import json
import os
import time

from absl import app
from absl import flags
from absl import logging
import gin
import numpy as np
import tensorflow as tf

from t2t_vqem import decode
from t2t_vqem import metrics
from t2t_vqem.cli import common
from t2t_vqem.train import trainer as trainer_lib

flags.DEFINE_string("output_dir", "/tmp/bench_latent_speed", "Where the runs go.")
flags.DEFINE_integer("train_steps", 2000, "Training steps of every model.")
flags.DEFINE_integer("bleu_sentences", 500, "Test sentences scored for BLEU.")
flags.DEFINE_integer("latency_sentences", 100, "Test sentences timed at batch size 1.")
FLAGS = flags.FLAGS

# (row name, config, extra bindings, beam size)
ROWS = (
    ("transformer, beam 4", "transformer_quickstart.gin", [], 4),
    ("transformer, greedy", "transformer_quickstart.gin", [], 1),
    ("latent_transformer_em, n_c=3", "latent_transformer_em_quickstart.gin",
     ["latent_transformer_em.compress_steps = 3"], 1),
    ("latent_transformer_em, n_c=4", "latent_transformer_em_quickstart.gin",
     ["latent_transformer_em.compress_steps = 4"], 1),
)


def trained_model(config, bindings):
  """Trains (or resumes) the run for `config` + `bindings`; returns (model, trainer)."""
  name = os.path.splitext(config)[0] + "".join(
      "_" + b.split("=")[-1].strip() for b in bindings)
  gin.clear_config()
  common.parse_gin([config], bindings + [f"Trainer.train_steps = {FLAGS.train_steps}",
                                         "Trainer.eval_every = 0"])
  trainer = trainer_lib.Trainer(os.path.join(FLAGS.output_dir, name), data_dir=FLAGS.data_dir)
  trainer.train()
  gin.clear_config()
  return trainer


def main(_):
  common.register_everything([])
  runs, rows = {}, []
  for name, config, bindings, beam in ROWS:
    key = (config, tuple(bindings))
    if key not in runs:
      runs[key] = trained_model(config, bindings)
    rows.append((name, runs[key], beam))

  trainer = rows[0][1]
  sources, references = trainer.problem.sources_and_references("test", FLAGS.bleu_sentences)
  results = {}
  for name, run, beam in rows:
    hyps = decode.translate(run.model, run.vocab, sources, beam_size=beam)
    results[name] = {"bleu": metrics.corpus_bleu(hyps, references)[0], "times": []}
  fns = {name: decode.decode_function(run.model, beam) for name, run, beam in rows}
  encoded = decode.encode_texts(trainer.vocab, sources[:FLAGS.latency_sentences])
  for row in encoded[:3]:
    for fn in fns.values():
      fn(tf.constant([row])).numpy()
  for row in encoded:
    for name, fn in fns.items():
      start = time.perf_counter()
      fn(tf.constant([row])).numpy()
      results[name]["times"].append((time.perf_counter() - start) * 1e3)
  greedy = np.median(results["transformer, greedy"]["times"])
  beam4 = np.median(results["transformer, beam 4"]["times"])
  print(f"\n{FLAGS.train_steps} training steps each; BLEU on {len(sources)} test sentences; "
        f"latency: median over {len(encoded)} sentences at batch 1\n")
  print("| model | BLEU | latency | speedup vs beam 4 | speedup vs greedy |")
  print("|---|---|---|---|---|")
  summary = {}
  for name, row in results.items():
    latency = float(np.median(row["times"]))
    summary[name] = {"bleu": row["bleu"], "latency_ms": latency}
    print(f"| {name} | {row['bleu']:.2f} | {latency:.1f} ms | {beam4 / latency:.2f}x | "
          f"{greedy / latency:.2f}x |")
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
