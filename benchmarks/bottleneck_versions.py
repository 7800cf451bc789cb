"""One training step before and after the bottleneck redesign, side by side in one run.

Loads the old discretization module as it is at --base (default 0f29608, the
last commit before t2t_vqem/bottlenecks/ replaced it): `git show` writes
t2t_vqem/layers/discretization.py, vq_kernel.py and vq_kernel.cc into a
temporary folder, the module's `from t2t_vqem.layers import vq_kernel` is
rewritten to load that copy, and importlib loads it; its fused C++ kernel is
compiled with g++ on first use (or loaded from its cache, ~/.cache/t2t_vqem).
The new bottlenecks come from the working tree (`registry.build_bottleneck`).

For each KxDxN shape, one training step (bottleneck.py's layer_step: forward,
loss, metrics, the M step's assigns, outputs cut to their first elements) of
hard_em and soft_em (n_s = --num_samples), timed interleaved, repetition after
repetition, with the bare distance GEMM (plain and XLA):

  old, default        the fused kernel after a TF GEMM (if it builds here)
  old, fused_kernel=False   TensorFlow ops only
  old, jit_compile=True     XLA's GEMM, then the fused kernel
  new                 graph ops
  new, jit_compile=True     the E step and Eq. 11 under XLA

Prints median ms, the ratios to the GEMM and new / old. The default shapes are
the paper's translation bottleneck (K = 4096, D = 512, N = 4096) and the
quickstart's (K = 256, D = 128; N = 512, about the latents of two quickstart
batches: 2048 tokens / 2^3 = 256 latents a batch). Usage:

  python benchmarks/bottleneck_versions.py --reps 7
  python benchmarks/bottleneck_versions.py --base 0f29608 --shapes 4096x512x4096 --reps 9

Run from a snapshot of the tree (git archive), --repo names the git checkout
that `git show` reads the old files from.
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bottleneck  # noqa: E402  (benchmarks/bottleneck.py, this folder)
import tensorflow as tf  # noqa: E402

import t2t_vqem  # noqa: E402
from t2t_vqem import registry  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD_DIR = "t2t_vqem/layers"
OLD_IMPORT = "from t2t_vqem.layers import vq_kernel"
MODES = ("hard_em", "soft_em")


def _load(name, path):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


def old_module(repo, base, directory):
  """The discretization module at `base`, importing its own vq_kernel copy."""
  for name in ("discretization.py", "vq_kernel.py", "vq_kernel.cc"):
    source = subprocess.run(
      ["git", "-C", repo, "show", f"{base}:{OLD_DIR}/{name}"],
      check=True,
      capture_output=True,
      text=True,
    ).stdout
    if name == "discretization.py":
      if source.count(OLD_IMPORT) != 1:
        raise SystemExit(f"{base}:{OLD_DIR}/{name} does not import vq_kernel as expected")
      source = source.replace(OLD_IMPORT, "import vqem_base_vq_kernel as vq_kernel")
    with open(os.path.join(directory, name), "w") as f:
      f.write(source)
  kernel = _load("vqem_base_vq_kernel", os.path.join(directory, "vq_kernel.py"))
  return _load("vqem_base_discretization", os.path.join(directory, "discretization.py")), kernel


def _steps(old, k, d, num_samples):
  steps = bottleneck.gemm_steps(tf.Variable(tf.random.normal([k, d]), trainable=False))
  for mode in MODES:
    samples = {"num_samples": num_samples} if mode == "soft_em" else {}
    for label, kwargs in (
      ("default", {}),
      ("fused_kernel=False", {"fused_kernel": False}),
      ("jit_compile=True", {"jit_compile": True}),
    ):
      steps[(mode, "old", label)] = bottleneck.layer_step(
        old.VectorQuantizer(k, mode=mode, embedding_dim=d, **samples, **kwargs)
      )
    for label, kwargs in (("default", {}), ("jit_compile=True", {"jit_compile": True})):
      steps[(mode, "new", label)] = bottleneck.layer_step(
        registry.build_bottleneck(mode, codebook_size=k, embedding_dim=d, **samples, **kwargs)
      )
  return steps


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--base", default="0f29608", help="the commit of the old module")
  parser.add_argument("--repo", default=ROOT, help="the git checkout holding --base")
  parser.add_argument(
    "--shapes",
    nargs="+",
    default=("4096x512x4096", "256x128x512"),
    help="KxDxN triples (default: %(default)s)",
  )
  parser.add_argument("--reps", type=int, default=7)
  parser.add_argument("--num_samples", type=int, default=10, help="soft_em's n_s")
  args = parser.parse_args(argv)
  base = subprocess.run(
    ["git", "-C", args.repo, "rev-parse", "--short", args.base],
    check=True,
    capture_output=True,
    text=True,
  ).stdout.strip()
  print(
    f"TF {tf.__version__}, {os.cpu_count()} CPU threads, reps={args.reps}, soft_em "
    f"n_s={args.num_samples}; old: {OLD_DIR}/discretization.py at {base}; new: "
    f"{os.path.dirname(t2t_vqem.__file__)}/bottlenecks"
  )
  with tempfile.TemporaryDirectory() as tmp:  # the old files must exist while tracing
    old, kernel = old_module(args.repo, args.base, tmp)
    start = time.perf_counter()
    available = kernel.available()
    print(
      f"old fused kernel: {'available' if available else 'UNAVAILABLE'} after "
      f"{time.perf_counter() - start:.1f} s (g++ build, or load from its cache)"
      + ("" if available else f": {kernel._state.get('why')}; old default = TF ops")
    )  # pylint: disable=protected-access
    results = [
      ((k, d, n), bottleneck.measure(_steps(old, k, d, args.num_samples), d, n, args.reps))
      for k, d, n in bottleneck.parse_shapes(args.shapes)
    ]
  for (k, d, n), t in results:
    print(f"\nK={k} D={d} N={n}: median ms of one training step\n")
    print("| step | ms | / GEMM | / GEMM XLA |\n|---|---|---|---|")
    for name, value in t.items():
      label = name if isinstance(name, str) else f"{name[0]}, {name[1]}, {name[2]}"
      print(f"| {label} | {value:.1f} | {value / t['GEMM']:.2f} | {value / t['GEMM, XLA']:.2f} |")
    print(f"\nK={k} D={d} N={n}: new / old, ratios of the medians above (< 1: new faster)\n")
    print(
      "| mode | new / old default | new jit / old default | new / old fused_kernel=False "
      "| new jit / old jit |\n|---|---|---|---|---|"
    )
    for mode in MODES:
      r = lambda a, b, m=mode: t[(m, "new", a)] / t[(m, "old", b)]  # noqa: E731
      print(
        f"| {mode} | {r('default', 'default'):.2f} | "
        f"{r('jit_compile=True', 'default'):.2f} | "
        f"{r('default', 'fused_kernel=False'):.2f} | "
        f"{r('jit_compile=True', 'jit_compile=True'):.2f} |"
      )


if __name__ == "__main__":
  sys.exit(main())
