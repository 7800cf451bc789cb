"""What the bottleneck's execution path changes of a WHOLE training step (not of its call alone).

Runs on two trees, the two variants chosen by which one it finds:

  new tree (t2t_vqem/bottlenecks/, no C++ op): "XLA", the bottleneck built with
      jit_compile=True (E step and Eq. 11 compiled with XLA), against "graph
      ops", jit_compile=False (the default, TensorFlow graph ops), given to the
      model as bottleneck_args={"jit_compile": ...} (the rest from the Gin file);
  old tree (0f29608, where t2t_vqem.layers.vq_kernel is importable): "op",
      the VectorQuantizer's `fused_kernel` resolved as by default (the fused
      CPU op of t2t_vqem/layers/vq_kernel.cc where it builds), against "TF ops",
      `model.bottleneck.fused_kernel = False` set before its first training call.

For each configuration two copies of the model are built with the same seed
(so the same initial weights), one per variant. Four functions are timed after
--warmup untimed calls each (the first traces and compiles), repetition by
repetition in interleaved order: step A, step B, bottleneck A, bottleneck B
(A = XLA or op, B = graph ops or TF ops), then the pairs swapped in the next
repetition (so the two whole steps always run side by side in time):

  1. step, A:      the Trainer's own training step (t2t_vqem.train.steps.Steps.train_step;
                   on the old tree the Trainer's _distributed_train_step):
                   model.loss_terms forward, the losses, tape gradients,
                   optimizer.apply_gradients; the bottleneck's EMA assigns run
                   inside its training call; one tf.function with the
                   Trainer's input signature, default strategy (one device),
                   on one fixed batch;
  2. step, B:      the same with the other variant;
  3. bottleneck, A / B: the model's own bottleneck layer's training
                   call alone (E step, straight-through output, commitment
                   loss, soft targets, perplexity/usage, EMA update; forward
                   only, no gradient) on that batch's real z_e (the target
                   encoder's output with training=True, before any step) and
                   latent mask, its outputs cut to their first elements inside
                   the tf.function, so no copy to numpy is timed.

Tables (wall-clock, then the process's CPU time over all its threads, which
other jobs on the machine disturb less): medians; saving = 1 - step(A) /
step(B), the share of a whole training step variant A saves; the per-pair
savings are the same ratio within each repetition's side-by-side pair;
"bottleneck saved / step" = (bottleneck B - bottleneck A) / step(B), what the
bottleneck call's own difference is of a whole step; share = bottleneck call /
whole step, each variant. The last table times lt_em_paper's bottleneck call
alone at a larger N (--paper_bn_latents).

Configurations (--configs):
  lt_em_quick   latent_transformer_em_quickstart.gin: hidden 128, 2 layers, K 256,
                n_s 10; a real training batch of translate_grammar_ende
                (batch_tokens 2048; of the first --candidates training batches, the
                one with the median number of latent positions).
  lt_em_paper   latent_transformer_em.gin sizes: hidden 512, 6 layers, filter 2048,
                K 4096, D 512, n_s 10, vocab 32000; translate_ende_wmt needs a
                download, so random token batches: --paper_batch sentences of
                --paper_length tokens (EOS included, no padding) for source and
                target; N = batch * length / 8 latents.
  img_em_quick  image_shapes_em_quickstart.gin: batch 32 of image_shapes pictures
                (N = 32 * 8*8*10 = 20480, K 256, D 64, n_s 10).
  img_em_cifar  image_cifar10_em.gin sizes (hidden 256, D 512, K 256, prior 6x512),
                --cifar_batch pictures of image_shapes (CIFAR-10 needs a download;
                same 32x32x3 uint8 shape).
  lt_vq_quick   latent_transformer_vq_quickstart.gin (hard EM), the same kind of
                batch as lt_em_quick.

N below is the number of rows the bottleneck quantizes (B * L, padding rows
included, as the GEMM sees them) and, for text, how many of them are real
latents (kept by the mask).

Commands, from the repository root (the script puts its own checkout first on
sys.path, so that checkout's t2t_vqem wins over any installed copy):

  python benchmarks/step_share.py      # new tree, all five configs
  python benchmarks/step_share.py --reps 15 --configs lt_em_quick lt_vq_quick
  python benchmarks/step_share.py --configs lt_em_paper --big_reps 7 \\
      --paper_batch 128 --paper_length 32 --paper_bn_latents 4096

  # old tree (fused op against TF ops; all five about 17 min on 2 cores):
  git worktree add /tmp/old 0f29608 && cp benchmarks/step_share.py /tmp/old/benchmarks/ \\
      && cd /tmp/old && PYTHONPATH=/tmp/old python benchmarks/step_share.py

--reps (default 11) is for the quickstart-size configs; --big_reps (default 5)
for the paper-size ones, lt_em_paper and img_em_cifar, whose steps take tens
of seconds on 2 CPU cores.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gin
import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import t2t_vqem
from t2t_vqem import registry
from t2t_vqem.train import schedule
from t2t_vqem.train import trainer as trainer_lib

try:  # the old tree (0f29608): the discretization module and its fused op
  from t2t_vqem.cli.common import parse_gin
  from t2t_vqem.cli.common import register_everything
  from t2t_vqem.layers import vq_kernel
except ImportError:  # the new tree: t2t_vqem/bottlenecks/
  from t2t_vqem.config import parse_gin
  from t2t_vqem.config import register_everything

  vq_kernel = None

CONFIGS = ("lt_em_quick", "lt_em_paper", "img_em_quick", "img_em_cifar", "lt_vq_quick")
BIG = ("lt_em_paper", "img_em_cifar")  # paper sizes: --big_reps
# The variants (A, B), saving = 1 - step(A) / step(B), and the bottleneck's
# attribute naming its path: True in A, False in B.
if vq_kernel is not None:
  VARIANTS, PATH_ATTR = ("op", "TF ops"), "fused_kernel"
else:
  VARIANTS, PATH_ATTR = ("XLA", "graph ops"), "jit_compile"


def old_train_step(model, optimizer, problem):
  """The old tree's Trainer step methods themselves (not copies) on this model:
  strategy.run of _replica_train_step, then the SUM reduce."""
  holder = types.SimpleNamespace(
    model=model, optimizer=optimizer, problem=problem, strategy=tf.distribute.get_strategy()
  )
  trainer = trainer_lib.Trainer
  for name in ("_global_mean", "_replica_train_step", "_distributed_train_step"):
    setattr(holder, name, getattr(trainer, name).__get__(holder))
  return holder._distributed_train_step  # pylint: disable=protected-access


def build_model(model_name, problem, variant, seed):
  """The model as the Trainer builds it, its bottleneck on the variant's path: on
  the new tree jit_compile given to the bottleneck; on the old tree fused_kernel
  = False set before the first training call for "TF ops"."""
  keras.utils.set_random_seed(seed)
  kwargs = dict(problem.model_kwargs())
  if vq_kernel is None:
    kwargs["bottleneck_args"] = {"jit_compile": variant == "XLA"}
  model = registry.build_model(model_name, **kwargs)
  old_dummy = getattr(trainer_lib, "dummy_features", None)  # a problem method on the new tree
  model(old_dummy(problem) if old_dummy else problem.dummy_features(), training=False)
  if variant == "TF ops":
    model.bottleneck.fused_kernel = False
  return model


def build(model_name, problem, variant, seed):
  """(model, its training step function) as the Trainer builds them: on the new tree
  t2t_vqem.train.steps.Steps.train_step, on the old tree the Trainer's own methods."""
  model = build_model(model_name, problem, variant, seed)
  optimizer = schedule.make_optimizer()
  optimizer.build(model.trainable_variables)
  if vq_kernel is not None:
    return model, old_train_step(model, optimizer, problem)
  from t2t_vqem.train import steps as steps_lib  # pylint: disable=import-outside-toplevel

  return model, steps_lib.Steps(tf.distribute.get_strategy(), model, optimizer, problem).train_step


def paper_problem(vocab_size):
  """A stand-in for translate_ende_wmt (which needs a download): what the model
  and the Trainer's step ask of a text problem."""
  return types.SimpleNamespace(
    modality="text",
    model_kwargs=lambda: {"vocab_size": vocab_size},
    dummy_features=lambda: {
      "inputs": tf.constant([[3, 1]], tf.int32),
      "targets": tf.constant([[3, 1]], tf.int32),
    },
    batch_items=lambda f: tf.reduce_sum(tf.cast(f["targets"] > 0, tf.float32)),
  )


def text_batch(problem, batch_tokens, candidates, seed):
  """Of the first `candidates` training batches (the Trainer's pipeline), the one
  with the median number of real latent positions."""
  batches = []
  for i, features in enumerate(
    problem.batches("train", batch_tokens, shuffle=True, repeat=True, num_replicas=1, seed=seed)
  ):
    if i == candidates:
      break
    batches.append(features)
  latents = [int(np.sum((f["targets"].numpy() > 0)[:, ::8])) for f in batches]
  order = np.argsort(latents)
  return batches[order[len(order) // 2]]


def random_text_batch(vocab_size, batch, length, seed):
  rng = np.random.default_rng(seed)

  def ids():
    x = rng.integers(3, vocab_size, size=(batch, length), dtype=np.int32)
    x[:, -1] = 1  # EOS
    return tf.constant(x)

  return {"inputs": ids(), "targets": ids()}


def image_batch(problem, batch_size, seed):
  ds = problem.batches("train", batch_size, shuffle=True, repeat=True, seed=seed)
  return next(iter(ds))


def setup(name, args):
  """Parses the config's Gin; returns (model name, problem, batch, description)."""
  gin.clear_config()
  data = {} if args.data_dir is None else {"data_dir": args.data_dir}
  if name in ("lt_em_quick", "lt_vq_quick"):
    config = {
      "lt_em_quick": "latent_transformer_em_quickstart.gin",
      "lt_vq_quick": "latent_transformer_vq_quickstart.gin",
    }[name]
    parse_gin([config], [])
    problem = registry.build_problem(gin.query_parameter("Trainer.problem"), **data)
    tokens = gin.query_parameter("Trainer.batch_tokens")
    batch = text_batch(problem, tokens, args.candidates, args.seed)
    what = (
      f"{config}; a real train batch of {problem.name} (batch_tokens {tokens}, "
      f"median-latents batch of the first {args.candidates})"
    )
  elif name == "lt_em_paper":
    config = "latent_transformer_em.gin"
    parse_gin([config], [])
    vocab = gin.query_parameter("translate_ende_wmt.vocab_size")
    problem = paper_problem(vocab)
    batch = random_text_batch(vocab, args.paper_batch, args.paper_length, args.seed)
    what = (
      f"{config} sizes; random tokens, vocab {vocab}, {args.paper_batch} x "
      f"{args.paper_length} source and target tokens (no padding)"
    )
  elif name in ("img_em_quick", "img_em_cifar"):
    config = {
      "img_em_quick": "image_shapes_em_quickstart.gin",
      "img_em_cifar": "image_cifar10_em.gin",
    }[name]
    parse_gin([config], [])
    size = gin.query_parameter("Trainer.batch_size") if name == "img_em_quick" else args.cifar_batch
    problem = registry.build_problem("image_shapes", **data, num_train=max(256, size))
    batch = image_batch(problem, size, args.seed)
    what = f"{config} sizes; a train batch of {size} image_shapes pictures"
  else:
    raise ValueError(f"unknown config {name!r}; accepted: {', '.join(CONFIGS)}")
  return gin.query_parameter("Trainer.model"), problem, batch, what


def bottleneck_input(model, batch):
  """The bottleneck's input of this batch as the training step forms it:
  (z_e, mask or None), training=True (dropout on)."""
  if "inputs" in batch:
    memory, memory_mask = model.encode_source(batch["inputs"], training=True)
    z_e, mask = model.encode_target(batch["targets"], memory, memory_mask, training=True)
    return tf.identity(z_e), mask
  return tf.identity(model.encode_continuous(batch["targets"])), None


def bottleneck_call(layer, with_mask):
  def cut(out):
    return [tf.reshape(t, [-1])[0] for t in tf.nest.flatten(tuple(out))]

  if with_mask:
    return tf.function(lambda z, m: cut(layer(z, training=True, mask=m)))
  return tf.function(lambda z: cut(layer(z, training=True)))


def _sync(result):
  for t in tf.nest.flatten(result):
    t.numpy()


def timed(fn, inputs, times, name):
  """Calls fn(*inputs) once; appends (wall ms, process CPU ms) to times[name]."""
  wall, cpu = time.perf_counter(), time.process_time()
  result = fn(*inputs)
  _sync(result)
  times[name].append(((time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3))
  return result


def interleaved(fns, reps):
  """{name: [(wall ms, CPU ms)] * reps}: in each repetition the functions run in
  the order given, then reversed in the next (A B C D, B A D C, ...: the two
  whole steps, and the two bottleneck calls, always side by side in time)."""
  names = list(fns)
  swapped = [names[i ^ 1] if (i ^ 1) < len(names) else names[i] for i in range(len(names))]
  times = {n: [] for n in fns}
  last = {}
  for r in range(reps):
    for n in names if r % 2 == 0 else swapped:
      fn, inputs = fns[n]
      last[n] = timed(fn, inputs, times, n)
  return times, last


def warm_up(fns, warmup):
  started = time.perf_counter()
  for _ in range(warmup):  # trace, compile, warm up
    for fn, inputs in fns.values():
      _sync(fn(*inputs))
  return time.perf_counter() - started


def resolved_paths(name, models):
  """{variant: the bottleneck's PATH_ATTR}; a warning if it is not the variant's."""
  resolved = {v: getattr(models[v].bottleneck, PATH_ATTR) for v in VARIANTS}
  if (resolved[VARIANTS[0]], resolved[VARIANTS[1]]) != (True, False):
    print(
      f"WARNING {name}: {PATH_ATTR} resolved to {resolved}; the comparison is not "
      f"{VARIANTS[0]} vs {VARIANTS[1]}",
      flush=True,
    )
  return resolved


def measure(name, args, reps):
  model_name, problem, batch, what = setup(name, args)
  signature = [tf.nest.map_structure(lambda t: tf.TensorSpec([None] + t.shape[1:], t.dtype), batch)]
  fns, models = {}, {}
  for v in VARIANTS:
    models[v], train_step = build(model_name, problem, v, args.seed)
    fns["step " + v] = (tf.function(train_step, input_signature=signature), (batch,))
  # The real z_e of this batch (from the first model's encoder, before any step).
  z_e, mask = bottleneck_input(models[VARIANTS[0]], batch)
  for v in VARIANTS:
    call = bottleneck_call(models[v].bottleneck, mask is not None)
    fns["bn " + v] = (call, (z_e,) if mask is None else (z_e, mask))

  warmup_s = warm_up(fns, args.warmup)
  resolved = resolved_paths(name, models)
  times, last = interleaved(fns, reps)
  n_rows = int(np.prod(z_e.shape[:-1]))
  n_kept = n_rows if mask is None else int(tf.reduce_sum(tf.cast(mask, tf.int32)))
  bn = models[VARIANTS[0]].bottleneck
  shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in batch.items())
  info = {
    "what": what,
    "shapes": shapes,
    "n_rows": n_rows,
    "n_kept": n_kept,
    "K": bn.codebook_size,
    "D": bn.embedding_dim,
    "mode": bn.mode,
    "S": bn.num_samples,
    "reps": reps,
    "warmup_s": warmup_s,
    "params": int(sum(np.prod(w.shape) for w in models[VARIANTS[0]].trainable_variables)),
    "resolved": resolved,
    "loss": {v: float(last["step " + v]["loss"]) for v in VARIANTS},
  }
  return times, info


def measure_bottleneck_only(args, latents, reps):
  """lt_em_paper's bottleneck call alone (both variants) at `latents` positions:
  real z_e from the target encoder (training=True) of a random-token batch of
  latents * 8 / --paper_length sentences; no whole step (too slow on CPU)."""
  gin.clear_config()
  parse_gin(["latent_transformer_em.gin"], [])
  vocab = gin.query_parameter("translate_ende_wmt.vocab_size")
  model_name = gin.query_parameter("Trainer.model")
  models = {v: build_model(model_name, paper_problem(vocab), v, args.seed) for v in VARIANTS}
  first = models[VARIANTS[0]]
  sentences = max(1, latents * first.compression_factor // args.paper_length)
  batch = random_text_batch(vocab, sentences, args.paper_length, args.seed)
  z_e, mask = first.encode_target(batch["targets"], None, None, training=True)
  fns = {"bn " + v: (bottleneck_call(m.bottleneck, True), (z_e, mask)) for v, m in models.items()}
  warm_up(fns, args.warmup)
  times, _ = interleaved(fns, reps)
  return times, {
    "n_rows": int(np.prod(z_e.shape[:-1])),
    "sentences": sentences,
    "resolved": resolved_paths("lt_em_paper", models),
    "reps": reps,
  }


def git_commit(path):
  try:
    head = subprocess.run(
      ["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run(
      ["git", "-C", path, "status", "--porcelain", "--untracked-files=no"],
      capture_output=True,
      text=True,
      check=True,
    ).stdout.strip()
    return head + (" (with uncommitted changes to tracked files)" if dirty else "")
  except (OSError, subprocess.CalledProcessError):
    return "unknown (not a git checkout)"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--reps", type=int, default=11, help="timed repetitions of the quickstart-size configs"
  )
  parser.add_argument(
    "--big_reps",
    type=int,
    default=5,
    help="timed repetitions of lt_em_paper and img_em_cifar (one of "
    "their steps takes tens of seconds on 2 CPU cores)",
  )
  parser.add_argument(
    "--warmup", type=int, default=2, help="untimed calls of every function first (the first traces)"
  )
  parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=CONFIGS)
  parser.add_argument(
    "--paper_batch", type=int, default=128, help="lt_em_paper: sentences per batch"
  )
  parser.add_argument(
    "--paper_length",
    type=int,
    default=32,
    help="lt_em_paper: source and target tokens per sentence",
  )
  parser.add_argument(
    "--paper_bn_latents",
    type=int,
    default=4096,
    help="lt_em_paper: also time its bottleneck call alone at this N "
    "(real z_e of a random batch; 0: off)",
  )
  parser.add_argument("--cifar_batch", type=int, default=8, help="img_em_cifar: pictures per batch")
  parser.add_argument(
    "--candidates",
    type=int,
    default=21,
    help="text quickstarts: training batches to choose the median one from",
  )
  parser.add_argument("--seed", type=int, default=1)
  parser.add_argument(
    "--data_dir", default=None, help="problem data / vocabulary cache (default: the project's)"
  )
  args = parser.parse_args(argv)
  register_everything([])

  root = os.path.dirname(os.path.dirname(os.path.abspath(t2t_vqem.__file__)))
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  print(
    f"Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
    f"{cores} usable CPU cores ({os.cpu_count()} online), Python "
    f"{platform.python_version()}, TF {tf.__version__}, Keras {keras.__version__}"
  )
  print(f"t2t_vqem: {t2t_vqem.__file__}; git commit {git_commit(root)}")
  a, b = VARIANTS
  if vq_kernel is not None:
    started = time.perf_counter()
    available = vq_kernel.available()
    print(
      f"Old tree; variants {a} / {b}. Fused kernel available: {available} "
      f"({time.perf_counter() - started:.1f} s to load or build)"
    )
  else:
    print(f"New tree; variants {a} (jit_compile=True) / {b} (jit_compile=False, the default)")
  print(f"Load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)

  results = {}
  for name in args.configs:
    reps = args.big_reps if name in BIG else args.reps
    started = time.perf_counter()
    results[name] = measure(name, args, reps)
    print(f"measured {name} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
  extra = None
  if "lt_em_paper" in args.configs and args.paper_bn_latents:
    started = time.perf_counter()
    extra = measure_bottleneck_only(args, args.paper_bn_latents, args.reps)
    print(
      f"measured lt_em_paper's bottleneck at N={extra[1]['n_rows']} in "
      f"{time.perf_counter() - started:.0f} s",
      file=sys.stderr,
      flush=True,
    )

  print("\nConfigurations\n")
  print(
    "| config | what | batch | mode, n_s | K | D | N rows (kept) | params | reps | "
    f"{PATH_ATTR} ({a}, {b}) | last loss ({a}, {b}) |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for name, (_, i) in results.items():
    print(
      f"| {name} | {i['what']} | {i['shapes']} | {i['mode']}, {i['S']} | {i['K']} | "
      f"{i['D']} | {i['n_rows']} ({i['n_kept']}) | {i['params'] / 1e6:.1f}M | "
      f"{i['reps']} | {i['resolved'][a]}, {i['resolved'][b]} | "
      f"{i['loss'][a]:.3f}, {i['loss'][b]:.3f} |"
    )

  def med(t, n, which):
    return statistics.median(v[which] for v in t[n])

  for which, clock in ((0, "wall-clock"), (1, "process CPU time (all threads)")):
    print(
      f"\nWhole training step and bottleneck call, {clock}, median ms of interleaved repetitions\n"
    )
    print(
      f"| config | N | step, {a} | step, {b} | saving (1 - {a}/{b}) | per-pair saving "
      f"min / median / max | bottleneck, {a} | bottleneck, {b} | bottleneck saved ms | "
      f"bottleneck saved / step ({b}) | bottleneck share of step, {a} | share, {b} |"
    )
    print("|" + "---|" * 12)
    for name, (t, i) in results.items():
      m = {n: med(t, n, which) for n in t}
      sa, sb, ba, bb = m["step " + a], m["step " + b], m["bn " + a], m["bn " + b]
      per_pair = [1 - x[which] / y[which] for x, y in zip(t["step " + a], t["step " + b])]
      print(
        f"| {name} | {i['n_rows']} | {sa:.1f} | {sb:.1f} | {100 * (1 - sa / sb):.1f}% | "
        f"{100 * min(per_pair):.1f}% / {100 * statistics.median(per_pair):.1f}% / "
        f"{100 * max(per_pair):.1f}% | {ba:.1f} | {bb:.1f} | {bb - ba:.1f} | "
        f"{100 * (bb - ba) / sb:.1f}% | {100 * ba / sa:.1f}% | {100 * bb / sb:.1f}% |"
      )
  if extra is not None:
    t, i = extra
    m = {n: med(t, n, 0) for n in t}
    c = {n: med(t, n, 1) for n in t}
    print(
      f"\nlt_em_paper's bottleneck call alone at N = {i['n_rows']} ({i['sentences']} x "
      f"{args.paper_length} random target tokens; no whole step at this N), median ms "
      f"of {i['reps']} interleaved repetitions; {PATH_ATTR} resolved to {i['resolved']}\n"
    )
    print(
      f"| N | bottleneck, {a} | bottleneck, {b} | bottleneck saved ms | CPU ms, {a} | CPU ms, {b} |"
    )
    print("|---|---|---|---|---|---|")
    print(
      f"| {i['n_rows']} | {m['bn ' + a]:.1f} | {m['bn ' + b]:.1f} | "
      f"{m['bn ' + b] - m['bn ' + a]:.1f} | {c['bn ' + a]:.1f} | {c['bn ' + b]:.1f} |"
    )
  print(f"\nLoad average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
  main()
