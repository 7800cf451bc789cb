"""Benchmark: the student's batch-1 speedup over greedy decoding, by model size and length.

Does the paper's speedup (3.3x at batch 1, on a GPU) come from the model or from the
machine? The time of a decode at batch 1 depends on the model's sizes and on how many
steps it takes, not on what its weights have learnt, so this times untrained models
decoding outputs of fixed lengths:

  quickstart  em_distill_quickstart.gin's teacher and student (hidden 128, 2 layers),
              vocabulary --quickstart_vocab (the quickstart's 2000);
  paper       em_distill.gin's teacher (Transformer base: hidden 512, 6 layers, filter
              2048) and student (hidden 512, 6 layers, filter 4096, n_c 3),
              vocabulary --paper_vocab (translate_ende_wmt's 32000).

For each length T in --lengths (multiples of 8), the source is T random subwords (EOS
last) and both models decode exactly T target positions: `transformer.max_decode_extra`
and `latent_transformer_em.max_decode_extra` are 0, so a row's limit is its source
length, and `search.end_at_limit` is wrapped so that EOS (END for the latent predictor)
is forbidden before the limit (its own `forbid_before`, set to the limit), as it already
forces it at the limit. Greedy then takes T cached steps, the student T / 8 latent steps
plus END and one parallel pass over T positions (both checked on the outputs). The
forbidding is one `tf.where` per step, the same in both searches.

Greedy and the student are each timed as a plain tf.function and compiled by XLA
(`decode.decode_function`, as t2t_vqem-decoder --jit_compile does), the four in turn,
rotating, --reps times per length after one untimed call each (tracing, compiling).
Prints, per size and length, the median milliseconds and the student's speedup over
greedy in each mode; writes them to --output (JSON) if given.

  python benchmarks/decode_size.py
  python benchmarks/decode_size.py --sizes paper --lengths 24 40 --reps 5
"""

import argparse
import json
import os
import statistics
import time
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gin  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from t2t_vqem import config as config_lib  # noqa: E402
from t2t_vqem import constants  # noqa: E402
from t2t_vqem import decode  # noqa: E402
from t2t_vqem import registry  # noqa: E402
from t2t_vqem import search  # noqa: E402
from t2t_vqem.train import run_dir  # noqa: E402

SIZES = {"quickstart": "em_distill_quickstart.gin", "paper": "em_distill.gin"}
NO_EXTRA = ["transformer.max_decode_extra = 0", "latent_transformer_em.max_decode_extra = 0"]
_end_at_limit = search.end_at_limit


def end_only_at_limit(logits, step, limit, eos_id, forbid_before=None):
  """search.end_at_limit with eos_id forbidden at every step before each row's limit."""
  del forbid_before  # forbidden up to the limit instead
  return _end_at_limit(logits, step, limit, eos_id, forbid_before=(limit - 1)[:, None])


def build(items, vocab_size, seed):
  """The model its Gin items make, untrained, built on a dummy batch."""
  with config_lib.stage_config(list(items) + NO_EXTRA):
    name = gin.query_parameter("Trainer.model")
    keras.utils.set_random_seed(seed)
    model = registry.build_model(name, vocab_size=vocab_size)
    dummy = tf.constant([[3, constants.EOS_ID]], tf.int32)
    model({"inputs": dummy, "targets": dummy}, training=False)
  return name, model


def source(length, vocab_size, rng):
  ids = rng.integers(3, vocab_size, size=(1, length), dtype=np.int32)
  ids[0, -1] = constants.EOS_ID
  return tf.constant(ids)


def one_size(size, vocab_size, lengths, reps, seed):
  with config_lib.stage_config([SIZES[size]]):
    teacher_items = gin.query_parameter("Pipeline.teacher_gin")
    student_items = gin.query_parameter("Pipeline.student_gin")
  _, teacher = build(teacher_items, vocab_size, seed)
  student_name, student = build(student_items, vocab_size, seed)
  factor = student.compression_factor
  fns = {}
  for xla in (False, True):
    tag = "XLA" if xla else "graph"
    fns[f"greedy, {tag}"] = decode.decode_function(teacher, 1, jit_compile=xla)
    fns[f"student, {tag}"] = decode.decode_function(student, 1, jit_compile=xla)
  names = list(fns)
  rng = np.random.default_rng(seed)
  rows = []
  for length in lengths:
    if length % factor:
      raise ValueError(f"--lengths: {length} is not a multiple of 2^n_c = {factor}")
    inputs = source(length, vocab_size, rng)
    for name, fn in fns.items():  # traced, compiled, and the forced lengths checked
      out = fn(inputs).numpy()
      if name.startswith("greedy") and out.shape[1] != length:
        raise AssertionError(f"{name} decoded {out.shape[1]} tokens, not {length}")
    *_, count = student.source_latents(inputs, beam_size=1)
    if int(count[0]) != length // factor:
      raise AssertionError(f"the student decoded {int(count[0])} latents, not {length // factor}")
    times = {name: [] for name in names}
    for rep in range(reps):
      for j in range(len(names)):
        name = names[(rep + j) % len(names)]
        started = time.perf_counter()
        fns[name](inputs).numpy()
        times[name].append((time.perf_counter() - started) * 1e3)
    ms = {name: statistics.median(t) for name, t in times.items()}
    row = {"length": length, "ms": {k: round(v, 2) for k, v in ms.items()}}
    for tag in ("graph", "XLA"):
      row[f"speedup, {tag}"] = round(ms[f"greedy, {tag}"] / ms[f"student, {tag}"], 2)
    rows.append(row)
    print(
      f"{size:>10} T={length:3d}  "
      + "  ".join(f"{k} {v:8.2f} ms" for k, v in row["ms"].items())
      + f"  student/greedy: graph {row['speedup, graph']:.2f}x, XLA {row['speedup, XLA']:.2f}x",
      flush=True,
    )
  return {"student": student_name, "vocab_size": vocab_size, "rows": rows}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
  parser.add_argument("--lengths", nargs="+", type=int, default=[8, 16, 24, 40, 64])
  parser.add_argument("--reps", type=int, default=10, help="Timed decodes per decoder and length.")
  parser.add_argument("--quickstart_vocab", type=int, default=2000)
  parser.add_argument("--paper_vocab", type=int, default=32000)
  parser.add_argument("--seed", type=int, default=1)
  parser.add_argument("--output", help="Where to write the results as JSON.")
  args = parser.parse_args()
  config_lib.register_everything()
  vocab = {"quickstart": args.quickstart_vocab, "paper": args.paper_vocab}
  results = {"machine": run_dir.machine(), "sizes": {}}
  with mock.patch.object(search, "end_at_limit", end_only_at_limit):
    for size in args.sizes:
      results["sizes"][size] = one_size(size, vocab[size], args.lengths, args.reps, args.seed)
  print(json.dumps(results, indent=1))
  if args.output:
    with open(args.output, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
