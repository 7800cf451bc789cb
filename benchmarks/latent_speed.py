"""Benchmark (the paper's Table 1, on this CPU): batch-1 decode latency and BLEU of
latent_transformer_em at n_c = 3 and 4 against the autoregressive `transformer`
of the same width and depth, greedy and beam 4, on the embedded problem.

Every model is trained for --train_steps with its quickstart config (resuming
from --output_dir if already there), then all are timed in one process,
sentence by sentence in interleaved order (the order of the models rotates
from one sentence to the next), so machine noise hits all alike.

  python benchmarks/latent_speed.py --output_dir=/tmp/bench_latent --train_steps=1000

--gin_param bindings (e.g. 'translate_grammar_ende.num_train = 5000') apply to
every model. The table goes to stdout and OUTPUT_DIR/results.json.
"""

import json
import os
import platform
import time

from absl import app
from absl import flags
from absl import logging
import gin
import numpy as np

from t2t_vqem import config as config_lib
from t2t_vqem import decode
from t2t_vqem import metrics
from t2t_vqem.cli import common  # noqa: F401  (the shared flags: --data_dir, --gin_param, ...)
from t2t_vqem.train import trainer as trainer_lib

flags.DEFINE_string("output_dir", "/tmp/bench_latent_speed", "Where the runs go.")
flags.DEFINE_integer("train_steps", 1000, "Training steps of every model.")
flags.DEFINE_integer("bleu_sentences", 500, "Test sentences scored for BLEU.")
flags.DEFINE_integer("latency_sentences", 100, "Test sentences timed at batch size 1.")
flags.DEFINE_list(
  "length_edges",
  ["10", "20", "30"],
  "Source lengths (tokens, EOS included) that split the latency sentences "
  "into groups for the speedup-by-length table.",
)
FLAGS = flags.FLAGS

GREEDY, BEAM = "transformer, greedy", "transformer, beam 4"
# (row name, config, extra bindings, beam size)
ROWS = (
  (BEAM, "transformer_quickstart.gin", [], 4),
  (GREEDY, "transformer_quickstart.gin", [], 1),
  (
    "latent_transformer_em, n_c=3",
    "latent_transformer_em_quickstart.gin",
    ["latent_transformer_em.compress_steps = 3"],
    1,
  ),
  (
    "latent_transformer_em, n_c=4",
    "latent_transformer_em_quickstart.gin",
    ["latent_transformer_em.compress_steps = 4"],
    1,
  ),
)


def trained_model(config, bindings):
  """Trains (or resumes) the run for `config` + `bindings`; returns (trainer, info)."""
  name = os.path.splitext(config)[0] + "".join("_" + b.split("=")[-1].strip() for b in bindings)
  gin.clear_config()
  config_lib.parse_gin(
    [config],
    bindings
    + [f"Trainer.train_steps = {FLAGS.train_steps}", "Trainer.eval_every = 0"]
    + FLAGS.gin_param,
  )
  trainer = trainer_lib.Trainer(os.path.join(FLAGS.output_dir, name), data_dir=FLAGS.data_dir)
  start = trainer.restore()
  started = time.perf_counter()
  last = trainer.train()  # last logged training values ({} if already trained)
  info = {
    "run_dir": trainer.output_dir,
    "steps": trainer.step,
    "trained_now": trainer.step - start,
    "train_seconds": round(time.perf_counter() - started, 1),
    "last_train_values": last,
  }
  gin.clear_config()
  return trainer, info


def by_length(results, vocab, sources):
  """Prints and returns the median latency and speedup vs greedy per source-length group."""
  lengths = np.array([len(row) for row in decode.encode_texts(vocab, sources)])
  edges = [0] + [int(e) for e in FLAGS.length_edges] + [int(lengths.max())]
  groups = []
  print("\nBy source length (tokens, EOS included): median latency in ms, speedup vs greedy\n")
  print("| source tokens | sentences | " + " | ".join(results) + " |")
  print("|---|---|" + "---|" * len(results))
  for low, high in zip(edges[:-1], edges[1:]):
    chosen = (lengths > low) & (lengths <= high)
    if not chosen.any():
      continue
    medians = {
      name: float(np.median(np.array(row["times"])[chosen])) for name, row in results.items()
    }
    cells = [f"{m:.1f} ({medians[GREEDY] / m:.2f}x)" for m in medians.values()]
    print(f"| {low + 1}-{high} | {int(chosen.sum())} | " + " | ".join(cells) + " |")
    groups.append(
      {
        "min_tokens": low + 1,
        "max_tokens": high,
        "sentences": int(chosen.sum()),
        "median_ms": medians,
      }
    )
  return groups


def main(_):
  config_lib.register_everything()
  runs, rows, train_info = {}, [], {}
  for name, config, bindings, beam in ROWS:
    key = (config, tuple(bindings))
    if key not in runs:
      runs[key], info = trained_model(config, bindings)
      train_info[os.path.basename(info["run_dir"])] = info
    rows.append((name, runs[key], beam))

  trainer = rows[0][1]
  sources, references = trainer.problem.sources_and_references("test", FLAGS.bleu_sentences)
  results = {}
  decode_fns = {name: decode.decode_function(run.model, beam) for name, run, beam in rows}
  for name, run, beam in rows:
    hyps = decode.translate(run.model, run.vocab, sources, decode_fn=decode_fns[name])
    results[name] = {"bleu": metrics.corpus_bleu(hyps, references)[0]}
    logging.info("%s: BLEU %.2f", name, results[name]["bleu"])
  latency_sources = sources[: FLAGS.latency_sentences]
  times = decode.batch1_times(decode_fns, trainer.vocab, latency_sources)
  for name, row_times in times.items():
    results[name]["times"] = row_times
  greedy = np.median(results[GREEDY]["times"])
  beam4 = np.median(results[BEAM]["times"])
  print(
    f"\n{FLAGS.train_steps} training steps each; BLEU on {len(sources)} test sentences; "
    f"latency: median (mean) over {len(latency_sources)} sentences at batch 1; "
    f"{platform.machine()}, {os.cpu_count()} CPU threads visible\n"
  )
  print("| model | BLEU | latency median (mean) | speedup vs greedy | speedup vs beam 4 |")
  print("|---|---|---|---|---|")
  summary = {
    "train_steps": FLAGS.train_steps,
    "bleu_sentences": len(sources),
    "latency_sentences": len(latency_sources),
    "gin_param": list(FLAGS.gin_param),
    "training": train_info,
    "rows": {},
  }
  for name, row in results.items():
    latency = float(np.median(row["times"]))
    summary["rows"][name] = {
      "bleu": row["bleu"],
      "latency_median_ms": latency,
      "latency_mean_ms": float(np.mean(row["times"])),
      "speedup_vs_greedy": greedy / latency,
      "speedup_vs_beam4": beam4 / latency,
    }
    print(
      f"| {name} | {row['bleu']:.2f} | {latency:.1f} ms ({np.mean(row['times']):.1f}) | "
      f"{greedy / latency:.2f}x | {beam4 / latency:.2f}x |"
    )
  summary["by_length"] = by_length(results, trainer.vocab, latency_sources)
  target = summary["rows"]["latent_transformer_em, n_c=3"]["speedup_vs_greedy"]
  print(
    f"\nissue target (n_c=3 >= 5x faster than greedy): "
    f"{'met' if target >= 5 else 'NOT met'} ({target:.2f}x)"
  )
  for name, info in train_info.items():
    values = info["last_train_values"]
    extra = "  ".join(
      f"{k} {values[k]:.4g}" for k in ("reconstruction", "usage", "perplexity") if k in values
    )
    print(f"{name}: {info['trained_now']} steps trained in {info['train_seconds']} s  {extra}")
  with open(os.path.join(FLAGS.output_dir, "results.json"), "w") as f:
    json.dump(summary, f, indent=2)


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
