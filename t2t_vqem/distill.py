"""Sequence-level knowledge distillation (Kim & Rush 2016), as used by the paper (§5.1).

A trained teacher beam-decodes every training source; the student then learns
the teacher's outputs instead of the gold targets (`translate_distilled`).

The output is a directory of shards, written in order and each one atomically
(t2t_vqem.files: temporary name, then rename), so an interrupted run, even one
killed with SIGKILL, keeps its finished shards, never leaves part of one, and a
rerun decodes only the missing ones:

  DISTILL_DIR/info.json                      who made the data, and how
  DISTILL_DIR/shard-00000-of-00012.tsv       source<TAB>teacher output, one a line
  ...

info.json records the teacher (checkpoint path and step), the vocabulary (path
and sha256 of its content), the problem, the beam size and the number of
sources. A rerun with another teacher, vocabulary, problem, beam or source count
is refused (`DistillMismatchError`), as is training on data made with another
vocabulary.
"""

import os
import re
import sys
import time

from absl import logging
import tensorflow as tf

from t2t_vqem import decode
from t2t_vqem import files

INFO = "info.json"
FORMAT_VERSION = 1
SHARD_PATTERN = re.compile(r"^shard-(\d{5})-of-(\d{5})\.tsv$")


class DistillMismatchError(ValueError):
  """Distilled data made by another teacher, vocabulary or setting than the one asked for."""


class DistillIncompleteError(ValueError):
  """Distilled data with missing shards (an interrupted run)."""


def checkpoint_step(path):
  """The training step of a checkpoint: its `ckpt-N` suffix, else its optimizer's counter."""
  match = re.search(r"-(\d+)$", path)
  if match:
    return int(match.group(1))
  try:
    return int(tf.train.load_variable(path, "optimizer/iterations/.ATTRIBUTES/VARIABLE_VALUE"))
  except (tf.errors.OpError, ValueError):
    return None


def teacher_record(checkpoint):
  """What identifies a teacher in info.json: its checkpoint path and step."""
  return {"checkpoint": os.path.abspath(checkpoint), "step": checkpoint_step(checkpoint)}


def vocab_record(vocab_path):
  """What identifies a vocabulary in info.json: its path and content hash."""
  return {"path": os.path.abspath(vocab_path), "sha256": files.sha256(vocab_path)}


def shard_name(index, num_shards):
  return f"shard-{index:05d}-of-{num_shards:05d}.tsv"


def read_info(distill_dir):
  path = os.path.join(distill_dir, INFO)
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"{path!r} not found: {distill_dir!r} holds no distilled data "
      "(run the distillation stage first)"
    )
  return files.read_json(path)


def check_vocab(info, vocab_path, where):
  """Refuses distilled data made with another vocabulary than `vocab_path` (by content)."""
  found = vocab_record(vocab_path)
  made = info["vocab"]
  if made["sha256"] != found["sha256"]:
    raise DistillMismatchError(
      f"distilled data in {where!r} was made with vocabulary {made['path']!r} "
      f"(sha256 {made['sha256'][:12]}), but the vocabulary now is {found['path']!r} "
      f"(sha256 {found['sha256'][:12]}); distill again with this vocabulary "
      "(another --output_dir) or use the problem settings and data_dir the teacher used"
    )
  if made["path"] != found["path"]:
    logging.warning(
      "distilled data in %s was made with vocabulary %s; using %s, which has the same content",
      where,
      made["path"],
      found["path"],
    )


def check_teacher(info, teacher, where):
  """Refuses distilled data made by another teacher (checkpoint path or step)."""
  made = info["teacher"]
  if (made["checkpoint"], made["step"]) != (teacher["checkpoint"], teacher["step"]):
    raise DistillMismatchError(
      f"distilled data in {where!r} was made by teacher checkpoint {made['checkpoint']!r} "
      f"(step {made['step']}), not by {teacher['checkpoint']!r} (step {teacher['step']}); "
      f"delete {where!r} to distill again with this teacher, or use another directory"
    )


def _check_settings(info, expected, where):
  for key in ("format", "problem", "beam_size", "alpha", "num_sources", "shard_size"):
    if info.get(key) != expected[key]:
      raise DistillMismatchError(
        f"distilled data in {where!r} has {key} = {info.get(key)!r}, not {expected[key]!r} "
        f"as asked now; delete {where!r} to distill again, or use another directory"
      )


def _progress_printer(total, start_done):
  started = time.perf_counter()

  def show(done, shard, num_shards):
    elapsed = time.perf_counter() - started
    rate = (done - start_done) / max(elapsed, 1e-9)
    eta = (total - done) / rate if rate > 0 else float("nan")
    print(
      f"\rdistilled {done}/{total} sentences  shard {shard + 1}/{num_shards}  "
      f"{rate:.1f} sentences/s  ETA {eta:.0f} s   ",
      end="",
      file=sys.stderr,
      flush=True,
    )

  return show


def distill(
  model,
  vocab,
  sources,
  distill_dir,
  teacher,
  problem_name,
  beam_size=4,
  alpha=None,
  batch_size=64,
  shard_size=5000,
  max_shards=None,
  progress=True,
):
  """Beam-decodes `sources` with the teacher `model` into shards under distill_dir.

  Finished shards of an earlier (interrupted) run with the same teacher,
  vocabulary and settings are kept; only the missing ones are decoded.

  Args:
    model: the trained teacher (has `decode(inputs, beam_size, alpha)`).
    vocab: its vocabulary (a `Vocab` with a `path`).
    sources: every training source, as Python strings, in the problem's order.
    distill_dir: where info.json and the shards go.
    teacher: `teacher_record(checkpoint)` of the loaded checkpoint.
    problem_name: the registered problem the sources come from.
    beam_size, alpha: the teacher's search (alpha None: the model's own, which is
      what info.json then records).
    batch_size: sentences per decode batch.
    shard_size: sentences per shard.
    max_shards: stop after this many new shards (for tests and time-boxed runs).
    progress: print a progress line on stderr.
  Returns:
    the info dict; info["complete"] tells whether every shard exists.
  """
  sources = [" ".join(s.split()) for s in sources]  # no TAB or newline in a TSV field
  if alpha is None:
    alpha = getattr(model, "alpha", None)
  num_shards = max(1, -(-len(sources) // shard_size))
  expected = {
    "format": FORMAT_VERSION,
    "problem": problem_name,
    "beam_size": beam_size,
    "alpha": alpha,
    "num_sources": len(sources),
    "shard_size": shard_size,
  }
  os.makedirs(distill_dir, exist_ok=True)
  info_path = os.path.join(distill_dir, INFO)
  if os.path.exists(info_path):
    info = read_info(distill_dir)
    _check_settings(info, expected, distill_dir)
    check_teacher(info, teacher, distill_dir)
    check_vocab(info, vocab.path, distill_dir)
  else:
    info = dict(
      expected,
      num_shards=num_shards,
      teacher=teacher,
      vocab=vocab_record(vocab.path),
      complete=False,
    )
    files.write_json(info_path, info)

  missing = [
    i
    for i in range(num_shards)
    if not os.path.exists(os.path.join(distill_dir, shard_name(i, num_shards)))
  ]
  done = sum(
    len(sources[i * shard_size : (i + 1) * shard_size])
    for i in range(num_shards)
    if i not in missing
  )
  if missing:
    logging.info(
      "Distilling %d of %d training sources (%d shards) with beam %d into %s",
      len(sources) - done,
      len(sources),
      len(missing),
      beam_size,
      distill_dir,
    )
  show = _progress_printer(len(sources), done) if progress else None
  decode_fn = decode.decode_function(model, beam_size, alpha)
  started = time.perf_counter()
  for count, index in enumerate(missing):
    if max_shards is not None and count >= max_shards:
      break
    chunk = sources[index * shard_size : (index + 1) * shard_size]
    shown = done
    on_batch = (
      (lambda d, n, shown=shown, index=index: show(shown + d, index, num_shards)) if show else None
    )
    targets = decode.translate(
      model, vocab, chunk, batch_size=batch_size, decode_fn=decode_fn, progress=on_batch
    )
    lines = "".join(f"{s}\t{' '.join(t.split())}\n" for s, t in zip(chunk, targets))
    files.write_text(os.path.join(distill_dir, shard_name(index, num_shards)), lines)
    done += len(chunk)
  if show and missing:
    print(file=sys.stderr)
  left = [
    i
    for i in range(num_shards)
    if not os.path.exists(os.path.join(distill_dir, shard_name(i, num_shards)))
  ]
  if missing:
    logging.info(
      "Distilled %d sentences in %.1f s; %d shard(s) left",
      done,
      time.perf_counter() - started,
      len(left),
    )
  if not left and not info.get("complete"):
    info["complete"] = True
    files.write_json(info_path, info)
  return info


def shard_paths(distill_dir):
  """The shard files of a complete distillation, in order; refuses an incomplete one."""
  info = read_info(distill_dir)
  num_shards = info["num_shards"]
  paths = [os.path.join(distill_dir, shard_name(i, num_shards)) for i in range(num_shards)]
  missing = [os.path.basename(p) for p in paths if not os.path.exists(p)]
  if missing:
    raise DistillIncompleteError(
      f"distilled data in {distill_dir!r} is incomplete: {len(missing)} of {num_shards} "
      f"shards missing (first: {missing[0]}); rerun the distillation to finish it"
    )
  return paths


def read_pairs(distill_dir):
  """Every (source, teacher output) pair of a complete distillation, as Python strings."""
  pairs = []
  for path in shard_paths(distill_dir):
    with open(path, encoding="utf-8") as f:
      for line in f:
        source, _, target = line.rstrip("\n").partition("\t")
        pairs.append((source, target))
  return pairs
