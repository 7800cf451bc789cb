"""One command per table and figure of the paper: a teacher and many students, one table.

  t2t_vqem-trainer --gin_file=paper_table1.gin --output_dir=runs/paper_table1

A Study is the pipeline (t2t_vqem/pipeline.py) with many rows: one teacher,
one distilled training set (made only if some row trains on it), then one
training run per row of the table (Table 1, §5.1.1's comparison, Tables 3-5),
each on the teacher's distilled targets or on the gold problem, and one table
of all of them beside the paper's figures. The teacher and distillation stages
are the Pipeline's own (a Pipeline is built for them). In OUTPUT_DIR:

  teacher/            the Transformer (`Study.teacher_gin`), unless `Study.teacher_dir`
                      names a trained one; without either, no teacher rows
  distill/            the teacher's beam outputs for every training source
  rows/<name>/        each row's training run (rows/<name>/stage_done.json when done);
                      with `Study.seeds`, rows/<name>.seed<s>/ for each seed but the
                      first (t2t_vqem/study_seeds.py)
  eval/<name>.json    each row's BLEU on `bleu_split` (its outputs in <name>.hyp.txt),
                      the teacher's as teacher_greedy and teacher_beam<B>
  eval/latency.json   batch-1 latency of every row, timed side by side
  results.json, results.md   the table: ours, the paper's, the speedups
  <file>.png, .csv    each of `Study.figures`: the rows' evaluation histories against
                      the step (Figure 3; t2t_vqem/study_figures.py)

A study of image rows (models serving images: Table 2, §5.2) has no teacher and
no BLEU or latency: each row's test bits/dim and its parts (eval/<name>.json,
from rows/<name>/test_results.json) and its Fig. 4 grid (fig4_<name>.png) make
the table instead (t2t_vqem/study_images.py).

Rerunning the command resumes: finished rows are neither trained nor decoded
again. To redo a row, delete rows/<name>/ (trained and evaluated again) or only
eval/<name>.json (evaluated again); results made from another checkpoint than the
run's newest (a row trained on) are evaluated again. Whenever a row is evaluated anew, the
latencies of all rows are timed again, side by side, so that every latency of
the table comes from one session. The figures are drawn again on every run.
"""

import os
import re
import time

from absl import logging
import gin

from t2t_vqem import config
from t2t_vqem import constants
from t2t_vqem import decode
from t2t_vqem import distill as distill_lib
from t2t_vqem import files
from t2t_vqem import pipeline as pipeline_lib
from t2t_vqem import speed
from t2t_vqem import study_figures
from t2t_vqem import study_images
from t2t_vqem import study_seeds
from t2t_vqem.train import checkpoints
from t2t_vqem.train import trainer as trainer_lib

ROWS_DIR = "rows"
LATENCY = "latency"
ROW_KEYS = ("name", "label", "gin", "distilled", "paper", "warm_start")
PAPER_KEYS = ("bleu", "latency_ms", "speedup", "bits_per_dim")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_cell = pipeline_lib._cell


def is_configured():
  """Whether the parsed Gin config asks for a study (binds Study.rows)."""
  try:
    gin.query_parameter("Study.rows")
  except ValueError:
    return False
  return True


def _check_paper(paper, where):
  if not isinstance(paper, dict) or set(paper) - set(PAPER_KEYS):
    raise ValueError(f"{where}: the paper's figures are a dict with keys among {PAPER_KEYS}")
  for key, value in paper.items():
    if not isinstance(value, (int, float)) or isinstance(value, bool):
      raise ValueError(f"{where}: paper[{key!r}] = {value!r} is not a number")
  return dict(paper)


def check_rows(rows, reserved=()):
  """The rows of `Study.rows`, checked, with their defaults filled in.

  Each row is a dict: "name" (its folder, unique), "gin" (list of Gin files
  and bindings of its training run), optional "label" (its text in the table,
  default the name), "distilled" (train on the teacher's distilled targets,
  default False), "paper" (the paper's figures: keys among PAPER_KEYS) and
  "warm_start" (a distilled row: start from the teacher's weights, ours; default
  Study.student_warm_start).
  """
  if not rows:
    raise ValueError("Study.rows is empty: give at least one row")
  checked, names = [], set(reserved)
  for i, row in enumerate(rows):
    where = f"Study.rows[{i}]"
    if not isinstance(row, dict) or "name" not in row or "gin" not in row:
      raise ValueError(f"{where} must be a dict with at least 'name' and 'gin'")
    unknown = sorted(set(row) - set(ROW_KEYS))
    if unknown:
      raise ValueError(f"{where} has unknown keys {unknown}; a row's keys are {ROW_KEYS}")
    name = row["name"]
    if not isinstance(name, str) or not _NAME.match(name):
      raise ValueError(f"{where}: name {name!r} is not a folder name (letters, digits, _ . -)")
    if name in names:
      raise ValueError(f"{where}: name {name!r} is taken (names: unique, not {list(reserved)})")
    names.add(name)
    gin_items = row["gin"]
    if isinstance(gin_items, str) or not all(isinstance(g, str) for g in gin_items):
      raise ValueError(f"{where}: 'gin' must be a list of Gin files and bindings")
    warm_start = row.get("warm_start")
    if warm_start not in (None, True, False) or (warm_start and not row.get("distilled")):
      raise ValueError(f"{where}: 'warm_start' is True or False, and only for a distilled row")
    checked.append(
      {
        "name": name,
        "label": str(row.get("label", name)),
        "gin": list(gin_items),
        "distilled": bool(row.get("distilled", False)),
        "warm_start": warm_start,
        "paper": _check_paper(row.get("paper", {}), where),
      }
    )
  return checked


def results_markdown(results):
  """The results as a Markdown table, ours beside the paper's figures, with its notes, then
  the figures (each row's last and largest value) and the study's note."""
  if results.get("images"):
    table = study_images.results_markdown(results)
  else:
    table = translation_markdown(results)
  metric = "bits_per_dim" if results.get("images") else "bleu"
  lines = study_seeds.markdown(results.get("seeds") or [], metric)
  lines += study_figures.markdown(results.get("figures") or [])
  if results.get("note"):
    lines += ["", results["note"]]
  return table + "".join(line + "\n" for line in lines)


def translation_markdown(results):
  """The translation rows as a Markdown table (BLEU, latency, speedups), with its notes."""
  beam = results["teacher_beam_size"]
  lines = [f"## {results['title']}", ""] if results.get("title") else []
  lines += [
    "| Model | n_c | n_s | BLEU | paper BLEU | Latency (ms) | paper latency (ms) "
    f"| Speedup vs greedy | Speedup vs beam {beam} | paper speedup |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for row in results["rows"]:
    paper = row["paper"]
    lines.append(
      f"| {row['model']} | {_cell(row['n_c'], 'd')} | {_cell(row['n_s'], 'd')} "
      f"| {row['bleu']:.2f} | {_cell(paper.get('bleu'), 'g')} "
      f"| {row['latency_ms']:.1f} | {_cell(paper.get('latency_ms'), 'g')} "
      f"| {_cell(row['speedup_vs_greedy'], '.2f', 'x')} "
      f"| {_cell(row['speedup_vs_beam'], '.2f', 'x')} | {_cell(paper.get('speedup'), '.2f', 'x')} |"
    )
  lines += [
    "",
    f"BLEU on the {results['bleu_split']} split of {results['problem']} "
    f"({results['bleu_sentences']} sentences), sacrebleu {results['bleu_signature']}.",
    f"Latency: median batch-1 decode time over the first {results['latency_sentences']} "
    f"{results['bleu_split']} sources on {results['machine']}, the {len(results['rows'])} "
    "decoders timed in turn on each sentence (rotating order); speedups are ratios of these "
    "medians" + ("." if results["teacher"] else " (no teacher rows: no speedups)."),
  ]
  distilled = list(dict.fromkeys(row["model"] for row in results["rows"] if row["distilled"]))
  if distilled:
    info = results["distill"]
    lines.append(
      f"Trained on the teacher's beam-{info['beam_size']} outputs for {info['num_sources']} "
      f"training sources (teacher step {info['teacher']['step']}, sequence-level "
      f"distillation): {'; '.join(distilled)}. The other rows: the gold targets."
    )
  else:
    lines.append("Every row trained on the gold targets (no distillation).")
  lines.append(
    "The paper columns are the paper's figures, on WMT'14 En-De (newstest2014) with latency "
    "at batch 1 on a GPU (its speedups are against its beam-4 Transformer): they are given "
    "for the ordering of the rows, not for their values."
  )
  return "\n".join(lines) + "\n"


@gin.configurable(denylist=["output_dir", "data_dir"])
class Study:
  """One teacher, one distilled training set, many students: one table (and figures) of the paper.

  Args:
    output_dir: every stage's output (see the module docstring).
    data_dir: problem data and vocabulary cache (shared by every run).
    rows: the table's student rows, in order (see `check_rows`): e.g.
      {"name": "em_ns10_distill", "label": "VQ-VAE with EM + distillation",
      "gin": ["latent_transformer_em.gin", "soft_em.num_samples = 10"],
      "distilled": True, "paper": {"bleu": 26.7, "latency_ms": 81, "speedup": 4.08}}.
      Every row trains on the teacher's problem (Trainer.problem).
    row_gin: files and bindings applied to every row after its own "gin" (e.g.
      the training budget of all rows).
    teacher_gin: Gin files and bindings of the teacher's training run; empty
      (and no teacher_dir): no teacher, no teacher rows, no speedups, and no
      row may be distilled.
    teacher_paper: the paper's figures of the teacher rows, {"greedy": {...},
      "beam": {...}} (keys of each as a row's "paper").
    title: the heading of results.md (e.g. "Table 1").
    shared_gin: files and bindings applied after every run's own (the teacher's
      and each row's), e.g. a smaller problem for all.
    figures: line plots of the rows' evaluation histories drawn once they are all
      trained, on every run (see study_figures.check_figures), e.g. Figure 3's
      [{"metric": "bleu_teacher_forced", "file": "fig3", "ylabel": "teacher-forced BLEU"}].
    note: a paragraph ending results.md (e.g. how the paper reads its figure).
    seeds: Trainer seeds of every row; with more than one, each row is trained once
      per seed and results.md gives each row's spread (t2t_vqem/study_seeds.py).
    teacher_dir, teacher_checkpoint, distill_dir, distill_beam_size,
      distill_alpha, distill_batch_size, distill_shard_size, teacher_beam_size,
      bleu_split, bleu_sentences, latency_sentences, decode_batch_size,
      evaluate_dev, student_warm_start: as the Pipeline's (t2t_vqem.pipeline.Pipeline).
  """

  def __init__(
    self,
    output_dir,
    data_dir=None,
    rows=gin.REQUIRED,
    row_gin=(),
    teacher_gin=(),
    teacher_paper=None,
    title=None,
    shared_gin=(),
    figures=(),
    note=None,
    seeds=(1,),
    teacher_dir=None,
    teacher_checkpoint=None,
    distill_dir=None,
    distill_beam_size=4,
    distill_alpha=None,
    distill_batch_size=64,
    distill_shard_size=5000,
    teacher_beam_size=4,
    bleu_split=constants.TEST,
    bleu_sentences=None,
    latency_sentences=100,
    decode_batch_size=64,
    evaluate_dev=True,
    student_warm_start=False,
  ):
    self.has_teacher = bool(teacher_gin) or teacher_dir is not None
    beam = teacher_beam_size
    self.teacher_specs = (
      [
        ("teacher_greedy", 1, "Transformer (greedy)", "greedy"),
        (f"teacher_beam{beam}", beam, f"Transformer (beam {beam})", "beam"),
      ]
      if self.has_teacher
      else []
    )
    reserved = [spec[0] for spec in self.teacher_specs] + [LATENCY]
    self.seeds = study_seeds.check_seeds(seeds)
    self.rows = study_seeds.expand(check_rows(rows, reserved), self.seeds)
    if any(row["distilled"] for row in self.rows) and not self.has_teacher:
      raise ValueError("a row is distilled but the study has no teacher (Study.teacher_gin)")
    self.teacher_paper = teacher_paper or {}
    if set(self.teacher_paper) - {"greedy", "beam"}:
      raise ValueError("Study.teacher_paper's keys are 'greedy' and 'beam'")
    for key, paper in self.teacher_paper.items():
      _check_paper(paper, f"Study.teacher_paper[{key!r}]")
    self.title, self.row_gin = title, list(row_gin)
    self.figures, self.note = study_figures.check_figures(figures), note
    self.images = self.problem = None  # the rows' kind and problem: set by check_problems
    self.output_dir, self.data_dir = output_dir, data_dir
    self.rows_dir = os.path.join(output_dir, ROWS_DIR)
    # The teacher and distillation stages, and the evaluation of one run, are the Pipeline's.
    self.pipeline = pipeline_lib.Pipeline(
      output_dir,
      data_dir=data_dir,
      teacher_gin=teacher_gin,
      student_gin=(),
      shared_gin=shared_gin,
      teacher_dir=teacher_dir,
      teacher_checkpoint=teacher_checkpoint,
      distill_dir=distill_dir,
      distill_beam_size=distill_beam_size,
      distill_alpha=distill_alpha,
      distill_batch_size=distill_batch_size,
      distill_shard_size=distill_shard_size,
      teacher_beam_size=teacher_beam_size,
      bleu_split=bleu_split,
      bleu_sentences=bleu_sentences,
      latency_sentences=latency_sentences,
      decode_batch_size=decode_batch_size,
      evaluate_dev=evaluate_dev,
      student_warm_start=student_warm_start,
    )
    self.eval_dir = self.pipeline.eval_dir

  def row_dir(self, name):
    return os.path.join(self.rows_dir, name)

  def _problem_of(self, items):
    """(Trainer.problem, Trainer.model) of a run's config."""
    with config.stage_config(items):
      return gin.query_parameter("Trainer.problem"), gin.query_parameter("Trainer.model")

  def check_problems(self):
    """Every row trains on the teacher's problem (else on the first row's), and all rows
    serve images (then without a teacher) or none does; fails before any training
    otherwise. Returns that problem's name."""
    pipeline = self.pipeline
    if pipeline.external_teacher:
      run_info = files.read_json(os.path.join(pipeline.teacher_dir, trainer_lib.RUN_INFO))
      expected = run_info["problem"]
      who = f"the teacher in {pipeline.teacher_dir}"
    elif self.has_teacher:
      expected = self._problem_of(pipeline.teacher_gin + pipeline.shared_gin)[0]
      who = "the teacher"
    else:
      expected = self._problem_of(self._row_gin(self.rows[0]) + pipeline.shared_gin)[0]
      who = f"row {self.rows[0]['name']!r}"
    models = {}
    for row in self.rows:
      problem, models[row["name"]] = self._problem_of(self._row_gin(row) + pipeline.shared_gin)
      if problem != expected:
        raise ValueError(
          f"row {row['name']!r} trains on problem {problem!r} but {who} on {expected!r}: "
          "every row of a table is scored on the same test set"
        )
    self.images = study_images.rows_serve_images(models, self.has_teacher)
    self.problem = expected
    return expected

  # -- stages -------------------------------------------------------------------

  def _row_gin(self, row):
    return row["gin"] + self.row_gin

  def _row_items(self, row):
    """A row's whole config: its gin, row_gin, shared_gin (and translate_distilled)."""
    if row["distilled"]:  # translate_distilled on the teacher's problem
      return self.pipeline._student_items(self._row_gin(row), row["warm_start"])
    return self._row_gin(row) + self.pipeline.shared_gin

  def train_rows(self):
    """Trains every row not done yet (rows/<name>/stage_done.json); {name: its stage record}."""
    done = {}
    for i, row in enumerate(self.rows, 1):
      run_dir = self.row_dir(row["name"])
      source = "distilled targets" if row["distilled"] else "gold targets"
      if os.path.exists(os.path.join(run_dir, pipeline_lib.STAGE_DONE)):
        logging.info("row %d/%d: %s (%s) already trained", i, len(self.rows), row["label"], source)
      else:
        logging.info(
          "row %d/%d: training %s on the %s in %s", i, len(self.rows), row["label"], source, run_dir
        )
        self._forget_eval(row["name"])  # made by an earlier run of this row, if any
      done[row["name"]] = self.pipeline._train(run_dir, self._row_items(row))
    return done

  def _forget_eval(self, name):
    for suffix in (".json", ".hyp.txt"):
      path = os.path.join(self.eval_dir, name + suffix)
      if os.path.exists(path):
        os.remove(path)

  def _specs(self):
    """(name, run_dir, beam size, label, paper figures) of every row of the table."""
    teacher = self.pipeline.teacher_dir
    specs = [
      (name, teacher, beam, label, dict(self.teacher_paper.get(key, {})))
      for name, beam, label, key in self.teacher_specs
    ]
    return specs + [
      (row["name"], self.row_dir(row["name"]), None, row["label"], row["paper"])
      for row in self.rows
    ]

  def evaluate(self, stages=None):
    """Every row's results (cached per row), the figures, then results.json and results.md.

    Translation rows: BLEU and the latencies; image rows: test bits/dim and Fig. 4.
    """
    if self.images is None:
      self.check_problems()
    stages = stages or {}
    if self.images:
      results = self._evaluate_images(stages)
    else:
      results = self._evaluate_translations(stages)
    labels = study_figures.line_labels(self.rows)
    runs = {labels[row["name"]]: self.row_dir(row["name"]) for row in self.rows}
    results["figures"] = study_figures.draw(self.figures, runs, self.output_dir)
    metric = "bits_per_dim" if self.images else "bleu"
    results["seeds"] = study_seeds.summary(self.rows, results["rows"], metric)
    results["note"] = self.note
    pipeline_lib.write_results(self.output_dir, results, results_markdown)
    return results

  def _evaluate_images(self, stages):
    """Test bits/dim and the Fig. 4 grid of every image row (study_images), cached in
    eval/<name>.json; the results dict of Table 2."""
    rows = []
    for row in self.rows:
      name = row["name"]
      path = os.path.join(self.eval_dir, name + ".json")
      result = study_images.row_results(
        self.row_dir(name), self._row_items(row), path, self.data_dir
      )
      result.update(name=name, model=row["label"], paper=row["paper"], distilled=False)
      result["fig4"] = study_images.copy_grid(result, self.output_dir, name)
      if name in stages:
        result["stage"] = stages[name]
      rows.append(result)
    info = {"images": True, "problem": self.problem, "machine": trainer_lib.machine()}
    return dict(info, title=self.title, rows=rows)

  def _made_from(self, run_dir):
    """(absolute run_dir, the checkpoint its evaluation reads) of a row or the teacher."""
    checkpoint = self.pipeline.teacher_checkpoint if run_dir == self.pipeline.teacher_dir else None
    checkpoint = checkpoint or checkpoints.newest_readable(os.path.join(run_dir, "checkpoints"))
    return os.path.abspath(run_dir), checkpoint

  def _evaluate_translations(self, stages):
    """BLEU of every row (cached per row) and the latencies; the results dict."""
    specs = self._specs()
    loaded, decode_fns = {}, {}

    def decode_fn(name, run_dir, beam_size):
      if run_dir not in loaded:
        loaded[run_dir] = self.pipeline._load(run_dir)
      if name not in decode_fns:
        decode_fns[name] = decode.decode_function(loaded[run_dir][1], beam_size)
      return decode_fns[name]

    evaluated, rows = False, []
    for i, (name, run_dir, beam_size, label, paper) in enumerate(specs, 1):
      path = os.path.join(self.eval_dir, name + ".json")
      cached = files.read_json(path) if os.path.exists(path) else None
      # Another run's, or made from another checkpoint (a row trained on): evaluated again.
      if cached and (cached["run_dir"], cached["checkpoint"]) == self._made_from(run_dir):
        rows.append(dict(cached, model=label))  # the label of this run's config
        continue
      self._forget_eval(name)
      logging.info("evaluating row %d/%d: %s", i, len(specs), label)
      fn = decode_fn(name, run_dir, beam_size)
      rows.append(self.pipeline._bleu_row(name, loaded[run_dir], beam_size, label, fn))
      evaluated = True
    latency_path = os.path.join(self.eval_dir, LATENCY + ".json")
    latency = files.read_json(latency_path) if os.path.exists(latency_path) else {}
    if evaluated or not all(spec[0] in latency for spec in specs):
      if os.path.exists(latency_path):
        os.remove(latency_path)  # stale: every row is timed again, side by side
      fns = {name: decode_fn(name, run_dir, beam) for name, run_dir, beam, _, _ in specs}
      latency = self.pipeline._latencies(fns, loaded[specs[0][1]][0])
    for row, (name, _, _, _, paper) in zip(rows, specs):
      row.update(latency[name], name=name, paper=paper)
      row["distilled"] = any(r["name"] == name and r["distilled"] for r in self.rows)
      if name in stages:
        row["stage"] = stages[name]
    teacher = self.has_teacher
    speed.add_speedups(rows, greedy=rows[0] if teacher else None, beam=rows[1] if teacher else None)
    used_distill = any(row["distilled"] for row in self.rows)
    last = rows[-1]  # a student: its problem is the base of translate_distilled
    results = {
      "title": self.title,
      "rows": rows,
      "problem": last["problem"],
      "bleu_split": self.pipeline.bleu_split,
      "bleu_sentences": last["bleu_sentences"],
      "bleu_signature": last["bleu_signature"],
      "latency_sentences": last["latency_sentences"],
      "teacher": self.has_teacher,
      "teacher_beam_size": self.pipeline.teacher_beam_size,
      "machine": trainer_lib.machine(),
      "distill": distill_lib.read_info(self.pipeline.distill_dir) if used_distill else None,
    }
    return results

  def run(self):
    """Runs (or resumes) every stage; returns the results dict (results.json)."""
    os.makedirs(self.output_dir, exist_ok=True)
    started = time.perf_counter()
    self.check_problems()
    stages = {}
    if self.has_teacher:
      teacher_done = os.path.join(self.pipeline.teacher_dir, pipeline_lib.STAGE_DONE)
      if not self.pipeline.external_teacher and not os.path.exists(teacher_done):
        for spec in self.teacher_specs:  # made by an earlier teacher, if any
          self._forget_eval(spec[0])
      self.pipeline.train_teacher()
      if os.path.exists(teacher_done):
        stages.update({spec[0]: files.read_json(teacher_done) for spec in self.teacher_specs})
    if any(row["distilled"] for row in self.rows):
      info = self.pipeline.distill()
      if not info.get("complete"):
        raise distill_lib.DistillIncompleteError(
          f"distillation in {self.pipeline.distill_dir!r} did not finish; rerun to continue"
        )
    stages.update(self.train_rows())
    logging.info("Evaluation on the %s split", "test" if self.images else self.pipeline.bleu_split)
    results = self.evaluate(stages)
    logging.info("Study finished in %.1f s", time.perf_counter() - started)
    print(results_markdown(results))
    return results
