"""t2t_vqem-decoder end to end: a tiny trained run, a split and a file, BLEU printed."""

import re
import subprocess
import sys

import gin
import sacrebleu
import tensorflow as tf
from test_trainer import TINY

from t2t_vqem import decode
from t2t_vqem import registry
from t2t_vqem.train import trainer as trainer_lib


def test_decoder_writes_hypotheses_and_prints_sacrebleu(tmp_path):
  data_dir = str(tmp_path / "data")
  gin.clear_config()
  gin.parse_config(TINY + "Trainer.train_steps = 2\n")
  trainer_lib.Trainer(str(tmp_path / "run"), data_dir=data_dir).train()
  gin.clear_config()

  out = tmp_path / "hyp.txt"
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "t2t_vqem.cli.decoder",
      f"--output_dir={tmp_path / 'run'}",
      f"--data_dir={data_dir}",
      "--split=dev",
      "--max_sentences=6",
      "--beam_size=2",
      f"--decode_to_file={out}",
    ],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr
  hypotheses = out.read_text(encoding="utf-8").splitlines()
  assert len(hypotheses) == 6
  problem = registry.build_problem(
    "translate_grammar_ende", data_dir=data_dir, num_train=300, num_eval=20, vocab_size=300
  )
  _, references = problem.sources_and_references("dev", 6)
  expected = sacrebleu.metrics.BLEU().corpus_score(hypotheses, [references]).score
  printed = re.search(r"BLEU = ([0-9.]+)  \((nrefs:1\|.*)\)", result.stdout)
  assert printed, result.stdout
  assert abs(float(printed.group(1)) - expected) < 0.01

  sources = tmp_path / "src.txt"
  sources.write_text("The dog sleeps.\nA man reads a book.\n", encoding="utf-8")

  def from_file(*more_flags):
    run = [f"--output_dir={tmp_path / 'run'}", f"--data_dir={data_dir}"]
    run += [f"--decode_from_file={sources}", f"--decode_to_file={out}", *more_flags]
    result = subprocess.run(
      [sys.executable, "-m", "t2t_vqem.cli.decoder", *run],
      capture_output=True,
      text=True,
      timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return out.read_text(encoding="utf-8").splitlines()

  plain = from_file()
  assert len(plain) == 2
  assert from_file("--jit_compile") == plain  # XLA gives the same hypotheses


def test_decoder_refuses_a_directory_that_is_not_a_run(tmp_path):
  result = subprocess.run(
    [sys.executable, "-m", "t2t_vqem.cli.decoder", f"--output_dir={tmp_path}"],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert "a training run?" in result.stderr


class _WordsVocab:
  """A stand-in vocabulary: one id (3) per whitespace-separated word."""

  def tokenize(self, texts):
    return tf.ragged.constant(
      [[3] * len(t.split()) for t in texts.numpy().astype(str)], dtype=tf.int32
    )


def test_batch1_times_decodes_every_sentence_with_every_decoder_in_rotating_order():
  calls = []

  def recorder(name):
    def fn(batch):
      calls.append((name, batch.numpy().tolist()))
      return batch

    return fn

  sources = ["a", "a b", "a b c"]
  times = decode.batch1_times(
    {"x": recorder("x"), "y": recorder("y")}, _WordsVocab(), sources, warmup=1
  )
  assert {name: len(t) for name, t in times.items()} == {"x": 3, "y": 3}
  assert all(ms >= 0 for t in times.values() for ms in t)
  warm, timed = calls[:2], calls[2:]
  assert warm == [("x", [[3, 1]]), ("y", [[3, 1]])]
  # Sentence i: decoders in the order rotated by i; every input is one row + EOS.
  assert [name for name, _ in timed] == ["x", "y", "y", "x", "x", "y"]
  assert [batch for _, batch in timed[::2]] == [[[3, 1]], [[3, 3, 1]], [[3, 3, 3, 1]]]
