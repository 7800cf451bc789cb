"""Benchmark: training throughput at one global batch: replicas, workers, precision, XLA.

On the embedded problem translate_grammar_ende, for the quickstart Transformer
(transformer_quickstart.gin) and the quickstart latent_transformer_em student
(latent_transformer_em_quickstart.gin), every row is one Trainer (two for the
two-worker row) in its own process, kept alive for the whole run, driven over
a pipe. Each does --warmup untimed steps (tracing, compiling), then the parent
runs --rounds rounds; in each round every row of a table trains
--steps_per_round steps, the rows in an order that rotates from round to
round, so machine noise hits all rows alike (the two tables run one after the
other; the rows of one table are alive together). A step is timed from
`next(trainer.train_iterator)` to the host having the step's loss
(`trainer.train_step` then `float(loss)`), as Trainer.train's loop does it.

Same global batch in every row: Trainer.batch_tokens (--batch_tokens),
Trainer.batch_multiple = 2 (every bucket's batch a multiple of 2, for one
replica too) and Trainer.seed (--seed) in all rows, and on the new tree
translate_grammar_ende.vocab_type = 'wordpiece' (the old tree knows only
WordPiece), so rows a, b, c and the float32/bf16 rows train on the same
sequence of global batches (checked: their per-step target token counts are
compared and the table says whether they agree). The two workers of row d each
read their own half of the pairs (batch_tokens / 2 each), so their global
batches have the same size but other sentences.

Table 1 (the real bucketed input stream):
  a. 1 replica, default strategy, this tree;
  b. 2 replicas, MirroredStrategy over 2 logical CPUs (CPU:0, CPU:1; the CPU
     is split before TensorFlow starts), this tree: each replica receives
     only its slice (t2t_vqem/train/inputs.py);
  c. the same on the old tree (--old_tree, e.g. commit 88dff0d: every replica
     receives the whole global batch and slices its share);
  d. 2 workers: 2 processes, TF_CONFIG with 2 'worker' tasks on loopback
     ports, MultiWorkerMirroredStrategy (make_strategy 'auto'), one replica
     each; timed per step on the chief (worker 0) as above ("train N steps
     and time"), not from the progress lines.

Table 2 (precision and XLA, 1 replica): the first --pool batches of the same
stream, replayed in turn, so that XLA (which compiles once per batch shape)
is timed on shapes it has compiled; the first call of each shape (tracing
plus, under XLA, compiling) is shown apart. Rows: float32, mixed_bfloat16,
jit_compile=True (for the latent model also bottleneck_args
{'jit_compile': True}). A row that fails says so with its error. The latent
model also gets float32 and XLA rows with soft_em.init_from_first_batch =
False and soft_em.dead_code_restart_steps = 0 (at 6e4c4d4 the rows they seed
from were drawn by a StatelessShuffle, which XLA refused; now by an argsort).

tokens/s: target tokens of the global batch (the step's "items") / the step's
time, the median over the timed steps; ms/step likewise.

  python benchmarks/scale.py --old_tree=/tmp/snapOld --work_dir=/tmp/scale

(--old_tree: a copy of the old tree, e.g.
`mkdir /tmp/snapOld && git archive 88dff0d | tar -x -C /tmp/snapOld`; without
it row c is left out.) Each process imports t2t_vqem from its tree through
PYTHONPATH (checked).
"""

import argparse
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "@@scale "  # the runner's protocol lines on stdout
MODELS = {
  "transformer": "transformer_quickstart.gin",
  "latent": "latent_transformer_em_quickstart.gin",
}
NO_RESTART = ["soft_em.init_from_first_batch = False", "soft_em.dead_code_restart_steps = 0"]
XLA = ["Trainer.jit_compile = True"]
XLA_BOTTLENECK = ["latent_transformer_em.bottleneck_args = {'jit_compile': True}"]
MIRRORED = ["make_strategy.name = 'mirrored'", "make_strategy.devices = ['CPU:0', 'CPU:1']"]


def rows_of(model, old_tree):
  """(key, table, label, tree ('new'/'old'), bindings, options) of one model's rows."""
  rows = [
    ("a", 1, "a. 1 replica, default strategy", "new", [], {}),
    ("b", 1, "b. 2 replicas, MirroredStrategy, per-replica slices", "new", MIRRORED, {"cpus": 2}),
  ]
  if old_tree:
    rows.append(
      (
        "c",
        1,
        "c. 2 replicas, MirroredStrategy, old tree (replica slicing)",
        "old",
        MIRRORED,
        {"cpus": 2},
      )
    )
  rows.append(
    ("d", 1, "d. 2 workers (2 processes), MultiWorkerMirrored", "new", [], {"workers": 2})
  )
  xla = XLA + (XLA_BOTTLENECK if model == "latent" else [])
  rows += [
    ("f32", 2, "float32", "new", [], {"replay": True}),
    (
      "bf16",
      2,
      "mixed_bfloat16",
      "new",
      ["Trainer.precision = 'mixed_bfloat16'"],
      {"replay": True},
    ),
    (
      "xla",
      2,
      "jit_compile=True" + (" + bottleneck jit_compile" if model == "latent" else ""),
      "new",
      xla,
      {"replay": True},
    ),
  ]
  if model == "latent":
    rows += [
      (
        "f32_nr",
        2,
        "float32, no first-batch init, no dead-code restart",
        "new",
        NO_RESTART,
        {"replay": True},
      ),
      (
        "xla_nr",
        2,
        "jit_compile=True + bottleneck jit_compile, no first-batch init, no dead-code restart",
        "new",
        xla + NO_RESTART,
        {"replay": True},
      ),
    ]
  return rows


# ---------------------------------------------------------------- the runner (one Trainer)


def serve(spec):
  """Runs in a row's process: builds the Trainer, warms up, then trains steps on request."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  if spec["cpus"] > 1:  # before TensorFlow initialises (as tests/conftest.py)
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * spec["cpus"]
    )
  import t2t_vqem  # pylint: disable=import-outside-toplevel
  from t2t_vqem import config as config_lib  # pylint: disable=import-outside-toplevel
  from t2t_vqem.train import trainer as trainer_lib  # pylint: disable=import-outside-toplevel

  found = os.path.dirname(os.path.dirname(os.path.abspath(t2t_vqem.__file__)))
  if found != os.path.abspath(spec["tree"]):
    raise RuntimeError(f"t2t_vqem imported from {found}, not {spec['tree']}")
  config_lib.register_everything()
  config_lib.parse_gin([spec["gin_file"]], spec["bindings"])
  started = time.perf_counter()
  trainer = trainer_lib.Trainer(spec["output_dir"], data_dir=spec["data_dir"])
  build_s = time.perf_counter() - started
  shapes = set()

  def step(batch):
    t0 = time.perf_counter()
    batch = next(trainer.train_iterator) if batch is None else batch
    out = trainer.train_step(batch)
    loss = float(out["loss"])
    elapsed = time.perf_counter() - t0
    shape = str([tuple(t.shape) for t in tf.nest.flatten(batch)])
    new = shape not in shapes
    shapes.add(shape)
    return {
      "s": elapsed,
      "items": float(out["items"]),
      "loss": loss,
      "finite": bool(out["finite"]),
      "new_shape": new,
    }

  pool = None
  first = []
  started = time.perf_counter()
  if spec["replay"]:  # the first `pool` batches of the stream, in turn
    pool = [next(trainer.train_iterator) for _ in range(spec["pool"])]
    first = [step(b)["s"] for b in pool]  # each shape's first call
    for i in range(spec["warmup"]):
      step(pool[i % len(pool)])
  else:
    for _ in range(spec["warmup"]):
      step(None)
  ready = {
    "ready": True,
    "replicas": trainer.num_replicas,
    "workers": getattr(trainer, "num_workers", 1),
    "build_s": build_s,
    "warmup_s": time.perf_counter() - started,
    "first_calls_s": first,
    "params": int(sum(int(tf.size(v)) for v in trainer.model.trainable_variables)),
  }
  print(PREFIX + json.dumps(ready), flush=True)
  done = 0
  for line in sys.stdin:
    request = json.loads(line)
    if request.get("stop"):
      break
    results = []
    for _ in range(request["steps"]):
      results.append(step(pool[(spec["warmup"] + done) % len(pool)] if pool else None))
      done += 1
    print(PREFIX + json.dumps({"steps": results, "shapes": len(shapes)}), flush=True)


# ---------------------------------------------------------------- the parent


class Runner:
  """One process of a row; its protocol lines arrive on a queue."""

  def __init__(self, spec, env, log_path):
    self.log_path = log_path
    self.log = open(log_path, "w")
    argv = [sys.executable, os.path.abspath(__file__), "--serve", json.dumps(spec)]
    self.process = subprocess.Popen(
      argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True
    )
    self.lines = queue.Queue()
    threading.Thread(target=self._pump, daemon=True).start()

  def _pump(self):
    for line in self.process.stdout:
      if line.startswith(PREFIX):
        self.lines.put(json.loads(line[len(PREFIX) :]))
    self.lines.put(None)  # ended

  def send(self, request):
    self.process.stdin.write(json.dumps(request) + "\n")
    self.process.stdin.flush()

  def receive(self, timeout):
    try:
      message = self.lines.get(timeout=timeout)
    except queue.Empty:
      message = None
    if message is None:
      raise RuntimeError(self.error())
    return message

  def error(self):
    """The process's error: the last line of its log that names one."""
    self.log.flush()
    with open(self.log_path, errors="replace") as f:
      lines = [line.strip() for line in f if line.strip()]
    said = [line for line in lines if "Error" in line or "error:" in line or "unsupported" in line]
    status = self.process.poll()
    where = f"exit {status}" if status is not None else "no answer in time"
    return f"{where}: " + (said[-1] if said else (lines[-1] if lines else "no output"))[:400]

  def stop(self):
    if self.process.poll() is None:
      try:
        self.send({"stop": True})
        self.process.wait(timeout=60)
      except (OSError, subprocess.TimeoutExpired):
        self.process.kill()
        self.process.wait()
    self.log.close()


def free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def start_row(args, model, row):
  """The row's runners (2 for the 2-worker row), each warmed up; or an error string."""
  key, _, _, tree_name, bindings, options = row
  tree = ROOT if tree_name == "new" else os.path.abspath(args.old_tree)
  common = [
    "Trainer.eval_every = 0",
    f"Trainer.batch_tokens = {args.batch_tokens}",
    "Trainer.batch_multiple = 2",
    f"Trainer.seed = {args.seed}",
    "Trainer.checkpoint_data = False",
  ]
  if tree_name == "new":
    common.append("translate_grammar_ende.vocab_type = 'wordpiece'")
  workers = options.get("workers", 1)
  replay = options.get("replay", False)
  spec = {
    "tree": tree,
    "gin_file": MODELS[model],
    "bindings": common + bindings,
    "data_dir": os.path.join(args.work_dir, "data_" + tree_name),
    "output_dir": os.path.join(args.work_dir, "runs", f"{model}_{key}"),
    "cpus": options.get("cpus", 1),
    "replay": replay,
    "pool": args.pool,
    "warmup": args.replay_warmup if replay else args.warmup,
  }
  env = dict(
    os.environ,
    PYTHONPATH=tree,
    TF_CPP_MIN_LOG_LEVEL="2",
    CUDA_VISIBLE_DEVICES="",
    PYTHONUNBUFFERED="1",
  )
  env.pop("TF_CONFIG", None)
  runners = []
  if workers > 1:
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(workers)]}
    for i in range(workers):
      worker_env = dict(
        env, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
      )
      log = os.path.join(args.work_dir, "logs", f"{model}_{key}_w{i}.log")
      runners.append(Runner(spec, worker_env, log))
  else:
    runners.append(Runner(spec, env, os.path.join(args.work_dir, "logs", f"{model}_{key}.log")))
  try:
    ready = [r.receive(args.start_timeout) for r in runners]
  except RuntimeError as e:
    for r in runners:
      if r.process.poll() is None:
        r.process.kill()
        r.process.wait()
      r.log.close()
    return None, str(e)
  return (runners, ready[0]), None


def run_steps(runners, steps, timeout):
  """Every runner of a row trains `steps` steps at once; the chief's (worker 0's) results."""
  for r in runners:
    r.send({"steps": steps})
  results = [r.receive(timeout) for r in runners]
  return results[0]


def median(values):
  return statistics.median(values) if values else float("nan")


def measure_table(args, model, table):
  """Starts the rows of one table, runs them interleaved, stops them (one table at a
  time: a latent row's process holds 2-3 GB)."""
  rows = [row for row in rows_of(model, args.old_tree) if row[0] in args.rows and row[1] == table]
  live, info, failed = {}, {}, {}
  for row in rows:
    started = time.perf_counter()
    got, error = start_row(args, model, row)
    if error:
      failed[row[0]] = error
      print(f"[{model}] row {row[0]}: FAILED to start: {error}", file=sys.stderr, flush=True)
      continue
    live[row[0]], info[row[0]] = got
    print(
      f"[{model}] row {row[0]} ready in {time.perf_counter() - started:.0f} s "
      f"({info[row[0]]['replicas']} replica(s))",
      file=sys.stderr,
      flush=True,
    )
  steps = {key: [] for key in live}
  shapes = {}
  try:
    for r in range(args.rounds):
      keys = list(live)
      keys = keys[r % len(keys) :] + keys[: r % len(keys)] if keys else keys
      for key in keys:
        if key in failed:
          continue
        try:
          got = run_steps(live[key], args.steps_per_round, args.step_timeout)
        except RuntimeError as e:
          failed[key] = f"crashed in round {r}: {e}"
          print(f"[{model}] row {key}: {failed[key]}", file=sys.stderr, flush=True)
          continue
        steps[key] += got["steps"]
        shapes[key] = got["shapes"]
      print(f"[{model}] round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
  finally:
    for runners in live.values():
      for runner in runners:
        runner.stop()
  return rows, steps, info, failed, shapes


def summary(timed):
  ok = [s for s in timed if s["finite"]]
  return {
    "ms": median([s["s"] * 1e3 for s in ok]),
    "tokens_per_s": median([s["items"] / s["s"] for s in ok]),
    "items": median([s["items"] for s in ok]),
    "skipped": len(timed) - len(ok),
    "new_shapes": sum(s["new_shape"] for s in timed),
    "items_seq": [s["items"] for s in timed],
  }


def tables(model, rows, steps, info, failed, shapes, args):
  sums = {key: summary(v) for key, v in steps.items() if v}
  out = []
  for table, base_key in ((1, "a"), (2, "f32")):
    out.append(f"\n{model} ({MODELS[model]}), table {table}\n")
    if table == 1:
      out.append(
        "| row | tree | replicas | ms/step | target tokens/step | tokens/s | vs a "
        "| batches as a's |"
      )
      out.append("|---|---|---|---|---|---|---|---|")
    else:
      out.append(
        "| row | ms/step | tokens/s | vs float32 | first call per shape (s) "
        "| batches as float32's |"
      )
      out.append("|---|---|---|---|---|---|")
    for key, t, label, tree_name, _, options in rows:
      if t != table:
        continue
      if key in failed:
        error = failed[key].replace("|", "\\|")
        out.append(f"| {label} | FAILED: {error} |" + " |" * (6 if table == 1 else 4))
        continue
      if key not in sums:
        continue
      s = sums[key]
      vs_key = "f32_nr" if key == "xla_nr" else base_key
      vs = sums.get(vs_key)
      ratio = f"{s['tokens_per_s'] / vs['tokens_per_s']:.2f}x" if vs else "-"
      if key == "xla_nr":
        ratio += " (vs the no-restart float32 row)"
      same = "-"
      ref = sums.get("f32_nr" if key in ("xla_nr",) else base_key)
      if ref is not None and key != base_key:
        same = "yes" if s["items_seq"] == ref["items_seq"] else "no"
      if table == 1:
        replicas = info[key]["replicas"]
        what = f"{replicas} ({options.get('workers', 1)} worker(s))"
        out.append(
          f"| {label} | {'this' if tree_name == 'new' else args.old_tree} | {what} | "
          f"{s['ms']:.0f} | {s['items']:.0f} | {s['tokens_per_s']:,.0f} | {ratio} | {same} |"
        )
      else:
        first = ", ".join(f"{x:.1f}" for x in info[key]["first_calls_s"])
        out.append(
          f"| {label} | {s['ms']:.0f} | {s['tokens_per_s']:,.0f} | {ratio} | {first} | {same} |"
        )
    if table == 1 and "a" in shapes:
      out.append(
        f"\nRow a saw {shapes['a']} distinct batch shapes in its {args.warmup} warm-up and "
        f"{len(steps['a'])} timed steps."
      )
    skipped = {k: v["skipped"] for k, v in sums.items() if v["skipped"]}
    if skipped:
      out.append(f"\nNon-finite (skipped) steps left out: {skipped}")
  return "\n".join(out)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--work_dir", default="/tmp/t2t_vqem_scale", help="Scratch folder (emptied).")
  parser.add_argument("--old_tree", default=None, help="The old tree (88dff0d) for row c.")
  parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
  parser.add_argument(
    "--rows",
    nargs="+",
    default=["a", "b", "c", "d", "f32", "bf16", "xla", "f32_nr", "xla_nr"],
    help="Rows to run (f32_nr and xla_nr exist for the latent model only).",
  )
  parser.add_argument("--batch_tokens", type=int, default=2048, help="Trainer.batch_tokens.")
  parser.add_argument("--seed", type=int, default=1, help="Trainer.seed.")
  parser.add_argument("--warmup", type=int, default=20, help="Untimed steps, table 1 rows.")
  parser.add_argument("--pool", type=int, default=3, help="Batches replayed in table 2.")
  parser.add_argument("--replay_warmup", type=int, default=6, help="Untimed steps, table 2.")
  parser.add_argument("--rounds", type=int, default=6, help="Rounds of interleaved steps.")
  parser.add_argument("--steps_per_round", type=int, default=6, help="Timed steps per round.")
  parser.add_argument("--start_timeout", type=float, default=900, help="Seconds to warm up.")
  parser.add_argument("--step_timeout", type=float, default=600, help="Seconds per round.")
  parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.serve:
    serve(json.loads(args.serve))
    return
  shutil.rmtree(args.work_dir, ignore_errors=True)
  os.makedirs(os.path.join(args.work_dir, "logs"))
  started = time.perf_counter()
  printed = []
  for model in args.models:
    t0 = time.perf_counter()
    rows, steps, info, failed, shapes = [], {}, {}, {}, {}
    for table in (1, 2):
      got = measure_table(args, model, table)
      rows += got[0]
      for whole, part in zip((steps, info, failed, shapes), got[1:]):
        whole.update(part)
    text = tables(model, rows, steps, info, failed, shapes, args)
    params = next(iter(info.values()))["params"] if info else 0
    text += f"\n\n{model}: {params:,} trainable parameters; {time.perf_counter() - t0:.0f} s"
    print(text, flush=True)
    printed.append(text)
  print(
    f"\nglobal batch: batch_tokens {args.batch_tokens}, seed {args.seed}; medians over "
    f"{args.rounds} x {args.steps_per_round} timed steps per row; total "
    f"{time.perf_counter() - started:.0f} s",
    flush=True,
  )


if __name__ == "__main__":
  main()
