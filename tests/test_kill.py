"""The pipeline command killed with SIGKILL, then rerun, ends as a run never killed.

Each run is the real command (python -m t2t_vqem.cli.trainer) on a tiny pipeline
config in a subprocess, with a teacher trained once beforehand (Pipeline.teacher_dir):
distillation of 150 sources into 3 shards of 64, a 2-step student, then BLEU,
latency and throughput of the three rows. The test reads the run's stderr (its log
lines and distillation progress) and kills it with SIGKILL the moment a chosen point
is reached: inside a shard (the one before it whole), inside the evaluation's decoding
and inside its timing. The same command, rerun, must finish with the same shards, decoded
outputs and quality columns (BLEU, the student's dev results) as the run never
killed; timing columns differ from run to run and are not compared. (The trainer
killed while it trains or checkpoints: tests/test_trainer_kill.py.)
"""

import codecs
import glob
import json
import os
import select
import signal
import subprocess
import time

import pytest
import subprocesses

from t2t_vqem import files
from t2t_vqem import pipeline as pipeline_lib
from t2t_vqem.train import trainer as trainer_lib

PROBLEM = [
  "translate_grammar_ende.num_train = 150",
  "translate_grammar_ende.num_eval = 12",
  "translate_grammar_ende.vocab_size = 300",
]
TEACHER = PROBLEM + [
  "Trainer.model = 'transformer'",
  "Trainer.problem = 'translate_grammar_ende'",
  "Trainer.train_steps = 2",
  "Trainer.batch_tokens = 256",
  "Trainer.eval_every = 0",
  "Trainer.eval_bleu_examples = 0",
  "transformer.hidden_size = 16",
  "transformer.num_layers = 1",
  "transformer.num_heads = 2",
  "transformer.filter_size = 32",
  "transformer.dropout = 0.0",
  "transformer.max_decode_extra = 4",
  "make_optimizer.warmup_steps = 2",
]
STUDENT = [
  "Trainer.model = 'latent_transformer_em'",
  "Trainer.problem = 'translate_grammar_ende'",
  "Trainer.train_steps = 2",
  "Trainer.batch_tokens = 256",
  "Trainer.eval_every = 0",
  "Trainer.eval_bleu_examples = 0",
  "latent_transformer_em.hidden_size = 16",
  "latent_transformer_em.num_layers = 1",
  "latent_transformer_em.num_heads = 2",
  "latent_transformer_em.filter_size = 32",
  "latent_transformer_em.dropout = 0.1",
  "soft_em.codebook_size = 16",
  "soft_em.init_from_first_batch = True",
  "latent_transformer_em.compress_steps = 2",
  "soft_em.num_samples = 3",
  "latent_transformer_em.mask_startup_steps = 0",
  "latent_transformer_em.latent_loss_start_step = 0",
  "make_optimizer.warmup_steps = 2",
]
PIPELINE = """
Pipeline.teacher_dir = {teacher!r}
Pipeline.teacher_gin = []
Pipeline.shared_gin = {problem!r}
Pipeline.student_gin = {student!r}
Pipeline.distill_beam_size = 2
Pipeline.distill_batch_size = 16
Pipeline.distill_shard_size = 64
Pipeline.teacher_beam_size = 2
Pipeline.bleu_sentences = 6
Pipeline.latency_sentences = 2
Pipeline.throughput_batch_size = 4
Pipeline.throughput_rounds = 1
"""
SHARDS = [f"shard-0000{i}-of-00003.tsv" for i in range(3)]
ROWS = ("teacher_greedy", "teacher_beam2", "student")
# A row's fields that do not depend on the clock.
QUALITY = ("model", "run_dir", "checkpoint", "beam_size", "n_c", "n_s", "bleu")
QUALITY += ("bleu_signature", "bleu_sentences", "problem", "latency_sentences")


def command(tmp, output_dir):
  return subprocesses.trainer_command(
    os.path.join(tmp, "pipeline.gin"), output_dir, os.path.join(tmp, "data")
  )


def run(tmp, output_dir):
  """Runs the command to its end; its stderr."""
  return subprocesses.run(command(tmp, output_dir))


def run_killed_when(tmp, output_dir, reached):
  """Starts the command and SIGKILLs it the moment `reached(stderr so far)` is true
  (checked on every chunk of stderr and every 2 ms); (its pid, its stderr until then)."""
  process = subprocess.Popen(
    command(tmp, output_dir),
    env=subprocesses.environment(),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
  )
  decoder = codecs.getincrementaldecoder("utf-8")("replace")
  fd, text, ended = process.stderr.fileno(), "", False
  deadline = time.monotonic() + subprocesses.TIMEOUT
  try:
    while not ended and time.monotonic() < deadline:
      if select.select([fd], [], [], 0.002)[0]:
        chunk = os.read(fd, 1 << 16)
        ended = not chunk
        text += decoder.decode(chunk)
      if reached(text):
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        return process.pid, text
  finally:
    if process.poll() is None:
      process.kill()
    process.wait()
    process.stderr.close()
  pytest.fail(f"the command ended before the point to kill it at:\n{text[-3000:]}")


def shards(output_dir):
  """{name: content} of the distilled shards there."""
  folder = os.path.join(output_dir, "distill")
  return {name: read(folder, name) for name in SHARDS if os.path.exists(os.path.join(folder, name))}


def read(*path):
  with open(os.path.join(*path), encoding="utf-8") as f:
    return f.read()


def quality(output_dir):
  """results.json without what depends on the clock, output_dir written as OUT."""
  text = read(output_dir, pipeline_lib.RESULTS_JSON).replace(os.path.abspath(output_dir), "OUT")
  results = json.loads(text)
  rows = [{key: row[key] for key in QUALITY} for row in results["rows"]]
  student = dict(results["stages"]["student"])
  del student["seconds"]
  kept = ("problem", "bleu_split", "bleu_sentences", "bleu_signature", "distill")
  return dict({key: results[key] for key in kept}, rows=rows, student=student)


def outputs(output_dir):
  """{row: its decoded outputs} of the rows evaluated there."""
  folder = os.path.join(output_dir, "eval")
  return {
    name: read(folder, name + ".hyp.txt")
    for name in ROWS
    if os.path.exists(os.path.join(folder, name + ".hyp.txt"))
  }


def bleu_cells(output_dir):
  """The BLEU column of results.md."""
  lines = read(output_dir, pipeline_lib.RESULTS_MD).splitlines()
  return [line.split(" | ")[3] for line in lines[2:] if line.startswith("| ")]


def temporaries(output_dir):
  """The temporary files of t2t_vqem.files left in the pipeline's own folders."""
  return [
    path
    for folder in ("", "distill", "eval")
    for path in glob.glob(os.path.join(output_dir, folder, "*.tmp-*"))
  ]


def assert_same_as_unkilled(unkilled, output_dir):
  assert shards(output_dir) == shards(unkilled)
  assert quality(output_dir) == quality(unkilled)
  assert outputs(output_dir) == outputs(unkilled)
  assert bleu_cells(output_dir) == bleu_cells(unkilled)
  assert temporaries(output_dir) == []


@pytest.fixture(scope="module")
def unkilled(tmp_path_factory):
  """(tmp, output_dir of a pipeline run never killed), its teacher and config in tmp."""
  tmp = str(tmp_path_factory.mktemp("kill"))
  teacher = os.path.join(tmp, "teacher")
  with pipeline_lib.stage_config(TEACHER):
    trainer_lib.Trainer(teacher, data_dir=os.path.join(tmp, "data")).train()
  config = PIPELINE.format(teacher=teacher, problem=PROBLEM, student=STUDENT)
  files.write_text(os.path.join(tmp, "pipeline.gin"), config)
  output_dir = os.path.join(tmp, "unkilled")
  run(tmp, output_dir)
  made = quality(output_dir)
  # The comparisons below could fail: the student's outputs are not the teacher's, its
  # dev results are there, and the shards hold the teacher's outputs for every source.
  decoded = outputs(output_dir)
  assert decoded["student"] != decoded["teacher_greedy"] and made["student"]["dev"]
  assert sum(text.count("\n") for text in shards(output_dir).values()) == 150
  return tmp, output_dir


def test_killed_three_times_then_rerun_ends_as_a_run_never_killed(unkilled):
  """One output_dir killed once while distilling, then twice while evaluating."""
  tmp, straight = unkilled
  output_dir = os.path.join(tmp, "killed")
  first = os.path.join(output_dir, "distill", SHARDS[0])
  info = os.path.join(output_dir, "distill", "info.json")
  # Inside a shard: the first one renamed into place, killed one batch into the second.
  # (What a kill between the two shards leaves on disk is the same: the first shard, the
  # second one not begun, the distillation not complete.)
  pid, log = run_killed_when(tmp, output_dir, lambda text: "distilled 80/150 sentences" in text)
  assert "Distilling 150 of 150 training sources (3 shards)" in log
  assert shards(output_dir) == {SHARDS[0]: shards(straight)[SHARDS[0]]}
  assert not files.read_json(info)["complete"]
  kept = os.stat(first).st_mtime_ns
  # What a kill inside the second shard's write would leave: part of it, under a temporary
  # name (too short a moment to hit from here).
  files.write_text(f"{os.path.join(output_dir, 'distill', SHARDS[1])}.tmp-{pid}", "partial\tx\n")

  # Inside the second row's decoding, the first row done: the rerun kept the first shard
  # and distilled the rest.
  results = os.path.join(output_dir, pipeline_lib.RESULTS_JSON)
  _, log = run_killed_when(
    tmp, output_dir, lambda text: "Decoding 6 test sentences: Transformer (beam 2)" in text
  )
  assert "Distilling 86 of 150 training sources (2 shards)" in log
  assert os.stat(first).st_mtime_ns == kept
  assert shards(output_dir) == shards(straight)
  assert not os.path.exists(results)
  assert outputs(output_dir) == {ROWS[0]: outputs(straight)[ROWS[0]]}
  # Inside the latencies: the rerun decodes the two rows left (not the first), and is
  # killed while timing them all.
  _, log = run_killed_when(tmp, output_dir, lambda text: "Timing 2 sentences at batch 1" in text)
  assert "Transformer (greedy)" not in log.split("Stage 4/4")[1]
  assert not os.path.exists(results)
  assert outputs(output_dir) == outputs(straight)
  for name in ROWS:  # each row's JSON whole
    files.read_json(os.path.join(output_dir, "eval", name + ".json"))

  log = run(tmp, output_dir)
  assert "Decoding" not in log.split("Stage 4/4")[1]  # every row kept
  assert_same_as_unkilled(straight, output_dir)


def test_results_json_is_written_last(tmp_path, monkeypatch):
  """results.json marks a finished pipeline or study: a kill just before it leaves
  results.md alone, and the rerun writes both (a kill after it: both are there)."""
  write_json = files.write_json

  def killed(path, value):
    if path.endswith(pipeline_lib.RESULTS_JSON):
      raise SystemExit("killed")
    write_json(path, value)

  monkeypatch.setattr(files, "write_json", killed)
  with pytest.raises(SystemExit):
    pipeline_lib.write_results(str(tmp_path), {"rows": []}, lambda results: "| table |\n")
  assert os.listdir(tmp_path) == [pipeline_lib.RESULTS_MD]
