"""Speed of one bottleneck training step, side by side in one process.

Compares, for each (K, D, N) = (codebook size, dimension, positions):
  * t2t_vqem VectorQuantizer, mode="hard_em": E step + straight-through output
    + commitment loss + perplexity + EMA M step (assigns), in a tf.function,
    as it runs by default: after the distance GEMM, one fused CPU kernel
    (t2t_vqem/layers/vq_kernel.cc) where it builds;
  * the same layer with TensorFlow ops only (fused_kernel=False);
  * the same layer with jit_compile=True (the distance GEMM compiled with XLA,
    then the fused kernel);
  * Sonnet 2's snt.nets.VectorQuantizerEMA, same outputs, in a tf.function;
  * the bare distance GEMM x @ codebook^T alone (plain tf.function), the floor
    any exact nearest-neighbour search pays;
  * VectorQuantizer mode="soft_em" with --num_samples draws (default 10), in
    the same three ways.

Functions are called in interleaved order, repetition after repetition, and
the table shows median wall times and ratios. With --parts, two more tables
time growing prefixes of the hard_em step (E step; + the gather of the chosen
codes; + the commitment loss; + the EMA statistics and metrics; the whole
layer) and of the soft_em step (logits; + the draws; + the mean of the drawn
codes; + loss; + statistics; the whole layer), each its own tf.function built
from the module's TF-op functions, so the difference between rows is what a
part adds; then the whole default layer (the fused kernel). It also prints
how many distinct codes a row's soft-EM draws hold at the initial codebook
(the fused kernel's Eq. 11 and sums cost grows with it). With --sums, a table of the ways to form the M step's sums C^T x and
the mean of the drawn codes C e (Eq. 11) from the draws' sparse matrix C
(one draw per row and --num_samples draws per row): sparse segment
reductions after a sort (tf.sparse.segment_sum / segment_mean), and CSR
products: C^T x by scattering into the [K, D] output (C with transpose_a,
faster at small K but its sums come out in a varying order from run to run)
and with C^T sorted by code (what the layer uses), and C e. Usage:

  python benchmarks/bottleneck.py                 # the 3 default shapes
  python benchmarks/bottleneck.py --reps 9 --shapes 4096x512x4096
  python benchmarks/bottleneck.py --parts --shapes 256x512x6400
  python benchmarks/bottleneck.py --sums --shapes 256x512x6400 2048x512x4096 4096x512x4096

dm-sonnet is a benchmark-only dependency (benchmarks/requirements.txt); if it
cannot be imported its columns say so and the rest is measured.
"""

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from t2t_vqem.layers import discretization  # noqa: E402
from t2t_vqem.layers import vq_kernel  # noqa: E402

DEFAULT_SHAPES = ((4096, 512, 4096), (16384, 512, 4096), (256, 512, 6400))


def _import_sonnet():
  try:
    import sonnet as snt  # pylint: disable=g-import-not-at-top
    return snt, None
  except Exception as e:  # pylint: disable=broad-except
    return None, f"{type(e).__name__}: {e}"


def _make_steps(k, d, num_samples, snt):
  """name -> tf.function(x) of one step."""
  steps = {}
  codebook = tf.Variable(tf.random.normal([k, d]), trainable=False)

  def ours(mode, **kwargs):
    layer = discretization.VectorQuantizer(
        k, mode=mode, num_samples=num_samples, embedding_dim=d, **kwargs)

    @tf.function
    def step(x):
      out = layer(x, training=True)
      return out.quantized, out.loss, out.perplexity
    return step

  for name, mode in (("ours", "hard_em"), ("soft", "soft_em")):
    steps[name] = ours(mode)  # the default: the fused kernel where it builds
    steps[name + "_ops"] = ours(mode, fused_kernel=False)
    steps[name + "_xla"] = ours(mode, jit_compile=True)

  @tf.function
  def gemm(x):
    return tf.matmul(x, codebook, transpose_b=True)

  @tf.function(jit_compile=True)
  def gemm_xla(x):
    return tf.matmul(x, codebook, transpose_b=True)

  steps["gemm"] = gemm
  steps["gemm_xla"] = gemm_xla
  if snt is not None:
    vq = snt.nets.VectorQuantizerEMA(
        embedding_dim=d, num_embeddings=k, commitment_cost=0.25,
        decay=0.999, epsilon=1e-5)

    vq_xla = snt.nets.VectorQuantizerEMA(
        embedding_dim=d, num_embeddings=k, commitment_cost=0.25,
        decay=0.999, epsilon=1e-5)

    @tf.function
    def sonnet(x):
      out = vq(x, is_training=True)
      return out["quantize"], out["loss"], out["perplexity"]

    @tf.function(jit_compile=True)
    def sonnet_xla(x):
      out = vq_xla(x, is_training=True)
      return out["quantize"], out["loss"], out["perplexity"]

    steps["sonnet"] = sonnet
    steps["sonnet_xla"] = sonnet_xla
  return steps


def _make_parts(k, d, num_samples):
  """Growing prefixes of one hard_em and one soft_em training step.

  Returns {"hard_em": {name: tf.function(x)}, "soft_em": {...}}, each starting
  with the bare GEMM.
  """
  # The layer's initial codebook: the fused kernel's cost depends on how
  # spread the soft posterior is, and the last rows time the layer itself.
  codebook = tf.Variable(discretization.VectorQuantizer(
      k, embedding_dim=d).codebook.numpy(), trainable=False)
  cb = codebook[tf.newaxis]

  def e_step(x):
    idx, score = discretization.nearest_codes_and_scores(x[tf.newaxis], cb)
    return idx[..., tf.newaxis], score[0]

  def gathered(x):
    idx, score = e_step(x)
    return idx, score, discretization.mean_of_codes(cb, idx)[0]

  def with_loss(x):
    idx, score, q = gathered(x)
    return idx, q, discretization.commitment_loss(x, q, score)

  def with_stats(x):
    idx, q, loss = with_loss(x)
    counts, sums = discretization.cluster_statistics(x[tf.newaxis], idx, k)
    return q, loss, discretization.perplexity_and_usage(counts)[0], sums

  def soft_logits(x):
    return discretization.code_logits(x[tf.newaxis], cb)

  def drawn(x):
    return discretization.sample_codes(soft_logits(x), num_samples)

  def soft_mean(x):
    idx = drawn(x)
    return idx, discretization.mean_of_codes(cb, idx)[0]

  def soft_loss(x):
    idx, q = soft_mean(x)
    return idx, q, discretization.commitment_loss(x, q)

  def soft_stats(x):
    idx, q, loss = soft_loss(x)
    counts, sums = discretization.cluster_statistics(x[tf.newaxis], idx, k)
    return q, loss, discretization.perplexity_and_usage(counts)[0], sums

  def layer_step(mode, **kwargs):
    layer = discretization.VectorQuantizer(
        k, mode=mode, num_samples=num_samples, embedding_dim=d, **kwargs)

    def step(x):
      out = layer(x, training=True)
      return out.quantized, out.loss, out.perplexity
    return tf.function(step)

  gemm = tf.function(lambda x: tf.matmul(x, codebook, transpose_b=True))
  return {
      "hard_em": {
          "GEMM": gemm,
          "E step (GEMM, bias, argmax, score)": tf.function(e_step),
          "+ gather of the chosen codes": tf.function(gathered),
          "+ commitment loss": tf.function(with_loss),
          "+ EMA statistics, perplexity": tf.function(with_stats),
          "whole layer, TF ops (+ EMA update, assigns)": layer_step(
              "hard_em", fused_kernel=False),
          "whole layer, fused kernel (the default)": layer_step("hard_em")},
      "soft_em": {
          "GEMM": gemm,
          "E step logits (GEMM, bias, scale)": tf.function(soft_logits),
          f"+ {num_samples} draws per row": tf.function(drawn),
          "+ mean of the drawn codes (Eq. 11)": tf.function(soft_mean),
          "+ commitment loss": tf.function(soft_loss),
          "+ EMA statistics (fractional), perplexity": tf.function(soft_stats),
          "whole layer, TF ops (+ EMA update, assigns)": layer_step(
              "soft_em", fused_kernel=False),
          "whole layer, fused kernel (the default)": layer_step("soft_em")}}


def _make_sums(k, d, n, num_samples):
  """C^T x and C e of random draws, several ways: name -> tf.function(x)."""
  codebook = tf.Variable(tf.random.normal([k, d]), trainable=False)
  steps = {"GEMM": tf.function(lambda x: tf.matmul(x, codebook, transpose_b=True))}
  for s in sorted({1, num_samples}):
    draws = tf.random.uniform([1, n, s], 0, k, tf.int32)
    codes = tf.reshape(draws, [-1])
    rows = tf.repeat(tf.range(n), s)

    def segment_sum(x, codes=codes, rows=rows):
      perm = tf.argsort(codes)
      return tf.sparse.segment_sum(x, tf.gather(rows, perm), tf.gather(codes, perm),
                                   num_segments=k)

    def scatter(x, draws=draws):
      return tf.raw_ops.SparseMatrixMatMul(
          a=discretization._draw_matrix(draws, k), b=x, transpose_a=True)  # pylint: disable=protected-access

    def by_code(x, draws=draws):
      return tf.raw_ops.SparseMatrixMatMul(
          a=discretization._draw_matrix(draws, k, by_code=True), b=x)  # pylint: disable=protected-access

    steps[(s, "segment_sum")] = tf.function(segment_sum)
    steps[(s, "scatter")] = tf.function(scatter)
    steps[(s, "by_code")] = tf.function(by_code)
    if s > 1:
      steps[(s, "segment_mean")] = tf.function(
          lambda x, codes=codes, rows=rows: tf.sparse.segment_mean(
              codebook, codes, rows, num_segments=n))
      steps[(s, "csr_mean")] = tf.function(
          lambda x, draws=draws: discretization.mean_of_codes(codebook[tf.newaxis], draws))
  return steps


def _distinct_codes(k, d, n, num_samples):
  """Mean number of distinct codes among a row's draws, one training step
  of a fresh soft_em layer on the benchmark's random batch."""
  layer = discretization.VectorQuantizer(
      k, mode="soft_em", num_samples=num_samples, embedding_dim=d)
  idx = np.sort(layer(tf.random.normal([n, d]), training=True).indices.numpy(), -1)
  return float(np.mean(1 + np.sum(idx[:, 1:] != idx[:, :-1], -1)))


def _first_elements(fn):
  """fn's outputs cut to their first elements outside fn (so outside its XLA
  cluster, if any), so that the clock does not include copying results such
  as the [N, K] GEMM output (268 MB at K = 16384) to numpy."""
  return tf.function(
      lambda x: [tf.reshape(t, [-1])[0] for t in tf.nest.flatten(fn(x))])


def _sync(result):
  for t in tf.nest.flatten(result):
    t.numpy()


def measure(steps, d, n, reps):
  """Median ms of each step of {name: fn(x)} on one random [n, d] batch,
  interleaved, outputs cut to their first elements (also used by
  layer_versions.py)."""
  steps = {name: _first_elements(step) for name, step in steps.items()}
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


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--reps", type=int, default=7)
  parser.add_argument("--num_samples", type=int, default=10)
  parser.add_argument("--parts", action="store_true",
                      help="also time growing prefixes of the hard_em step")
  parser.add_argument("--sums", action="store_true",
                      help="also time the ways to form the M step's sums and Eq. 11's mean")
  parser.add_argument(
      "--shapes", nargs="*", default=None,
      help="KxDxN triples, e.g. 4096x512x4096 (default: the paper-scale 3)")
  args = parser.parse_args(argv)
  shapes = DEFAULT_SHAPES if not args.shapes else tuple(
      tuple(int(v) for v in s.split("x")) for s in args.shapes)
  snt, sonnet_error = _import_sonnet()
  print(f"TF {tf.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU threads, reps={args.reps}, "
        f"soft_em num_samples={args.num_samples}")
  if snt is None:
    print(f"dm-sonnet unavailable ({sonnet_error}); Sonnet columns are n/a.")
  else:
    import sonnet  # pylint: disable=g-import-not-at-top
    print(f"dm-sonnet {sonnet.__version__}")
  rows = []
  for k, d, n in shapes:
    rows.append(((k, d, n), measure(_make_steps(k, d, args.num_samples, snt),
                                     d, n, args.reps)))
    print(f"measured K={k} D={d} N={n}", file=sys.stderr, flush=True)

  def ms(t, name):
    return f"{t[name]:.1f}" if name in t else "n/a"

  def ratio(t, a, b):
    return f"{t[a] / t[b]:.2f}" if a in t and b in t else "n/a"

  kernel = ("the fused kernel" if vq_kernel.available() else
            "NOT the fused kernel, which is unavailable here")
  for title, sfx, ref in (
      (f"Plain TF graph (tf.function), the default step ({kernel})", "", ""),
      ("Plain TF graph, TensorFlow ops only (fused_kernel=False)", "_ops", ""),
      ("XLA (ours: jit_compile=True, i.e. XLA's GEMM + the fused kernel; "
       "GEMM and Sonnet: tf.function(jit_compile=True))", "_xla", "_xla")):
    print(f"\n{title}, median ms of one training step\n")
    print("| K | D | N | GEMM | hard_em (ours) | ours / GEMM | Sonnet EMA | "
          "Sonnet / ours | soft_em x" + str(args.num_samples) +
          " | soft / hard |")
    print("|" + "---|" * 10)
    for (k, d, n), t in rows:
      print(f"| {k} | {d} | {n} | {ms(t, 'gemm' + ref)} | "
            f"{ms(t, 'ours' + sfx)} | {ratio(t, 'ours' + sfx, 'gemm' + ref)} | "
            f"{ms(t, 'sonnet' + ref)} | "
            f"{ratio(t, 'sonnet' + ref, 'ours' + sfx)} | "
            f"{ms(t, 'soft' + sfx)} | {ratio(t, 'soft' + sfx, 'ours' + sfx)} |")
  print("\nHow spread the soft E step's posterior is at the initial codebook "
        "(the cost of Eq. 11 and of the sums grows with the distinct codes "
        "among a row's draws):\n")
  print("| K | D | N | distinct codes per row, of " + str(args.num_samples) +
        " draws |\n|---|---|---|---|")
  for k, d, n in shapes:
    print(f"| {k} | {d} | {n} | {_distinct_codes(k, d, n, args.num_samples):.2f} |")

  if args.parts:
    for k, d, n in shapes:
      parts = _make_parts(k, d, args.num_samples)
      t = measure({(mode, name): fn for mode, fns in parts.items()
                    for name, fn in fns.items()}, d, n, args.reps)
      for mode, fns in parts.items():
        print(f"\nParts of the {mode} step, K={k} D={d} N={n}, plain TF "
              "graph, median ms\n")
        print("| prefix of the step | ms | / GEMM | added ms |")
        print("|---|---|---|---|")
        previous = None
        for name in fns:
          value = t[(mode, name)]
          added = "" if previous is None else f"{value - previous:+.1f}"
          print(f"| {name} | {value:.1f} | {value / t[(mode, 'GEMM')]:.2f} | "
                f"{added} |")
          previous = value
  if args.sums:
    print("\nThe M step's sums C^T x and the mean of the drawn codes C e (Eq. 11), "
          "plain TF graph, median ms\n")
    print("| K | D | N | draws per row | GEMM | C^T x: segment sum | CSR scatter | "
          "CSR by code (used) | C e: segment mean | CSR (used) |")
    print("|" + "---|" * 10)
    for k, d, n in shapes:
      t = measure(_make_sums(k, d, n, args.num_samples), d, n, args.reps)
      for s in sorted({1, args.num_samples}):
        mean = (f"{t[(s, 'segment_mean')]:.1f} | {t[(s, 'csr_mean')]:.1f}" if s > 1
                else "- | -")
        print(f"| {k} | {d} | {n} | {s} | {t['GEMM']:.1f} | "
              f"{t[(s, 'segment_sum')]:.1f} | {t[(s, 'scatter')]:.1f} | "
              f"{t[(s, 'by_code')]:.1f} | {mean} |")


if __name__ == "__main__":
  main()
