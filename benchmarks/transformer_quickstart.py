"""Benchmark: the quickstart Transformer on the embedded problem.

Trains `transformer_quickstart.gin` for a fixed number of steps (training
throughput in target tokens/s), then on the test split measures BLEU with greedy
and with beam-4 decoding, and the batch-1 decode latency of each, side by side
in one process (latencies interleaved sentence by sentence, so machine noise
hits both alike). Prints a markdown table for BENCHMARKS.md.

  python benchmarks/transformer_quickstart.py --output_dir=/tmp/bench_tq --train_steps=3000
"""

import json
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from t2t_vqem import config as config_lib
from t2t_vqem import decode
from t2t_vqem import metrics
from t2t_vqem.cli import common  # noqa: F401  (the shared flags: --data_dir, --gin_param, ...)
from t2t_vqem.train import trainer as trainer_lib

flags.DEFINE_string("output_dir", "/tmp/bench_transformer_quickstart", "Run directory.")
flags.DEFINE_integer("train_steps", 3000, "Training steps.")
flags.DEFINE_integer("bleu_sentences", 1000, "Test sentences scored for BLEU.")
flags.DEFINE_integer("latency_sentences", 200, "Test sentences timed at batch size 1.")
FLAGS = flags.FLAGS


def main(_):
  config_lib.register_everything()
  config_lib.parse_gin(
    ["transformer_quickstart.gin"] + FLAGS.gin_file,
    [f"Trainer.train_steps = {FLAGS.train_steps}", "Trainer.eval_every = 0"] + FLAGS.gin_param,
  )
  trainer = trainer_lib.Trainer(FLAGS.output_dir, data_dir=FLAGS.data_dir)
  start_step = trainer.restore()
  tokens, started = 0.0, time.perf_counter()
  for _ in range(start_step, FLAGS.train_steps):
    tokens += float(trainer.train_step(next(trainer.train_iterator))["items"])  # target tokens
  elapsed = time.perf_counter() - started
  trainer.manager.save(checkpoint_number=FLAGS.train_steps)
  model, vocab = trainer.model, trainer.vocab

  sources, references = trainer.problem.sources_and_references("test", FLAGS.bleu_sentences)
  fns = {
    name: decode.decode_function(model, beam, 0.6) for name, beam in (("greedy", 1), ("beam 4", 4))
  }
  rows = {}
  for name, fn in fns.items():
    hyps = decode.translate(model, vocab, sources, decode_fn=fn)
    rows[name] = {"bleu": metrics.corpus_bleu(hyps, references)[0]}
  # Interleaved batch-1 latency: one sentence greedy, the same sentence beam 4.
  times = decode.batch1_times(fns, vocab, sources[: FLAGS.latency_sentences], warmup=5)
  for name in fns:
    rows[name]["latency_ms"] = float(np.median(times[name]))
  base = rows["beam 4"]["latency_ms"]
  result = {
    "train_steps": FLAGS.train_steps - start_step,
    "train_target_tokens_per_s": tokens / elapsed if elapsed else 0.0,
    "rows": rows,
  }
  print(json.dumps(result, indent=2))
  print(
    f"\ntraining: {result['train_target_tokens_per_s']:,.0f} target tokens/s over "
    f"{result['train_steps']} steps\n"
  )
  print(
    "| decoding | BLEU (test, %d sents) | batch-1 median latency | speed vs beam 4 |" % len(sources)
  )
  print("|---|---|---|---|")
  for name, row in rows.items():
    print(
      f"| {name} | {row['bleu']:.2f} | {row['latency_ms']:.1f} ms | "
      f"{base / row['latency_ms']:.2f}x |"
    )


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
