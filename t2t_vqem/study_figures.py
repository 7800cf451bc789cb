"""A study's figures: its rows' evaluation histories against the step (the paper's Figure 3).

`Study.figures` lists line plots drawn from the eval_history.csv of every row
(t2t_vqem.figures.plot_history: one line per row), once all rows are trained
and again on every rerun, so that a resumed study draws them too. For Figure 3
(teacher-forced BLEU of hard EM vs soft EM at a codebook of 2^14, §5.1.1):

  Study.figures = [
      {'metric': 'bleu_teacher_forced', 'file': 'fig3', 'ylabel': 'teacher-forced BLEU'},
      {'metric': 'usage', 'file': 'fig3_usage', 'ylabel': 'codebook usage'},
  ]

writes OUTPUT_DIR/fig3.png with fig3.csv beside it (step, row label, value),
and fig3_usage.png / .csv. The rows evaluate during training when their
config sets Trainer.eval_every (and, for BLEU, Trainer.eval_bleu_examples > 0).
results.md gives each row's last and largest value of every figure.
"""

import os
import re

from t2t_vqem import figures as figures_lib

FIGURE_KEYS = ("metric", "file", "ylabel", "title", "split")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_figures(figures):
  """The figures of `Study.figures`, checked, with their defaults filled in.

  Each is a dict: "metric" (a result name of the rows' evaluations, a column of
  eval_history.csv, e.g. bleu_teacher_forced, usage, perplexity), optional
  "file" (the picture's name in OUTPUT_DIR without .png, unique; default the
  metric), "ylabel" (default the metric), "title" (default none) and "split"
  (whose evaluations: default dev, the split the trainer evaluates while training).
  """
  checked, files = [], set()
  for i, figure in enumerate(figures or ()):
    where = f"Study.figures[{i}]"
    if not isinstance(figure, dict) or not isinstance(figure.get("metric"), str):
      raise ValueError(f"{where} must be a dict with at least 'metric' (a result name)")
    unknown = sorted(set(figure) - set(FIGURE_KEYS))
    if unknown:
      raise ValueError(f"{where} has unknown keys {unknown}; a figure's keys are {FIGURE_KEYS}")
    file = figure.get("file", figure["metric"])
    if not isinstance(file, str) or not _FILE.match(file) or file.endswith(".png"):
      raise ValueError(
        f"{where}: file {file!r} is not a file name without extension (letters, digits, _ . -)"
      )
    if file in files:
      raise ValueError(f"{where}: file {file!r} is taken (each figure has its own file)")
    files.add(file)
    checked.append(
      {
        "metric": figure["metric"],
        "file": file,
        "ylabel": str(figure.get("ylabel", figure["metric"])),
        "title": figure.get("title"),
        "split": str(figure.get("split", "dev")),
      }
    )
  return checked


def line_labels(rows):
  """{row name: its line's label}: the row's label, with its name where labels repeat."""
  counts = {}
  for row in rows:
    counts[row["label"]] = counts.get(row["label"], 0) + 1
  return {
    row["name"]: row["label"] if counts[row["label"]] == 1 else f"{row['label']} ({row['name']})"
    for row in rows
  }


def _summary(csv_path, metric, labels):
  """{label: {"last", "last_step", "max", "max_step"}} of a plotted figure's CSV."""
  _, plotted = figures_lib.read_csv_table(csv_path)
  summary = {}
  for label in labels:
    points = [(int(r["step"]), float(r[metric])) for r in plotted if r["label"] == label]
    last = max(points)  # the latest step
    top = max(points, key=lambda p: (p[1], -p[0]))  # the largest value, earliest step
    summary[label] = {"last": last[1], "last_step": last[0], "max": top[1], "max_step": top[0]}
  return summary


def draw(figures, runs, output_dir):
  """Draws every figure (checked by `check_figures`) from the runs' histories.

  Args:
    figures: the checked figures.
    runs: {line label: run_dir}, in the legend's order.
    output_dir: where <file>.png and <file>.csv go.

  Returns:
    one record per figure: its settings, "png" and "csv" (file names in
    output_dir) and "rows" ({label: last and largest value, with their steps}).

  Raises:
    ValueError: a run has no evaluation giving the metric (the message names
      the figure, the run and the results it has).
  """
  drawn = []
  for i, figure in enumerate(figures):
    png, csv_path = (os.path.join(output_dir, figure["file"] + ext) for ext in (".png", ".csv"))
    try:
      figures_lib.plot_history(
        runs,
        figure["metric"],
        png,
        csv_path,
        title=figure["title"],
        ylabel=figure["ylabel"],
        split=figure["split"],
      )
    except ValueError as e:
      raise ValueError(
        f"Study.figures[{i}] ({figure['file']}.png): {e}; a row evaluates during training "
        "when its config sets Trainer.eval_every (BLEU also needs Trainer.eval_bleu_examples)"
      ) from None
    drawn.append(
      dict(
        figure,
        png=figure["file"] + ".png",
        csv=figure["file"] + ".csv",
        rows=_summary(csv_path, figure["metric"], runs),
      )
    )
  return drawn


def markdown(drawn):
  """results.md's lines for the drawn figures: their files, then each row's last and
  largest value of each (a run that collapsed has its largest far above its last)."""
  if not drawn:
    return []
  lines = ["", "Figures (each row's evaluations during training, against the step):"]
  for d in drawn:
    named = d["ylabel"] + ("" if d["ylabel"] == d["metric"] else f" ({d['metric']})")
    lines.append(f"- {d['png']} ({d['csv']}): {named}, {d['split']} evaluations")
  header = "| Row | " + " | ".join(f"{d['ylabel']}: last | max" for d in drawn) + " |"
  lines += ["", header, "|---|" + "---|---|" * len(drawn)]
  for label in drawn[0]["rows"]:
    cells = []
    for d in drawn:
      s = d["rows"][label]
      cells += [
        f"{s['last']:.4g} (step {s['last_step']})",
        f"{s['max']:.4g} (step {s['max_step']})",
      ]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  return lines
