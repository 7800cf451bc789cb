"""Benchmark (the paper's Table 2, on the embedded image problem): hard vs soft EM.

Trains image_vqvae_vq (hard EM) and image_vqvae_em (soft EM, n_s = 10) with
their quickstart configs for --train_steps each, over --seeds, alternating
the two modes so that machine load hits both alike; then reports the test
split's bits/dim lower bound (and its reconstruction and prior parts), the
codebook usage and perplexity, and the training throughput in images/s.
Prints a markdown table for BENCHMARKS.md; a rerun with the same
--output_dir resumes each run from its checkpoint.

  python benchmarks/image_em.py --output_dir=/tmp/bench_image --train_steps=400
"""

import json
import os
import time

from absl import app
from absl import flags
from absl import logging
import gin
import numpy as np

from t2t_vqem import config as config_lib
from t2t_vqem.cli import common  # noqa: F401  (the shared flags: --data_dir, --gin_param, ...)
from t2t_vqem.train import trainer as trainer_lib

flags.DEFINE_string("output_dir", "/tmp/bench_image_em", "Where the runs go.")
flags.DEFINE_integer("train_steps", 400, "Training steps of every run.")
flags.DEFINE_list("seeds", ["1", "2", "3"], "Trainer seeds.")
FLAGS = flags.FLAGS

MODES = (
  ("hard EM", "image_shapes_vq_quickstart.gin"),
  ("soft EM (n_s = 10)", "image_shapes_em_quickstart.gin"),
)
REPORTED = (
  "bits_per_dim",
  "bits_per_dim_reconstruction",
  "bits_per_dim_prior",
  "usage",
  "perplexity",
)


def train_and_test(config, seed, run_dir):
  """Trains one run to --train_steps; returns its test metrics and images/s."""
  result_path = os.path.join(run_dir, "bench_result.json")
  if os.path.exists(result_path):
    with open(result_path) as f:
      return json.load(f)
  gin.clear_config()
  config_lib.parse_gin(
    [config] + FLAGS.gin_file,
    [
      f"Trainer.train_steps = {FLAGS.train_steps}",
      f"Trainer.seed = {seed}",
      "Trainer.eval_every = 0",
      "Trainer.eval_pictures = 8",
    ]
    + FLAGS.gin_param,
  )
  trainer = trainer_lib.Trainer(run_dir, data_dir=FLAGS.data_dir)
  start = trainer.restore()
  images, started = 0.0, time.perf_counter()
  for step in range(start + 1, FLAGS.train_steps + 1):
    images += float(trainer.train_step(next(trainer.train_iterator))["items"])
    if step % 50 == 0:
      logging.info("%s seed %s: step %d", config, seed, step)
  elapsed = time.perf_counter() - started
  trainer.manager.save(checkpoint_number=FLAGS.train_steps)
  test = trainer.evaluate("test")
  result = {k: test[k] for k in REPORTED}
  result["images_per_s"] = images / elapsed if elapsed else None
  with open(result_path, "w") as f:
    json.dump(result, f, indent=2)
  return result


def main(_):
  config_lib.register_everything()
  results = {name: [] for name, _ in MODES}
  for seed in FLAGS.seeds:
    for name, config in MODES:
      run_dir = os.path.join(FLAGS.output_dir, f"{config.split('_')[2]}-seed{seed}")
      results[name].append(train_and_test(config, seed, run_dir))
  print(json.dumps(results, indent=2))
  print(
    f"\n{FLAGS.train_steps} steps per run, seeds {', '.join(FLAGS.seeds)}; "
    "test split; mean ± std over seeds\n"
  )
  print(
    "| bottleneck | bits/dim | reconstruction part | prior part | codebook usage | "
    "perplexity | train images/s |"
  )
  print("|---|---|---|---|---|---|---|")
  for name, runs in results.items():
    cells = []
    for key in REPORTED + ("images_per_s",):
      values = np.array([run[key] for run in runs if run[key] is not None], float)
      cells.append(
        f"{values.mean():.3f} ± {values.std():.3f}"
        if key != "images_per_s"
        else f"{values.mean():.1f}"
      )
    print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
