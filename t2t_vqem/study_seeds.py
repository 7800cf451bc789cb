"""A study's rows over several seeds: each row trained once per seed, and its spread.

The paper gives one number per row; on a small problem and a short budget the
seed moves a row's BLEU by several points, so an ordering of two rows is only
shown when it holds beyond that spread. With `Study.seeds = [1, 2, 3]` every
row of the table is trained once per seed (`Trainer.seed`: weights, dropout
and data order; the teacher and the distilled set are shared): the first seed
in rows/<name>/, as without seeds, each other seed s in rows/<name>.seed<s>/.
Every run is a row of the table (decoded, timed side by side), and results.md
ends with one line per row of the paper: the metric's mean, lowest and highest
over the seeds (BLEU, or test bits/dim for image rows).
"""

SEP = ".seed"


def check_seeds(seeds):
  """The seeds as a list of distinct ints (at least one)."""
  seeds = list(seeds)
  if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
    raise ValueError(f"Study.seeds = {seeds!r}: give a list of one or more int seeds")
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"Study.seeds = {seeds!r} repeats a seed")
  return seeds


def expand(rows, seeds):
  """The checked rows, each once per seed (see the module docstring): row dicts with
  "base" (the paper row's name) and "seed" (None with a single seed: the row's
  config is left untouched)."""
  if len(seeds) == 1:
    return [dict(row, base=row["name"], base_label=row["label"], seed=None) for row in rows]
  expanded, names = [], {row["name"] for row in rows}
  for row in rows:
    for i, seed in enumerate(seeds):
      name = row["name"] if i == 0 else f"{row['name']}{SEP}{seed}"
      if i and name in names:
        raise ValueError(f"row {name!r} is also the name of row {row['name']!r}'s seed {seed}")
      expanded.append(
        dict(
          row,
          name=name,
          label=f"{row['label']} (seed {seed})",
          gin=row["gin"] + [f"Trainer.seed = {seed}"],
          base=row["name"],
          base_label=row["label"],
          seed=seed,
        )
      )
  return expanded


def summary(rows, results_rows, metric):
  """[{"name", "label", "seeds", metric: [values], "mean", "min", "max"}] per paper row,
  in the table's order, from the expanded rows and their results (matched by name);
  empty with a single seed."""
  if not rows or rows[0]["seed"] is None:
    return []
  values = {r["name"]: r[metric] for r in results_rows}
  grouped = {}
  for row in rows:
    entry = grouped.setdefault(row["base"], {"name": row["base"], "label": row["base_label"]})
    entry.setdefault("seeds", []).append(row["seed"])
    entry.setdefault(metric, []).append(values[row["name"]])
  out = []
  for entry in grouped.values():
    got = entry[metric]
    out.append(dict(entry, mean=sum(got) / len(got), min=min(got), max=max(got)))
  return out


def markdown(seeds_summary, metric):
  """results.md's lines of the spread over seeds (none without seeds)."""
  if not seeds_summary:
    return []
  seeds = seeds_summary[0]["seeds"]
  lines = [
    "",
    f"Over the seeds {', '.join(map(str, seeds))} (each row trained once per seed; "
    f"{metric}: mean, lowest - highest, each seed's):",
    "",
    f"| Model | {metric} mean | lowest - highest | per seed |",
    "|---|---|---|---|",
  ]
  for entry in seeds_summary:
    per_seed = ", ".join(f"{v:.2f}" for v in entry[metric])
    lines.append(
      f"| {entry['label']} ({entry['name']}) | {entry['mean']:.2f} "
      f"| {entry['min']:.2f} - {entry['max']:.2f} | {per_seed} |"
    )
  return lines
