"""Benchmark: faults injected into the real commands, and what each one got.

Every row runs t2t_vqem-trainer / -decoder / -exporter in a subprocess on a tiny
Transformer and the embedded grammar problem (or a TSV corpus written here),
with one fault: a bad input, a bad config, a damaged checkpoint, a NaN-making
learning rate, a SIGKILL. It prints a Markdown table: the fault, the exit
status, and the first line the command printed on stderr that says what
happened (its error, or the warning that it recovered). The tests assert each
behaviour (tests/test_*faults*.py, tests/test_*kill*.py); this script shows
them side by side as a user meets them.

  python benchmarks/faults.py --work_dir=/tmp/faults
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

from absl import app
from absl import flags

flags.DEFINE_string("work_dir", "/tmp/t2t_vqem_faults", "Scratch folder (emptied first).")
FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = """
Trainer.model = 'transformer'
Trainer.problem = 'translate_grammar_ende'
Trainer.batch_tokens = 256
Trainer.train_steps = 40
Trainer.checkpoint_every = 10
Trainer.eval_every = 0
Trainer.eval_bleu_examples = 0
Trainer.log_every = 10
translate_grammar_ende.num_train = 300
translate_grammar_ende.num_eval = 20
translate_grammar_ende.vocab_size = 300
translate_tsv.vocab_size = 60
transformer.hidden_size = 16
transformer.num_layers = 1
transformer.num_heads = 2
transformer.filter_size = 32
make_optimizer.warmup_steps = 5
"""
PAIRS = [(f"the {w} sees a {v}", f"der {w} sieht ein {v}") for w in "cat dog man" for v in "ox ant"]
SAID = re.compile(r"^error: |cannot be read|not finite|Resumed from|final dev results")
ABSL_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] ")


def tool(name, work, *args):
  return [sys.executable, "-m", f"t2t_vqem.cli.{name}", f"--data_dir={work}/data", *args]


def trainer(work, output_dir, *params, gin_file=None):
  return tool(
    "trainer",
    work,
    f"--gin_file={gin_file or os.path.join(work, 'tiny.gin')}",
    f"--output_dir={os.path.join(work, output_dir)}",
    *[f"--gin_param={p}" for p in params],
  )


def tsv(work, name, lines, encoding="utf-8", prefix=b""):
  path = os.path.join(work, name)
  with open(path, "wb") as f:
    f.write(prefix + "".join(lines).encode(encoding, errors="surrogateescape"))
  return path


def tsv_params(work, train):
  dev = tsv(work, "dev.tsv", [f"{s}\t{t}\n" for s, t in PAIRS[:2]])
  return [
    "Trainer.problem = 'translate_tsv'",
    f"translate_tsv.train_path = '{train}'",
    f"translate_tsv.dev_path = '{dev}'",
    f"translate_tsv.test_path = '{dev}'",
  ]


def run(argv, kill_when=None):
  """(exit status, what it said) of one command; kill_when: SIGKILL it once that holds."""
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  if kill_when:
    while process.poll() is None and not kill_when():
      time.sleep(0.002)
    if process.poll() is None:
      process.send_signal(signal.SIGKILL)
  _, err = process.communicate(timeout=900)
  lines = [ABSL_PREFIX.sub("", line.strip()) for line in err.decode(errors="replace").splitlines()]
  said = [line for line in lines if SAID.search(line)]
  return process.returncode, (said[0] if said else "")


def listed(path, name):
  try:
    with open(os.path.join(path, "checkpoints", "checkpoint")) as f:
      return f'"{name}"' in f.read()
  except OSError:
    return False


def rows(work):
  """(fault, argv or callable giving (status, said)) in the order of the table."""
  good = [f"{s}\t{t}\n" for s, t in PAIRS]
  yield "unknown Gin parameter", trainer(work, "a", "transformer.hiden_size = 8")
  yield "Gin file that does not exist", trainer(work, "a", gin_file="nope.gin")
  yield "model name not registered", trainer(work, "a", "Trainer.model = 'transfomer'")
  yield (
    "TSV with bytes that are not UTF-8",
    trainer(work, "t1", *tsv_params(work, tsv(work, "bad.tsv", good[:2] + ["caf\udce9\tx\n"]))),
  )
  yield (
    "TSV with a line of three fields",
    trainer(work, "t2", *tsv_params(work, tsv(work, "three.tsv", good + ["a\tb\tc\n"]))),
  )
  yield (
    "TSV with a BOM, CRLF line ends, blank lines",
    trainer(
      work,
      "t3",
      "Trainer.train_steps = 2",
      *tsv_params(
        work,
        tsv(
          work, "crlf.tsv", [p.replace("\n", "\r\n") + "\r\n" for p in good], prefix=b"\xef\xbb\xbf"
        ),
      ),
    ),
  )
  yield (
    "TSV whose every pair is longer than max_length",
    trainer(
      work, "t4", "translate_tsv.max_length = 2", *tsv_params(work, tsv(work, "long.tsv", good))
    ),
  )
  yield "batch_tokens smaller than one example", trainer(work, "b", "Trainer.batch_tokens = 1")
  yield (
    "learning rate 1e4 (diverges, stays finite)",
    trainer(work, "lr4", "make_optimizer.learning_rate = 1e4", "make_optimizer.warmup_steps = 1"),
  )
  yield (
    "learning rate 1e30 (the loss goes NaN)",
    trainer(work, "lr30", "make_optimizer.learning_rate = 1e30", "make_optimizer.warmup_steps = 1"),
  )
  yield "a clean run (for the rows below)", trainer(work, "run")
  yield "checkpoint of other sizes", trainer(work, "run", "transformer.hidden_size = 24")
  yield (
    "output_dir of another model",
    trainer(work, "run", "Trainer.model = 'latent_transformer_em'"),
  )

  def truncated():
    data = os.path.join(work, "run", "checkpoints", "ckpt-40.data-00000-of-00001")
    with open(data, "r+b") as f:
      f.truncate(os.path.getsize(data) // 2)
    return run(trainer(work, "run", "Trainer.train_steps = 50"))

  yield "newest checkpoint truncated", truncated
  yield (
    "killed (SIGKILL) just after a checkpoint, rerun",
    lambda: (
      run(trainer(work, "k"), kill_when=lambda: listed(os.path.join(work, "k"), "ckpt-20")),
      run(trainer(work, "k")),
    )[1],
  )
  yield (
    "decoder pointed at a folder with no run",
    tool("decoder", work, f"--output_dir={os.path.join(work, 'empty')}"),
  )
  yield (
    "exporter pointed at a folder with no run",
    tool("exporter", work, f"--output_dir={os.path.join(work, 'empty')}"),
  )


def main(_):
  work = os.path.abspath(FLAGS.work_dir)
  shutil.rmtree(work, ignore_errors=True)
  os.makedirs(os.path.join(work, "empty"))
  with open(os.path.join(work, "tiny.gin"), "w") as f:
    f.write(TINY)
  print("| fault | exit | what it said |\n|---|---|---|")
  for fault, argv in rows(work):
    status, said = argv() if callable(argv) else run(argv)
    said = said.replace(work, "WORK").replace(ROOT + os.sep, "").replace("|", "\\|")
    print(f"| {fault} | {status} | {said[:220]} |", flush=True)


if __name__ == "__main__":
  app.run(main)
