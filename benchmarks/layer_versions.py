"""Speed of one VectorQuantizer training step at two git revisions, side by side.

Loads t2t_vqem/layers/discretization.py as it is at --base (via `git show`)
and as it is in the working tree, builds the same layer from each, and times
one training step (forward + EMA update, in a tf.function; outputs cut to
their first elements so that no copy to numpy is timed) interleaved with the
bare distance GEMM, for hard_em and soft_em, with no mask or with a random
mask that drops --mask_fraction of the rows (as padding does in training).
Prints median ms and the ratio to the GEMM. Without --base, the working
tree's steps alone with the GEMM (a step's time depends a little on what
ran just before it: BENCHMARKS.md). Usage:

  python benchmarks/layer_versions.py --base ef42f29 --shape 256x512x6400 --reps 31
  python benchmarks/layer_versions.py --base ef42f29 --shape 256x512x6400 --mask_fraction 0.1
  python benchmarks/layer_versions.py --shape 256x512x6400 --reps 31
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from bottleneck import measure  # noqa: E402  (this folder is on the path)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = "t2t_vqem/layers/discretization.py"


def _load(name, path):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _module_at(revision, directory):
  source = subprocess.run(["git", "-C", ROOT, "show", f"{revision}:{MODULE}"],
                          check=True, capture_output=True, text=True).stdout
  path = os.path.join(directory, "discretization_base.py")
  with open(path, "w") as f:
    f.write(source)
  return _load("discretization_base", path)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--base", help="git revision to compare with (none: the "
                      "working tree alone with the GEMM)")
  parser.add_argument("--shape", default="256x512x6400", help="KxDxN")
  parser.add_argument("--reps", type=int, default=21)
  parser.add_argument("--num_samples", type=int, default=10)
  parser.add_argument("--mask_fraction", type=float, default=0.0,
                      help="fraction of rows masked out (0: no mask)")
  args = parser.parse_args(argv)
  k, d, n = (int(v) for v in args.shape.split("x"))
  with tempfile.TemporaryDirectory() as tmp:
    versions = {"working tree": _load("discretization_now", os.path.join(ROOT, MODULE))}
    if args.base:
      versions = {args.base: _module_at(args.base, tmp), **versions}
    codebook = tf.Variable(tf.random.normal([k, d]))
    mask = (tf.random.uniform([n]) >= args.mask_fraction) if args.mask_fraction else None
    steps = {"GEMM": lambda v: tf.matmul(v, codebook, transpose_b=True)}
    for mode in ("hard_em", "soft_em"):
      for version, module in versions.items():
        layer = module.VectorQuantizer(k, mode=mode, num_samples=args.num_samples,
                                       embedding_dim=d)

        def step(v, layer=layer):
          out = layer(v, training=True, mask=mask)
          return out.quantized, out.loss, out.perplexity
        steps[f"{mode}, {version}"] = step
    median = measure(steps, d, n, args.reps)  # traces while the files exist
  print(f"K={k} D={d} N={n}, mask_fraction={args.mask_fraction}, reps={args.reps}, "
        f"soft_em num_samples={args.num_samples}; median ms of one training step\n")
  print("| step | ms | / GEMM |\n|---|---|---|")
  for name, value in median.items():
    print(f"| {name} | {value:.1f} | {value / median['GEMM']:.2f} |")


if __name__ == "__main__":
  sys.exit(main())
