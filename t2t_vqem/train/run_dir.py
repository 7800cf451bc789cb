"""A run's folder: what it holds and checks, its evaluation history, loading it for inference.

output_dir/run_info.json names the run's model and problem (and the problem's
data fingerprint, and the machine it started on: training is bit-deterministic for a
seed on one machine, not across CPUs); eval_history.csv holds a row per evaluation (see Trainer);
checkpoints/ the checkpoints; operative_config.gin the Gin config it ran with.
"""

import json
import os
import platform

from absl import logging
import gin
import tensorflow as tf

from t2t_vqem import config
from t2t_vqem import figures
from t2t_vqem import files
from t2t_vqem import registry
from t2t_vqem.train import checkpoints

RUN_INFO = "run_info.json"
TEST_RESULTS = "test_results.json"


class OutputDirError(ValueError):
  """The output_dir holds a run that does not match the one asked for."""


def machine():
  """What a run computes on: the devices, CPU model and TensorFlow version, as a string."""
  gpus = tf.config.list_logical_devices("GPU")
  if gpus:
    devices = f"{len(gpus)} GPU(s) visible, {platform.machine()}"
  else:
    devices = f"CPU ({os.cpu_count()} cores, {platform.machine()}"
    try:
      with open("/proc/cpuinfo", encoding="utf-8") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:  # not Linux
      names = []
    devices += f", {names[0]})" if names else ")"
  return f"{devices}, TensorFlow {tf.__version__}"


def check_run_info(output_dir, info, write=True):
  """Writes output_dir/run_info.json (when `write`), with the machine it starts on,
  or checks that an existing one names the model and problem of `info`."""
  path = os.path.join(output_dir, RUN_INFO)
  if os.path.exists(path):
    found = files.read_json(path)
    for key in ("model", "problem"):
      if found.get(key) != info[key]:
        raise OutputDirError(
          f"output_dir {output_dir!r} holds a checkpoint of {key} "
          f"{found.get(key)!r}, not {info[key]!r}; use another --output_dir "
          f"or Trainer.{key} = {found.get(key)!r}"
        )
    return
  if write:
    files.write_json(path, dict(info, started_on=machine()))


def check_run_data(output_dir, fingerprint, write=True):
  """Records the problem's data fingerprint in run_info.json, or checks it is unchanged.

  A run resumed on other data than it started on would mix two experiments:
  refused, naming the fields that differ. Where the data lies (file paths) is
  not compared, only what it holds. A run_info.json of an older version,
  with no fingerprint, gets this one. With write=False (a worker other than the
  chief) only an existing record is checked.
  """
  path = os.path.join(output_dir, RUN_INFO)
  if not write and not os.path.exists(path):
    return
  info = files.read_json(path)
  fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back from JSON
  found = info.get("data")
  if found is None:
    if write:
      files.write_json(path, dict(info, data=fingerprint))
    return
  found, fingerprint = _contents(found), _contents(fingerprint)
  if found != fingerprint:
    differ = sorted(k for k in set(found) | set(fingerprint) if found.get(k) != fingerprint.get(k))
    raise OutputDirError(
      f"output_dir {output_dir!r} was trained on other data than its problem "
      f"{info['problem']!r} reads now (differing: {', '.join(differ)}); use another "
      f"--output_dir, or give the problem the data the run started on"
    )


def _contents(fingerprint):
  """A fingerprint without where the data lies (a corpus moved elsewhere is the same data)."""
  if isinstance(fingerprint, dict):
    return {k: _contents(v) for k, v in fingerprint.items() if k not in ("path", "distill_dir")}
  return fingerprint


def write_eval_history(output_dir, step, split, results):
  """Puts one evaluation's row into output_dir/eval_history.csv (see Trainer).

  The row replaces any earlier one of the same step and split; result names not
  yet in the header are appended to it (sorted), the file rewritten whole.
  """
  clash = set(results) & set(figures.KEY_COLUMNS)
  if clash:
    raise ValueError(f"a result may not be called {', '.join(sorted(clash))}")
  path = figures.history_path(output_dir)
  columns, rows = figures.read_csv_table(path)
  columns = list(columns or figures.KEY_COLUMNS)
  columns += sorted(set(results) - set(columns))
  key = (str(step), split)
  rows = [row for row in rows if (row["step"], row["split"]) != key]
  rows.append({"step": key[0], "split": split, **{k: repr(float(v)) for k, v in results.items()}})
  figures.write_csv_table(path, columns, rows)


def has_evaluation(output_dir, step, split):
  """Whether output_dir/eval_history.csv holds a row of `step` and `split`."""
  _, rows = figures.read_csv_table(figures.history_path(output_dir))
  return any(row["step"] == str(step) and row["split"] == split for row in rows)


def truncate_eval_history(output_dir, step):
  """Drops the rows of output_dir/eval_history.csv past `step`; returns how many."""
  path = figures.history_path(output_dir)
  columns, rows = figures.read_csv_table(path)
  kept = [row for row in rows if int(row["step"]) <= step]
  if len(kept) < len(rows):
    figures.write_csv_table(path, columns, kept)
  return len(rows) - len(kept)


def load_run(output_dir, checkpoint=None, data_dir=None, gin_files=(), gin_params=()):
  """(problem, model, checkpoint path) of a trained run, for inference.

  Problem and model are built under the run's own operative_config.gin (which
  names them and holds their settings), then `gin_files` and `gin_params`;
  the caller's global Gin config is given back untouched.

  Args:
    output_dir: the training run.
    checkpoint: a checkpoint path (default: the run's latest).
    data_dir: problem data and vocabulary cache.
    gin_files, gin_params: Gin files and bindings applied on top of the run's config.
  """
  with config.run_config(output_dir, gin_files, gin_params):
    path = checkpoint or checkpoints.newest_readable(os.path.join(output_dir, "checkpoints"))
    if not path:
      raise FileNotFoundError(f"no checkpoint in {os.path.join(output_dir, 'checkpoints')!r}")
    problem = registry.build_problem(gin.query_parameter("Trainer.problem"), data_dir=data_dir)
    model = registry.build_model(gin.query_parameter("Trainer.model"), **problem.model_kwargs())
    model(problem.dummy_features(), training=False)
  tf.train.Checkpoint(model=model).restore(path).expect_partial()
  logging.info("Loaded %s", path)
  return problem, model, path
