"""Benchmark: a smoke run of the paper-size models on this machine (a few steps each).

Models, each built as its Gin config binds it (Trainer.model and the model's
and bottleneck's sizes):
  teacher     em_distill.gin's Pipeline.teacher_gin (transformer_base.gin:
              Transformer base, hidden 512, 6 layers, filter 2048);
  student     em_distill.gin's Pipeline.student_gin (latent_transformer_em.gin
              with hidden 512, codebook 2^12, n_c 3, n_s 10, decay 0.999);
  cifar_em    image_cifar10_em.gin (VQ-VAE + prior, soft EM, n_s 5);
  cifar_vq    image_cifar10_vq.gin (the same, hard EM).
translate_ende_wmt and CIFAR-10 need downloads, so the batches are random:
text, --batch_tokens / --length sentences of --length tokens (EOS last, no
padding) for source and target, ids uniform in [3, --vocab_size) with the
model's vocabulary --vocab_size (32000 as translate_ende_wmt's); images,
Trainer.batch_size (128) random uint8 32x32x3 pictures.

Each model runs in its own process (so that its peak memory is its own), one
replica (default strategy), float32. The step is the trainer's own
(t2t_vqem/train/steps.py Steps.train_step in a tf.function, as Trainer builds
it). Timed, after --warmup untimed calls of each function (tracing), --reps
(text) or --image_reps (images) times, in turn:
  input       making one batch (numpy random ids or pictures -> tf tensors);
              a real run's tf.data pipeline (tokenizing, bucketing) is not
              timed here;
  step        the whole training step on that batch (forward, backward,
              finite check, optimizer update); tokens/s = target tokens (or
              pictures) / (input + step);
  fwd+bwd     the replica's forward and backward pass alone
              (Steps._forward_backward in a tf.function: losses, tape gradients;
              no optimizer update);
  bottleneck  the model's bottleneck layer's training call alone on the batch's
              real z_e (from the model's own encoder, training=True) and latent
              mask: E step, EMA M step, losses; forward only, its outputs cut to
              one element each inside the tf.function.
Peak memory: resource.getrusage(RUSAGE_SELF).ru_maxrss of the process (the
resident set's high-water mark, every allocator included; tracemalloc would
see only Python's allocations, not TensorFlow's), after building the model and
at the end. The machine is shared: the parent stops a model whose resident set
passes --max_rss_gib and runs it again at half the batch (down to
--min_batch_tokens / --min_batch_size); the output lists every stop. A smoke
run: a few steps, medians of --reps (text) or --image_reps (images) calls;
the weights hardly move, and nothing is trained to any quality.

  python benchmarks/paper_size.py
  python benchmarks/paper_size.py --configs teacher student --batch_tokens 4096 --length 32
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ("teacher", "student", "cifar_em", "cifar_vq")
PREFIX = "@@paper_size "


def gin_items(name):
  """The Gin files and bindings that make config `name`'s model."""
  import gin  # pylint: disable=import-outside-toplevel

  from t2t_vqem import config as config_lib  # pylint: disable=import-outside-toplevel

  if name in ("teacher", "student"):
    with config_lib.stage_config(["em_distill.gin"]):
      return list(gin.query_parameter(f"Pipeline.{name}_gin"))
  return {"cifar_em": ["image_cifar10_em.gin"], "cifar_vq": ["image_cifar10_vq.gin"]}[name]


def one(args):
  """Runs in the config's own process; prints one JSON line."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import gin  # pylint: disable=import-outside-toplevel
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  from t2t_vqem import config as config_lib  # pylint: disable=import-outside-toplevel
  from t2t_vqem import registry  # pylint: disable=import-outside-toplevel
  from t2t_vqem.train import schedule  # pylint: disable=import-outside-toplevel
  from t2t_vqem.train import steps as steps_lib  # pylint: disable=import-outside-toplevel

  config_lib.register_everything()
  gin_list = gin_items(args.one)
  rng = np.random.default_rng(args.seed)
  text = args.one in ("teacher", "student")
  if text:
    sentences = max(1, args.batch_tokens // args.length)

    def make_batch():
      def ids():
        x = rng.integers(3, args.vocab_size, size=(sentences, args.length), dtype=np.int32)
        x[:, -1] = 1  # EOS
        return tf.constant(x)

      return {"inputs": ids(), "targets": ids()}

    kwargs = {"vocab_size": args.vocab_size}
    dummy = {"inputs": tf.constant([[3, 1]], tf.int32), "targets": tf.constant([[3, 1]], tf.int32)}
    spec = {k: tf.TensorSpec([None, None], tf.int32) for k in dummy}

    def batch_items(f):
      return tf.reduce_sum(tf.cast(f["targets"] > 0, tf.float32))
  else:
    pictures = None  # Trainer.batch_size, read under the config below

    def make_batch():
      return {"targets": tf.constant(rng.integers(0, 256, (pictures, 32, 32, 3), dtype=np.uint8))}

    kwargs = {"image_shape": (32, 32, 3)}
    dummy = {"targets": tf.zeros((1, 32, 32, 3), tf.uint8)}
    spec = {"targets": tf.TensorSpec([None, 32, 32, 3], tf.uint8)}

    def batch_items(f):
      return tf.cast(tf.shape(f["targets"])[0], tf.float32)

  problem = type("RandomBatches", (), {"batch_items": staticmethod(batch_items)})()
  with config_lib.stage_config(gin_list):
    model_name = gin.query_parameter("Trainer.model")
    if not text:
      pictures = args.batch_size or gin.query_parameter("Trainer.batch_size")
    started = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    strategy = tf.distribute.get_strategy()
    model = registry.build_model(model_name, **kwargs)
    model(dummy, training=False)
    optimizer = schedule.make_optimizer()
    optimizer.build(model.trainable_variables)
    steps = steps_lib.Steps(strategy, model, optimizer, problem)
    train_step = tf.function(steps.train_step, input_signature=[spec])
    # (loss, gradients): returned, so that the graph keeps the backward pass.
    forward_backward = tf.function(
      lambda f: steps._forward_backward(f)[1:],  # pylint: disable=protected-access
      input_signature=[spec],
    )
    build_s = time.perf_counter() - started
    rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    batch = make_batch()
    bottleneck = getattr(model, "bottleneck", None)  # the teacher has none
    if bottleneck is None:
      bn_inputs = ()
    elif text:
      memory, memory_mask = model.encode_source(batch["inputs"], training=True)
      z_e, mask = model.encode_target(batch["targets"], memory, memory_mask, training=True)
      bn_inputs = (tf.identity(z_e), mask)
    else:
      bn_inputs = (tf.identity(model.encode_continuous(batch["targets"])),)

    def cut(out):
      return [tf.reshape(t, [-1])[0] for t in tf.nest.flatten(tuple(out))]

    if bottleneck is None:
      bn_call = lambda: tf.constant(0.0)  # noqa: E731
    elif text:
      bn_call = tf.function(lambda z, m: cut(bottleneck(z, training=True, mask=m)))
    else:
      bn_call = tf.function(lambda z: cut(bottleneck(z, training=True)))

    def sync(result):  # an eager call on the CPU returns when every output is computed
      tf.nest.flatten(result)[0].numpy()

    def timed(fn, *inputs):
      t0 = time.perf_counter()
      result = fn(*inputs)
      sync(result)
      return time.perf_counter() - t0, result

    times = {"input": [], "step": [], "fwd+bwd": [], "bottleneck": []}
    first = {}
    losses = []
    for rep in range(args.warmup + args.reps):
      t_input, batch = timed(make_batch)
      t_step, out = timed(train_step, batch)
      t_fb, _ = timed(forward_backward, batch)
      t_bn, _ = timed(bn_call, *bn_inputs)
      losses.append(float(out["loss"]))
      if rep == 0:
        first = {"step": t_step, "fwd+bwd": t_fb, "bottleneck": t_bn}
      if rep >= args.warmup:
        for name, t in (
          ("input", t_input),
          ("step", t_step),
          ("fwd+bwd", t_fb),
          ("bottleneck", t_bn),
        ):
          times[name].append(t)
        items = float(out["items"])
        times.setdefault("items_per_s", []).append(items / (t_input + t_step))
        times.setdefault("items", []).append(items)
    n_rows = int(np.prod(bn_inputs[0].shape[:-1])) if bn_inputs else 0
    result = {
      "config": args.one,
      "items": items,
      "model": model_name,
      "shape": ", ".join(f"{k} {list(v.shape)}" for k, v in batch.items()),
      "params": int(sum(int(np.prod(v.shape)) for v in model.trainable_variables)),
      "non_trainable": int(sum(int(np.prod(v.shape)) for v in model.non_trainable_variables)),
      "bottleneck": (
        f"{bottleneck.mode}, K {bottleneck.codebook_size}, D {bottleneck.embedding_dim}, "
        f"n_s {bottleneck.num_samples}, N {n_rows} rows"
        if bottleneck is not None
        else "none"
      ),
      "build_s": build_s,
      "first_s": first,
      "median_s": {k: statistics.median(v) for k, v in times.items()},
      "all_s": times,
      "rss_built_kib": rss_built,
      "rss_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      "losses": losses,
      "finite": bool(out["finite"]),
    }
  print(PREFIX + json.dumps(result), flush=True)


def rss_gib(pid):
  """The process's resident set now (GiB), 0 once it is gone."""
  try:
    with open(f"/proc/{pid}/status") as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) / 2**20
  except OSError:
    pass
  return 0.0


def watched(argv, env, max_rss_gib):
  """Runs argv to its end (stdout, stderr to temporary files); kills it if its resident
  set passes max_rss_gib (the machine is shared). (CompletedProcess, whether killed)."""
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
    process = subprocess.Popen(argv, env=env, stdout=out, stderr=err, text=True)
    over = False
    while process.poll() is None:
      if max_rss_gib and rss_gib(process.pid) > max_rss_gib:
        over = True
        process.kill()
      time.sleep(0.2)
    process.wait()
    out.seek(0)
    err.seek(0)
    return subprocess.CompletedProcess(argv, process.returncode, out.read(), err.read()), over


def config_batch_size(name):
  """Trainer.batch_size as the image config's Gin file binds it."""
  path = os.path.join(ROOT, "t2t_vqem", "gin", f"image_cifar10_{name.split('_')[1]}.gin")
  with open(path) as f:
    return int(re.search(r"^Trainer\.batch_size = (\d+)", f.read(), re.M).group(1))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
  parser.add_argument("--batch_tokens", type=int, default=4096, help="Text: tokens per batch.")
  parser.add_argument("--length", type=int, default=32, help="Text: tokens per sentence.")
  parser.add_argument("--vocab_size", type=int, default=32000, help="Text: vocabulary size.")
  parser.add_argument("--batch_size", type=int, default=0, help="Images (0: Trainer.batch_size).")
  parser.add_argument("--warmup", type=int, default=1, help="Untimed calls of each function.")
  parser.add_argument("--reps", type=int, default=2, help="Timed calls of each, text.")
  parser.add_argument(
    "--image_reps", type=int, default=1, help="Timed calls of each, images (~2 min a step)."
  )
  parser.add_argument("--seed", type=int, default=1)
  parser.add_argument(
    "--max_rss_gib", type=float, default=10.0, help="Stop a model past this resident set."
  )
  parser.add_argument("--min_batch_tokens", type=int, default=512, help="Halving stops here.")
  parser.add_argument("--min_batch_size", type=int, default=8, help="Halving stops here.")
  parser.add_argument("--json", default=None, help="Also write the results here.")
  parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.one:
    one(args)
    return
  results, failed, stopped = [], {}, []
  started = time.perf_counter()
  for name in args.configs:
    text = name in ("teacher", "student")
    amount = args.batch_tokens if text else (args.batch_size or config_batch_size(name))
    floor = args.min_batch_tokens if text else args.min_batch_size
    while True:  # halved while the model's resident set passes --max_rss_gib
      t0 = time.perf_counter()
      argv = [sys.executable, os.path.abspath(__file__), "--one", name] + [
        f"--{k}={getattr(args, k)}" for k in ("length", "vocab_size", "warmup", "seed")
      ]
      argv += [f"--batch_tokens={amount}", f"--batch_size={amount}"]
      argv.append(f"--reps={args.reps if text else args.image_reps}")
      env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
      env["PYTHONPATH"] = os.environ.get("PYTHONPATH", ROOT)
      done, over = watched(argv, env, args.max_rss_gib)
      if not over:
        break
      unit = "tokens" if text else "pictures"
      stopped.append(
        f"{name} at {amount} {unit}: stopped after {time.perf_counter() - t0:.0f} s, its "
        f"resident set past {args.max_rss_gib:g} GiB"
      )
      print(stopped[-1], file=sys.stderr, flush=True)
      if amount // 2 < floor:
        break
      amount //= 2
    lines = [line for line in done.stdout.splitlines() if line.startswith(PREFIX)]
    if over:
      failed[name] = f"stopped at every batch down to {amount} (see below)"
      continue
    if done.returncode or not lines:
      errors = [line for line in done.stderr.splitlines() if "Error" in line or "error" in line]
      failed[name] = f"exit {done.returncode}: " + (errors[-1] if errors else done.stderr[-300:])
      print(f"{name}: FAILED {failed[name]}", file=sys.stderr, flush=True)
      continue
    result = json.loads(lines[-1][len(PREFIX) :])
    result["wall_s"] = time.perf_counter() - t0
    results.append(result)
    print(f"{name}: done in {result['wall_s']:.0f} s", file=sys.stderr, flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"results": results, "failed": failed, "stopped": stopped}, f, indent=2)
  print(
    "| model | batch | parameters | peak RSS (built / end) | items/s | input (ms) | step (s) | "
    "fwd+bwd (s) | bottleneck call (ms) | bottleneck / step | first step (s) |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for r in results:
    m = r["median_s"]
    unit = "tokens" if r["config"] in ("teacher", "student") else "pictures"
    none = r["bottleneck"] == "none"
    bn = "-" if none else f"{m['bottleneck'] * 1e3:.0f}"
    share = "-" if none else f"{m['bottleneck'] / m['step']:.1%}"
    print(
      f"| {r['config']}: {r['model']} | {r['shape']} | {r['params'] / 1e6:.1f} M | "
      f"{r['rss_built_kib'] / 2**20:.2f} / {r['rss_peak_kib'] / 2**20:.2f} GiB | "
      f"{m['items_per_s']:,.1f} {unit}/s | {m['input'] * 1e3:.1f} | {m['step']:.2f} | "
      f"{m['fwd+bwd']:.2f} | {bn} | {share} | {r['first_s']['step']:.1f} |"
    )
  for name, error in failed.items():
    print(f"| {name} | FAILED: {error.replace('|', '/')} |" + " |" * 9)
  print()
  for line in stopped:
    print(f"- {line}")
  for r in results:
    print(
      f"- {r['config']}: bottleneck {r['bottleneck']}; {r['items']:.0f} items per batch; "
      f"losses {', '.join(f'{x:.3f}' for x in r['losses'])}; last step finite {r['finite']}; "
      f"built in {r['build_s']:.1f} s; process {r['wall_s']:.0f} s"
    )
  print(
    f"\n{args.warmup} untimed + {args.reps} (text) / {args.image_reps} (images) timed calls "
    "of each function per model; "
    f"total {time.perf_counter() - started:.0f} s"
  )


if __name__ == "__main__":
  main()
