"""The paper's main job as one command: teacher -> distillation -> student -> Table 1.

  t2t_vqem-trainer --gin_file=em_distill.gin --output_dir=runs/em_distill

Stages, each in its own folder of OUTPUT_DIR and each skipped when its output
exists (so rerunning the command after a crash, even a kill -9, resumes where it
stopped: every file is written whole or not at all, t2t_vqem.files, and
results.json, the mark of a finished run, last; tests/test_kill.py):

  teacher/   the autoregressive Transformer (`Pipeline.teacher_gin`), unless
             `Pipeline.teacher_dir` names an already trained run; a finished
             stage leaves teacher/stage_done.json
  distill/   the teacher's beam-search outputs for every training source
             (`t2t_vqem.distill`: shards + info.json; finished shards are kept)
  student/   the Latent Transformer (`Pipeline.student_gin`) trained on
             `translate_distilled`: distilled train targets, gold dev/test
  eval/      one JSON per table row (BLEU on `bleu_split`), latency.json (batch-1
             latency of all rows, timed side by side, overall and by the
             reference's length) and throughput.json (sentences per second at
             batch `throughput_batch_size`; t2t_vqem/speed.py)
  results.json, results.md   the table (model, n_c, n_s, BLEU, latency, speedups,
             throughput)

Every stage runs under its own Gin config (`t2t_vqem.config.stage_config`):
the global config is cleared, the stage's files and bindings (then
`shared_gin`) are parsed, and the caller's config is restored afterwards.
Loading a trained run (`t2t_vqem.train.trainer.load_run`) parses its
operative_config.gin the same way.
"""

import os
import time

from absl import logging
import gin

from t2t_vqem import config
from t2t_vqem import constants
from t2t_vqem import decode
from t2t_vqem import distill as distill_lib
from t2t_vqem import files
from t2t_vqem import metrics
from t2t_vqem import speed
from t2t_vqem.problems import problem as problem_lib
from t2t_vqem.train import trainer as trainer_lib

STAGE_DONE = "stage_done.json"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"


def is_configured():
  """Whether the parsed Gin config asks for the pipeline (binds Pipeline.student_gin)."""
  try:
    gin.query_parameter("Pipeline.student_gin")
  except ValueError:
    return False
  return True


stage_config = config.stage_config  # also importable from here


def write_results(output_dir, results, markdown):
  """Writes results.md, then results.json (the mark of a finished run; t2t_vqem.files).

  Killed in between, the rerun finds no results.json and writes both again from
  the cached stages and rows."""
  files.write_text(os.path.join(output_dir, RESULTS_MD), markdown(results))
  files.write_json(os.path.join(output_dir, RESULTS_JSON), results)


def _cell(value, fmt, suffix=""):
  """A table cell: value formatted with fmt and suffix, "-" for None."""
  return "-" if value is None else format(value, fmt) + suffix


def results_markdown(results):
  """The results as a Markdown table like the paper's Table 1, with its notes."""
  beam = results["teacher_beam_size"]
  bands = list(results["rows"][0].get("by_length", {}))
  throughput = results.get("throughput_batch_size")
  columns = ["Model", "n_c", "n_s", "BLEU", "% of greedy BLEU", "Latency (ms)"]
  columns += ["Speedup vs greedy", f"Speedup vs beam {beam}"]
  columns += [f"Speedup vs greedy, {band} subwords" for band in bands]
  columns += [f"Sentences/s at batch {throughput}"] if throughput else []
  lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
  greedy_bleu = results["rows"][0]["bleu"]
  for row in results["rows"]:
    share = 100 * row["bleu"] / greedy_bleu if greedy_bleu else None
    cells = [row["model"], _cell(row["n_c"], "d"), _cell(row["n_s"], "d")]
    cells += [f"{row['bleu']:.2f}", _cell(share, ".1f"), f"{row['latency_ms']:.1f}"]
    cells += [_cell(row[key], ".2f", "x") for key in ("speedup_vs_greedy", "speedup_vs_beam")]
    for band in bands:
      cell = row["by_length"][band]
      cells.append(f"{_cell(cell['speedup_vs_greedy'], '.2f', 'x')} ({cell['sentences']})")
    if throughput:
      cells.append(_cell(row.get("sentences_per_second"), ".1f"))
    lines.append("| " + " | ".join(cells) + " |")
  lines += [
    "",
    f"BLEU on the {results['bleu_split']} split of {results['problem']} "
    f"({results['bleu_sentences']} sentences), sacrebleu {results['bleu_signature']}.",
    f"Latency: median batch-1 decode time over the first {results['latency_sentences']} "
    f"{results['bleu_split']} sources on {results['machine']}, the three decoders timed "
    "in turn on each sentence (rotating order); speedups are ratios of these medians"
    + (", also within bands of the reference's length (in brackets: sentences)." if bands else "."),
    f"Student trained on the teacher's beam-{results['distill']['beam_size']} outputs for "
    f"{results['distill']['num_sources']} training sources (teacher step "
    f"{results['distill']['teacher']['step']}).",
  ]
  if throughput:
    lines.append(
      f"Throughput: the {results['bleu_sentences']} {results['bleu_split']} sources translated "
      f"in length-sorted batches of {throughput}, the decoders in turn; the median of "
      f"{results['throughput_rounds']} rounds."
    )
  return "\n".join(lines) + "\n"


@gin.configurable(denylist=["output_dir", "data_dir"])
class Pipeline:
  """Teacher -> sequence-level distillation -> Latent Transformer student -> results table.

  Args:
    output_dir: every stage's output (see the module docstring).
    data_dir: problem data and vocabulary cache (shared by every stage).
    teacher_gin: Gin files and bindings of the teacher's training run.
    student_gin: Gin files and bindings of the student's training run; its
      Trainer.problem must be the teacher's (the pipeline swaps in
      translate_distilled on top of it).
    shared_gin: files and bindings applied after each stage's own (e.g. a
      smaller problem for both).
    teacher_dir: an already trained teacher run to use instead of training one
      in output_dir/teacher.
    teacher_checkpoint: a checkpoint of the teacher (default: its latest).
    distill_dir: where the distilled data goes (default: output_dir/distill);
      another run's, made by the same teacher, is reused as it is.
    distill_beam_size, distill_alpha: the teacher's search when distilling
      (alpha None: the teacher's own).
    distill_batch_size, distill_shard_size: sentences per decode batch / shard.
    teacher_beam_size: the beam of the teacher's beam-search row of the table.
    bleu_split: the split BLEU is computed on (its gold references).
    bleu_sentences: at most this many sentences of it (None: all).
    latency_sentences: sources decoded one at a time for the latency columns.
    latency_bands: bands of the reference's length in subwords, (lowest, highest),
      each with its own median latency and speedups (t2t_vqem/speed.py).
    throughput_batch_size: batch of the throughput column (sentences per second
      translating the BLEU sources); 0: no throughput column.
    throughput_rounds: timed passes over those sources per decoder (the median).
    decode_batch_size: sentences per batch when decoding for BLEU.
    evaluate_dev: run each trainer's dev evaluation after training (its
      results go to stage_done.json and results.json).
    student_warm_start: start every distilled student from the teacher's weights
      where the two share a part (ours, not the paper's: Trainer.warm_start_from,
      t2t_vqem/train/warm_start.py; by default the embedding and source encoder).
  """

  def __init__(
    self,
    output_dir,
    data_dir=None,
    teacher_gin=gin.REQUIRED,
    student_gin=gin.REQUIRED,
    shared_gin=(),
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
    latency_bands=speed.LENGTH_BANDS,
    throughput_batch_size=64,
    throughput_rounds=2,
    decode_batch_size=64,
    evaluate_dev=True,
    student_warm_start=False,
  ):
    self.output_dir, self.data_dir = output_dir, data_dir
    self.student_warm_start = student_warm_start
    self.teacher_gin, self.student_gin = list(teacher_gin), list(student_gin)
    self.shared_gin = list(shared_gin)
    self.external_teacher = teacher_dir
    self.teacher_dir = teacher_dir or os.path.join(output_dir, "teacher")
    self.teacher_checkpoint = teacher_checkpoint
    self.distill_dir = distill_dir or os.path.join(output_dir, "distill")
    self.student_dir = os.path.join(output_dir, "student")
    self.eval_dir = os.path.join(output_dir, "eval")
    self.distill_beam_size, self.distill_alpha = distill_beam_size, distill_alpha
    self.distill_batch_size, self.distill_shard_size = distill_batch_size, distill_shard_size
    self.teacher_beam_size = teacher_beam_size
    problem_lib.check_split(bleu_split)
    self.bleu_split, self.bleu_sentences = bleu_split, bleu_sentences
    self.latency_sentences, self.decode_batch_size = latency_sentences, decode_batch_size
    self.latency_bands = speed.check_bands(latency_bands)
    self.throughput_batch_size, self.throughput_rounds = throughput_batch_size, throughput_rounds
    self.evaluate_dev = evaluate_dev
    self._teacher_problem = None

  # -- stages -------------------------------------------------------------------

  def _train(self, run_dir, items):
    """Trains (or resumes) one run under `items`; writes run_dir/stage_done.json."""
    done = os.path.join(run_dir, STAGE_DONE)
    if os.path.exists(done):
      logging.info("Stage %s already done; skipping", run_dir)
      return files.read_json(done)
    started = time.perf_counter()
    with config.stage_config(items):
      trainer = trainer_lib.Trainer(run_dir, data_dir=self.data_dir)
      trainer.train()
      dev = trainer.evaluate() if self.evaluate_dev else {}
      result = {
        "model": trainer.model_name,
        "problem": trainer.problem_name,
        "step": trainer.step,
        "dev": dev,
        "seconds": round(time.perf_counter() - started, 1),
      }
    files.write_json(done, result)
    return result

  def train_teacher(self):
    if self.external_teacher:
      config.operative_config_path(self.teacher_dir)  # fails now if it is not a run
      logging.info("Using the trained teacher in %s", self.teacher_dir)
      return None
    logging.info("Stage 1/4: teacher in %s", self.teacher_dir)
    return self._train(self.teacher_dir, self.teacher_gin + self.shared_gin)

  def distill(self, max_shards=None):
    """Stage 2: the teacher's beam outputs for every training source (resumes)."""
    logging.info("Stage 2/4: distillation into %s", self.distill_dir)
    problem, model, path = trainer_lib.load_run(
      self.teacher_dir, self.teacher_checkpoint, self.data_dir
    )
    self._teacher_problem = problem.name
    teacher = distill_lib.teacher_record(path)
    info_path = os.path.join(self.distill_dir, distill_lib.INFO)
    if os.path.exists(info_path):
      info = distill_lib.read_info(self.distill_dir)
      distill_lib.check_teacher(info, teacher, self.distill_dir)
      distill_lib.check_vocab(info, problem.vocab.path, self.distill_dir)
      if info.get("complete"):
        logging.info("Distillation in %s already done; skipping", self.distill_dir)
        return info
    sources, _ = problem.sources_and_references(constants.TRAIN)
    return distill_lib.distill(
      model,
      problem.vocab,
      sources,
      self.distill_dir,
      teacher,
      self._teacher_problem,
      beam_size=self.distill_beam_size,
      alpha=self.distill_alpha,
      batch_size=self.distill_batch_size,
      shard_size=self.distill_shard_size,
      max_shards=max_shards,
    )

  def _student_items(self, student_gin=None, warm_start=None):
    """The student's config: its own (`student_gin`, default Pipeline.student_gin), then
    translate_distilled on the teacher's problem (and, if warm_start, default
    Pipeline.student_warm_start, the teacher's weights to start from)."""
    student_gin = self.student_gin if student_gin is None else list(student_gin)
    warm_start = self.student_warm_start if warm_start is None else warm_start
    with config.stage_config(student_gin + self.shared_gin):
      student_problem = gin.query_parameter("Trainer.problem")
    teacher_problem = distill_lib.read_info(self.distill_dir)["problem"]
    if student_problem not in (teacher_problem, "translate_distilled"):
      raise ValueError(
        f"the student config trains on problem {student_problem!r} but the teacher was "
        f"distilled on {teacher_problem!r}; set Trainer.problem = {teacher_problem!r} in "
        "Pipeline.student_gin (the pipeline then trains on its distilled version)"
      )
    return (
      student_gin
      + self.shared_gin
      + [
        "Trainer.problem = 'translate_distilled'",
        f"translate_distilled.base_problem = {teacher_problem!r}",
        f"translate_distilled.distill_dir = {os.path.abspath(self.distill_dir)!r}",
      ]
      + ([f"Trainer.warm_start_from = {os.path.abspath(self.teacher_dir)!r}"] if warm_start else [])
    )

  def train_student(self):
    logging.info("Stage 3/4: student in %s", self.student_dir)
    return self._train(self.student_dir, self._student_items())

  def _load(self, run_dir):
    """(problem, model, checkpoint path, run_dir) of a trained run, under its own config."""
    checkpoint = self.teacher_checkpoint if run_dir == self.teacher_dir else None
    return trainer_lib.load_run(run_dir, checkpoint, self.data_dir) + (run_dir,)

  def _bleu_row(self, name, loaded, beam_size, label, decode_fn):
    """BLEU of one run at one beam on `bleu_split`; cached in eval/<name>.json."""
    path = os.path.join(self.eval_dir, name + ".json")
    if os.path.exists(path):
      return files.read_json(path)
    os.makedirs(self.eval_dir, exist_ok=True)
    problem, model, ckpt, run_dir = loaded
    sources, references = problem.sources_and_references(self.bleu_split, self.bleu_sentences)
    logging.info("Decoding %d %s sentences: %s", len(sources), self.bleu_split, label)
    hypotheses = decode.translate(
      model, problem.vocab, sources, batch_size=self.decode_batch_size, decode_fn=decode_fn
    )
    bleu, signature = metrics.corpus_bleu(hypotheses, references)
    bottleneck = getattr(model, "bottleneck", None)
    row = {
      "model": label,
      "run_dir": os.path.abspath(run_dir),
      "checkpoint": ckpt,
      "beam_size": beam_size,
      "n_c": getattr(model, "compress_steps", None),
      # n_s: the Monte-Carlo draws of a soft EM bottleneck (the paper's column).
      "n_s": (bottleneck.num_samples if getattr(bottleneck, "mode", None) == "soft_em" else None),
      "bleu": bleu,
      "bleu_signature": signature,
      "bleu_sentences": len(sources),
      "problem": getattr(problem, "base_problem", problem.name),
    }
    files.write_text(os.path.join(self.eval_dir, name + ".hyp.txt"), "\n".join(hypotheses) + "\n")
    files.write_json(path, row)
    logging.info("%s: BLEU %.2f", label, bleu)
    return row

  def _forget_stale_rows(self, specs):
    """Drops every cached row made from another checkpoint than its run's current one (a
    run continued with more train_steps), and then the cached timings: all rows are
    timed again side by side."""
    stale = False
    for name, loaded, _, _ in specs:
      path = os.path.join(self.eval_dir, name + ".json")
      made_from = files.read_json(path).get("checkpoint") if os.path.exists(path) else loaded[2]
      if made_from != loaded[2]:
        logging.info(
          "eval/%s.json was made from %s, the run is now at %s: evaluating it again",
          name,
          made_from,
          loaded[2],
        )
        os.remove(path)
        stale = True
    for cached in ("latency.json", "throughput.json") if stale else ():
      if os.path.exists(os.path.join(self.eval_dir, cached)):
        os.remove(os.path.join(self.eval_dir, cached))

  def _latencies(self, decode_fns, problem):
    """Batch-1 latency of every row, timed side by side, overall and by the reference's
    length (speed.latencies); cached in eval/latency.json. decode_fns: {row name:
    compiled decode function}."""
    path = os.path.join(self.eval_dir, "latency.json")
    if os.path.exists(path):
      return files.read_json(path)
    sources, references = problem.sources_and_references(self.bleu_split, self.latency_sentences)
    logging.info(
      "Timing %d sentences at batch 1, the %d decoders in turn", len(sources), len(decode_fns)
    )
    result = speed.latencies(decode_fns, problem.vocab, sources, references, self.latency_bands)
    files.write_json(path, result)
    return result

  def _throughputs(self, decode_fns, problem):
    """Sentences per second of every row at batch throughput_batch_size over the BLEU
    sources (speed.throughputs); cached in eval/throughput.json; {} when disabled."""
    if not self.throughput_batch_size:
      return {}
    path = os.path.join(self.eval_dir, "throughput.json")
    if os.path.exists(path):
      return files.read_json(path)
    sources, _ = problem.sources_and_references(self.bleu_split, self.bleu_sentences)
    logging.info(
      "Timing %d sentences at batch %d, the %d decoders in turn, %d rounds",
      len(sources),
      self.throughput_batch_size,
      len(decode_fns),
      self.throughput_rounds,
    )
    result = speed.throughputs(
      decode_fns, problem.vocab, sources, self.throughput_batch_size, self.throughput_rounds
    )
    files.write_json(path, result)
    return result

  def evaluate(self):
    """Stage 4: every row of the table, then results.json and results.md."""
    logging.info("Stage 4/4: evaluation on the %s split", self.bleu_split)
    student_model = files.read_json(os.path.join(self.student_dir, trainer_lib.RUN_INFO))["model"]
    beam = self.teacher_beam_size
    teacher_run, student_run = self._load(self.teacher_dir), self._load(self.student_dir)
    specs = [
      ("teacher_greedy", teacher_run, 1, "Transformer (greedy)"),
      (f"teacher_beam{beam}", teacher_run, beam, f"Transformer (beam {beam})"),
      ("student", student_run, 1, f"{student_model} + distillation"),
    ]
    self._forget_stale_rows(specs)
    # One compiled decode function per row, for its BLEU and its latency alike.
    decode_fns = {
      name: decode.decode_function(loaded[1], beam_size) for name, loaded, beam_size, _ in specs
    }
    rows = [self._bleu_row(*spec, decode_fns[spec[0]]) for spec in specs]
    latency = self._latencies(decode_fns, teacher_run[0])
    throughput = self._throughputs(decode_fns, teacher_run[0])
    for row, (name, _, _, _) in zip(rows, specs):
      row.update(latency[name])
      row.update(throughput.get(name, {}))
    speed.add_speedups(rows, greedy=rows[0], beam=rows[1])
    student = rows[2]
    info = distill_lib.read_info(self.distill_dir)
    stages = {}
    for name, run_dir in (("teacher", self.teacher_dir), ("student", self.student_dir)):
      done = os.path.join(run_dir, STAGE_DONE)
      stages[name] = files.read_json(done) if os.path.exists(done) else None
    results = {
      "rows": rows,
      "problem": student["problem"],
      "bleu_split": self.bleu_split,
      "bleu_sentences": student["bleu_sentences"],
      "bleu_signature": student["bleu_signature"],
      "latency_sentences": student["latency_sentences"],
      "throughput_batch_size": self.throughput_batch_size or None,
      "throughput_rounds": self.throughput_rounds,
      "teacher_beam_size": beam,
      "machine": trainer_lib.machine(),
      "distill": info,
      "stages": stages,
    }
    write_results(self.output_dir, results, results_markdown)
    return results

  def run(self):
    """Runs (or resumes) every stage; returns the results dict (results.json)."""
    path = os.path.join(self.output_dir, RESULTS_JSON)
    if os.path.exists(path):
      logging.info("%s exists: the pipeline is done (delete it to evaluate again)", path)
      results = files.read_json(path)
    else:
      os.makedirs(self.output_dir, exist_ok=True)
      started = time.perf_counter()
      self.train_teacher()
      info = self.distill()
      if not info.get("complete"):
        raise distill_lib.DistillIncompleteError(
          f"distillation in {self.distill_dir!r} did not finish; rerun to continue"
        )
      self.train_student()
      results = self.evaluate()
      logging.info("Pipeline finished in %.1f s", time.perf_counter() - started)
    print(results_markdown(results))
    return results
