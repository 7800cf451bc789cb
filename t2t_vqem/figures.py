"""Line plots of training runs' evaluation histories, e.g. the paper's Figure 3.

Figure 3 plots the teacher-forced BLEU of hard EM against soft EM (n_s = 5, 10)
at every evaluation of their runs:

  figures.plot_history(
    {"hard EM": "runs/vq", "soft EM, n_s=5": "runs/em5", "soft EM, n_s=10": "runs/em10"},
    "bleu_teacher_forced",
    "runs/figure3.png",
    ylabel="teacher-forced BLEU",
  )

(The paper's y-axis is BLEU on the test set; a run evaluates dev while training,
which is what plot_history plots unless told another split.)

Every Trainer.evaluate puts a row into its run's OUTPUT_DIR/eval_history.csv
(see t2t_vqem.train.trainer.Trainer): columns `step`, `split`, then every result
name, an empty cell where that evaluation gave no such result. This module reads
and writes that file; it imports matplotlib only to plot, and never TensorFlow.
"""

import csv
import io
import os

from t2t_vqem import files

EVAL_HISTORY = "eval_history.csv"
KEY_COLUMNS = ("step", "split")


def history_path(run_dir):
  return os.path.join(run_dir, EVAL_HISTORY)


def read_csv_table(path):
  """(columns, rows) of a CSV file as written, every cell a string; ([], []) if absent."""
  if not os.path.exists(path):
    return [], []
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    return list(reader.fieldnames or []), list(reader)


def write_csv_table(path, columns, rows):
  """Writes a whole CSV atomically (t2t_vqem.files): after a crash `path` holds the old
  table or the new one, never part of one. Cells missing from a row are left empty."""
  text = io.StringIO()
  writer = csv.DictWriter(text, columns, restval="")
  writer.writeheader()
  writer.writerows(rows)
  files.write_text(path, text.getvalue(), newline="")


def read_history(run_dir):
  """Every evaluation of a run, in the order they were written.

  Returns:
    one dict per row of run_dir/eval_history.csv: `step` (int), `split` (str),
    and each result that evaluation gave (float); so a row less its step and
    split is what Trainer.evaluate returned.

  Raises:
    ValueError: the run has no eval_history.csv.
  """
  path = history_path(run_dir)
  columns, rows = read_csv_table(path)
  if not columns:
    raise ValueError(f"{run_dir!r} has no evaluation history ({path} does not exist)")
  history = []
  for row in rows:
    parsed = {"step": int(row["step"]), "split": row["split"]}
    parsed.update(
      {name: float(value) for name, value in row.items() if name not in KEY_COLUMNS and value}
    )
    history.append(parsed)
  return history


def _series(label, run_dir, metric, split):
  """[(step, value)] of `metric` in the `split` evaluations of one run, by step."""
  where = f"run {label!r} ({run_dir})"
  try:
    history = read_history(run_dir)
  except ValueError as e:
    raise ValueError(f"{where}: {e}") from None
  rows = [row for row in history if row["split"] == split]
  if not rows:
    splits = sorted({row["split"] for row in history})
    raise ValueError(f"{where} has no {split} evaluations (splits: {', '.join(splits) or 'none'})")
  series = sorted((row["step"], row[metric]) for row in rows if metric in row)
  if not series:
    names = sorted({name for row in rows for name in row if name not in KEY_COLUMNS})
    raise ValueError(
      f"{where} has no {metric!r} in its {split} evaluations; it has: {', '.join(names)}"
    )
  return series


def plot_history(runs, metric, png_path, csv_path=None, title=None, ylabel=None, split="dev"):
  """One line per run of `metric` against the training step, a marker at each evaluation.

  For Figure 3: metric "bleu_teacher_forced" of a hard EM run and soft EM runs.

  Args:
    runs: {label: run_dir}, in the legend's order.
    metric: a result name of the runs' evaluations (a column of eval_history.csv).
    png_path: the picture (matplotlib's Agg backend; no display is needed).
    csv_path: the plotted values, one row (step, label, metric) per run and
      evaluation (default: png_path with the extension .csv).
    title, ylabel: of the plot (default: none, and the metric's name).
    split: whose evaluations are plotted (the trainer evaluates dev during training).

  Returns:
    (png_path, csv_path).

  Raises:
    ValueError: a run has no history, no `split` evaluations, or none giving `metric`
      (the message names the run and the metrics it has).
  """
  if not runs:
    raise ValueError("plot_history needs at least one run")
  from matplotlib import figure
  from matplotlib.backends import backend_agg

  csv_path = csv_path or os.path.splitext(png_path)[0] + ".csv"
  series = {label: _series(label, run_dir, metric, split) for label, run_dir in runs.items()}
  fig = figure.Figure(figsize=(6.4, 4.0), layout="tight")
  backend_agg.FigureCanvasAgg(fig)  # Agg without pyplot: no global backend, no display
  axes = fig.add_subplot()
  for label, points in series.items():
    steps, values = zip(*points)
    axes.plot(steps, values, marker="o", markersize=4, label=label)
  axes.set_xlabel("step")
  axes.set_ylabel(ylabel or metric)
  if title:
    axes.set_title(title)
  axes.grid(alpha=0.3)
  axes.legend()
  for path in (png_path, csv_path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  files.write_bytes(png_path, buffer.getvalue())
  rows = [
    {"step": step, "label": label, metric: repr(value)}
    for label, points in series.items()
    for step, value in points
  ]
  write_csv_table(csv_path, ["step", "label", metric], rows)
  return png_path, csv_path
