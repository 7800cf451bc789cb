"""Benchmark: the image quickstarts over seeds, as a user runs them.

For each seed, runs the command

  t2t_vqem-trainer --gin_file=image_shapes_<vq|em>_quickstart.gin --output_dir=DIR \
      --gin_param='Trainer.seed = S'

as a subprocess (hard and soft EM alternating, so machine load hits both alike),
times it, and reads the test split's bits/dim from DIR/test_results.json. The
yardstick is the data's marginal entropy: the test split's bits per sub-pixel
under the histogram of the training split's sub-pixel values (add-one
smoothed), which is what a decoder that ignores its latents can reach. Prints
one row per run and the mean of each mode as a markdown table; the PNG grids are
in DIR/pictures/. A run whose test_results.json exists is not run again.

  python benchmarks/image_quickstart_seeds.py --output_dir=runs/image_seeds
"""

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags
import numpy as np

from t2t_vqem import config as config_lib
from t2t_vqem import registry

flags.DEFINE_string("output_dir", "runs/image_seeds", "Where the runs go.")
flags.DEFINE_list("seeds", ["1", "2", "3"], "Trainer seeds.")
flags.DEFINE_string("data_dir", None, "The trainer's --data_dir (default: its own).")
FLAGS = flags.FLAGS

MODES = (("hard EM", "vq"), ("soft EM", "em"))


def marginal_bits_per_dim(train, test):
  """Bits per sub-pixel of uint8 `test` pictures under the add-one smoothed histogram of
  the sub-pixel values of `train`."""
  counts = np.bincount(train.reshape(-1), minlength=256).astype(np.float64) + 1.0
  log2_p = np.log2(counts / counts.sum())
  return float(-log2_p[test.reshape(-1)].mean())


def run(mode, seed):
  out = os.path.join(FLAGS.output_dir, f"{mode}-seed{seed}")
  results = os.path.join(out, "test_results.json")
  if not os.path.exists(results):
    command = [
      sys.executable,
      "-m",
      "t2t_vqem.cli.trainer",
      f"--gin_file=image_shapes_{mode}_quickstart.gin",
      f"--output_dir={out}",
      f"--gin_param=Trainer.seed = {seed}",
    ] + ([f"--data_dir={FLAGS.data_dir}"] if FLAGS.data_dir else [])
    started = time.perf_counter()
    subprocess.run(command, check=True)
    with open(os.path.join(out, "wall_seconds.txt"), "w") as f:
      f.write(f"{time.perf_counter() - started:.1f}\n")
  with open(results) as f:
    row = json.load(f)
  wall = os.path.join(out, "wall_seconds.txt")
  row["wall_seconds"] = float(open(wall).read()) if os.path.exists(wall) else None
  return row


def main(_):
  rows = {name: [] for name, _ in MODES}
  for seed in FLAGS.seeds:  # the modes alternate
    for name, mode in MODES:
      rows[name].append(run(mode, seed))
  config_lib.register_everything()
  config_lib.parse_gin(["image_shapes_em_quickstart.gin"], [])
  problem = registry.build_problem("image_shapes", data_dir=FLAGS.data_dir)
  train, test = (
    next(iter(problem.images(split).batch(10**6))).numpy() for split in ("train", "test")
  )
  marginal = marginal_bits_per_dim(train, test)
  print(f"\nmarginal entropy of the sub-pixel values: {marginal:.3f} bits/dim\n")
  print(
    "| bottleneck | seed | bits/dim | reconstruction part | below the marginal | "
    "prior part | codebook usage | wall time |"
  )
  print("|---|---|---|---|---|---|---|---|")
  for name, runs in rows.items():
    for seed, r in zip(FLAGS.seeds, runs):
      recon = r["bits_per_dim_reconstruction"]
      wall = f"{r['wall_seconds'] / 60:.1f} min" if r["wall_seconds"] else "-"
      print(
        f"| {name} | {seed} | {r['bits_per_dim']:.3f} | {recon:.3f} | {marginal - recon:.3f} | "
        f"{r['bits_per_dim_prior']:.3f} | {r['usage']:.3f} | {wall} |"
      )
    mean = {
      k: np.mean([r[k] for r in runs]) for k in ("bits_per_dim", "bits_per_dim_reconstruction")
    }
    print(
      f"| {name} | mean | {mean['bits_per_dim']:.3f} | {mean['bits_per_dim_reconstruction']:.3f} | "
      f"{marginal - mean['bits_per_dim_reconstruction']:.3f} | | | |"
    )


if __name__ == "__main__":
  app.run(main)
