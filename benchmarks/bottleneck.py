"""Speed of one training step of every registered bottleneck, side by side in one process.

For each (K, D, N) = (codes, dimension, positions), one training step of (each
built by name, `registry.build_bottleneck`, with embedding_dim = D):

  * hard_em, soft_em (--num_samples draws, default 10), vq and gumbel_softmax
    with codebook_size = K, and semhash with --num_bits bits (default 12, so
    2^12 codes), on TensorFlow graph ops;
  * hard_em and soft_em with jit_compile=True (the E step and Eq. 11 under XLA);
  * Sonnet 2's snt.nets.VectorQuantizerEMA, same outputs, in a tf.function and
    in a tf.function(jit_compile=True), if dm-sonnet imports;
  * the bare distance GEMM x @ codebook^T, the floor any exact nearest-code
    search pays, in a tf.function and in a tf.function(jit_compile=True).

A step is a tf.function of `layer(x, training=True)` (forward, loss, metrics,
the M step's assigns) returning quantized, loss and perplexity, each cut to its
first element inside the timed function (outside an XLA cluster where the
whole function is one, so XLA cannot skip work), so no big copy to numpy is
timed. The steps run interleaved, repetition after repetition, on one random
[N, D] batch; the table gives median wall times and the ratios to the GEMM.

With --parts, for each shape two more tables time growing prefixes of the
hard_em and the soft_em step on graph ops, each its own tf.function built from
t2t_vqem.bottlenecks.equations (the functions the layer runs), then the whole
layer, so the difference between rows is what a part adds. Usage:

  python benchmarks/bottleneck.py --reps 7
  python benchmarks/bottleneck.py --reps 7 --shapes 4096x512x4096 16384x512x4096 256x512x6400
  python benchmarks/bottleneck.py --reps 9 --parts --shapes 256x512x6400

dm-sonnet is a benchmark-only dependency (benchmarks/requirements.txt); if it
cannot be imported the Sonnet rows say so and the rest is measured.
"""

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # no retracing warnings: every step is its own function
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import t2t_vqem  # noqa: E402
from t2t_vqem import registry  # noqa: E402
import t2t_vqem.bottlenecks  # noqa: E402,F401  (registers the bottlenecks)
from t2t_vqem.bottlenecks import equations as eq  # noqa: E402

DEFAULT_SHAPES = ("4096x512x4096",)


def _import_sonnet():
  try:
    import sonnet as snt  # pylint: disable=g-import-not-at-top

    return snt, None
  except Exception as e:  # pylint: disable=broad-except
    return None, f"{type(e).__name__}: {e}"


def first_elements(*tensors):
  """Each tensor's first element (so the clock does not include a copy to numpy)."""
  return [tf.reshape(t, [-1])[0] for t in tensors]


def layer_step(layer):
  """tf.function(x) of one training step of a bottleneck: first elements of
  quantized, loss, perplexity."""

  @tf.function
  def step(x):
    out = layer(x, training=True)
    return first_elements(out.quantized, out.loss, out.perplexity)

  return step


def gemm_steps(codebook):
  """The bare distance GEMM, plain and under XLA (cut outside the XLA cluster)."""
  gemm = lambda x: tf.matmul(x, codebook, transpose_b=True)  # noqa: E731
  gemm_xla = tf.function(gemm, jit_compile=True)
  return {
    "GEMM": tf.function(lambda x: first_elements(gemm(x))),
    "GEMM, XLA": tf.function(lambda x: first_elements(gemm_xla(x))),
  }


def _make_steps(k, d, args, snt):
  """name -> tf.function(x) of one step."""
  steps = gemm_steps(tf.Variable(tf.random.normal([k, d]), trainable=False))
  build = lambda name, **kw: layer_step(  # noqa: E731
    registry.build_bottleneck(name, embedding_dim=d, **kw)
  )
  steps["hard_em"] = build("hard_em", codebook_size=k)
  steps["hard_em, jit_compile=True"] = build("hard_em", codebook_size=k, jit_compile=True)
  steps[f"soft_em, n_s = {args.num_samples}"] = build(
    "soft_em", codebook_size=k, num_samples=args.num_samples
  )
  steps[f"soft_em, n_s = {args.num_samples}, jit_compile=True"] = build(
    "soft_em", codebook_size=k, num_samples=args.num_samples, jit_compile=True
  )
  steps["vq"] = build("vq", codebook_size=k)
  steps["gumbel_softmax"] = build("gumbel_softmax", codebook_size=k)
  steps[f"semhash, num_bits = {args.num_bits}"] = build("semhash", num_bits=args.num_bits)
  if snt is not None:
    for name, jit in (
      ("Sonnet VectorQuantizerEMA", False),
      ("Sonnet VectorQuantizerEMA, XLA", True),
    ):
      vq = snt.nets.VectorQuantizerEMA(
        embedding_dim=d, num_embeddings=k, commitment_cost=0.25, decay=0.999, epsilon=1e-5
      )

      def sonnet(x, vq=vq):
        out = vq(x, is_training=True)
        return out["quantize"], out["loss"], out["perplexity"]

      fn = tf.function(sonnet, jit_compile=jit)
      steps[name] = tf.function(lambda x, fn=fn: first_elements(*fn(x)))
  return steps


def _make_parts(k, d, num_samples):
  """Growing prefixes of one hard_em and one soft_em step on graph ops, from the
  equations the layer runs: {"hard_em": {name: tf.function(x)}, "soft_em": ...},
  each starting with the bare GEMM and ending with the whole layer."""
  layers = {
    mode: registry.build_bottleneck(
      mode,
      embedding_dim=d,
      codebook_size=k,
      **({"num_samples": num_samples} if mode == "soft_em" else {}),
    )
    for mode in ("hard_em", "soft_em")
  }
  # The layer's initial codebook, so the soft rows see the layer's posterior.
  codebook = tf.Variable(layers["hard_em"].codebook.numpy(), trainable=False)
  ema_count = tf.Variable(tf.ones([1, k]), trainable=False)
  cb = lambda: tf.convert_to_tensor(codebook)[tf.newaxis]  # noqa: E731

  def hard_e(x):
    idx, score = eq.nearest_codes_and_scores(x[tf.newaxis], cb())
    return idx[..., tf.newaxis], score[0]

  def soft_e(x):
    return eq.sample_codes(eq.code_logits(x[tf.newaxis], cb()), num_samples), None

  def prefixes(e_step, mode):
    def mean(x):
      draws, score = e_step(x)
      return draws, score, eq._fast_mean_of_codes(cb(), draws)[0]  # pylint: disable=protected-access

    def loss(x):
      draws, score, q = mean(x)
      return draws, q, eq.commitment_loss(x, q, score)

    def stats(x):
      draws, q, value = loss(x)
      counts, sums = eq._fast_cluster_statistics(x[tf.newaxis], draws, k)  # pylint: disable=protected-access
      return q, value, eq.perplexity_and_usage(counts)[0], counts, sums

    def ema(x):
      *outputs, counts, sums = stats(x)
      return outputs + list(eq.ema_update(ema_count, cb(), counts, sums, 0.999, 1e-5, cb()))

    first = (
      "E step (GEMM, argmax, score)"
      if mode == "hard_em"
      else (f"E step (GEMM, logits, {num_samples} draws per row)")
    )
    fns = {
      "GEMM": lambda x: tf.matmul(x, codebook, transpose_b=True),
      first: e_step,
      "+ Eq. 11 mean of the drawn codes (gather / CSR)": mean,
      "+ commitment loss": loss,
      "+ M-step statistics, perplexity": stats,
      "+ EMA update values (no assign)": ema,
    }
    parts = {
      name: tf.function(
        lambda x, fn=fn: first_elements(*[t for t in tf.nest.flatten(fn(x)) if t is not None])
      )
      for name, fn in fns.items()
    }
    parts["whole layer (+ assigns, outputs)"] = layer_step(layers[mode])
    return parts

  return {"hard_em": prefixes(hard_e, "hard_em"), "soft_em": prefixes(soft_e, "soft_em")}


def _sync(result):
  for t in tf.nest.flatten(result):
    t.numpy()


def measure(steps, d, n, reps):
  """Median ms of each step of {name: tf.function(x)} on one random [n, d] batch,
  called interleaved, repetition after repetition (also used by
  bottleneck_versions.py)."""
  x = tf.random.normal([n, d])
  for step in steps.values():  # trace, compile, warm up
    _sync(step(x))
    _sync(step(x))
  times = {name: [] for name in steps}
  for _ in range(reps):
    for name, step in steps.items():
      start = time.perf_counter()
      _sync(step(x))
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(v) * 1e3 for name, v in times.items()}


def parse_shapes(shapes):
  return [tuple(int(v) for v in s.split("x")) for s in shapes]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--reps", type=int, default=7)
  parser.add_argument("--num_samples", type=int, default=10, help="soft_em's n_s")
  parser.add_argument("--num_bits", type=int, default=12, help="semhash's bits")
  parser.add_argument(
    "--parts",
    action="store_true",
    help="also time growing prefixes of the hard_em and soft_em steps",
  )
  parser.add_argument(
    "--shapes", nargs="+", default=DEFAULT_SHAPES, help="KxDxN triples (default: %(default)s)"
  )
  args = parser.parse_args(argv)
  snt, sonnet_error = _import_sonnet()
  print(
    f"TF {tf.__version__}, {platform.processor() or platform.machine()}, "
    f"{os.cpu_count()} CPU threads, reps={args.reps}; t2t_vqem from "
    f"{os.path.dirname(t2t_vqem.__file__)}"
  )
  print(
    f"dm-sonnet unavailable ({sonnet_error}): no Sonnet rows"
    if snt is None
    else f"dm-sonnet {snt.__version__}"
  )
  for k, d, n in parse_shapes(args.shapes):
    t = measure(_make_steps(k, d, args, snt), d, n, args.reps)
    print(
      f"\nK={k} D={d} N={n}: median ms of one training step; / GEMM: over the "
      "plain GEMM; / GEMM XLA: over the GEMM under XLA\n"
    )
    print("| step | ms | / GEMM | / GEMM XLA |\n|---|---|---|---|")
    for name, value in t.items():
      print(f"| {name} | {value:.1f} | {value / t['GEMM']:.2f} | {value / t['GEMM, XLA']:.2f} |")
    if not args.parts:
      continue
    parts = _make_parts(k, d, args.num_samples)
    t = measure(
      {(mode, name): fn for mode, fns in parts.items() for name, fn in fns.items()}, d, n, args.reps
    )
    for mode, fns in parts.items():
      print(f"\nParts of the {mode} step, K={k} D={d} N={n}, graph ops, median ms\n")
      print("| prefix of the step | ms | / GEMM | added ms |\n|---|---|---|---|")
      previous = None
      for name in fns:
        value = t[(mode, name)]
        added = "" if previous is None else f"{value - previous:+.1f}"
        print(f"| {name} | {value:.1f} | {value / t[(mode, 'GEMM')]:.2f} | {added} |")
        previous = value


if __name__ == "__main__":
  main()
