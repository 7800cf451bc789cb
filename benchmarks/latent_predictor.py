"""Benchmark: the Latent Transformer's variants on the quickstart pipeline, side by side.

Trains the student of em_distill_quickstart.gin once per variant and seed, each
on the same teacher and distilled data (those of a finished quickstart run,
--pipeline_dir, used read-only), and reports per run: the student's dev latent
accuracy and teacher-forced reconstruction accuracy, its test BLEU and batch-1
speedup over the teacher's greedy decoding (timed side by side in that run),
and the student's training time.

Variants (Gin bindings on top of the quickstart's student config):

  reference   the reference code's: latent predictor reads the bottleneck output
              with gradients into both encoders, causal decoder (the defaults)
  embedding   ours: the latent predictor embeds the argmax codes itself, its loss
              trains neither encoder
  bidirectional  the reference predictor, decoder_causal=False (ours)
  before      the model as it was before the fidelity fixes, approximately:
              embedding predictor, bidirectional decoder, z_e layer-normalised,
              one convolution per residual block, label smoothing 0.1

  python benchmarks/latent_predictor.py --pipeline_dir=runs/quickstart \
      --output_dir=/tmp/bench_lp --variants=reference,embedding --seeds=1,2

Each run is a subprocess of t2t_vqem-trainer; a finished run (its results.json)
is not run again, so the command resumes.
"""

import json
import os
import subprocess
import sys

from absl import app
from absl import flags
import gin

from t2t_vqem import config
from t2t_vqem import pipeline  # noqa: F401  (registers Pipeline with Gin)

flags.DEFINE_string("pipeline_dir", None, "A finished em_distill_quickstart.gin run.")
flags.DEFINE_string("output_dir", "/tmp/bench_latent_predictor", "Where the students go.")
flags.DEFINE_list("variants", ["reference", "embedding", "bidirectional", "before"], "Variants.")
flags.DEFINE_list("seeds", ["1"], "Trainer seeds.")
flags.DEFINE_string("data_dir", None, "Problem data (the pipeline's).")
FLAGS = flags.FLAGS

MODEL = "latent_transformer_em"
VARIANTS = {
  "reference": [],
  "embedding": [f"{MODEL}.latent_predictor_inputs = 'embedding'"],
  "bidirectional": [f"{MODEL}.decoder_causal = False"],
  "before": [
    f"{MODEL}.latent_predictor_inputs = 'embedding'",
    f"{MODEL}.decoder_causal = False",
    f"{MODEL}.compress_output_norm = True",
    f"{MODEL}.residual_layers = 1",
    f"{MODEL}.residual_convs = 1",
    f"{MODEL}.compress_kernel_size = 3",
    f"{MODEL}.label_smoothing = 0.1",
  ],
}


def run_one(variant, seed):
  out = os.path.join(FLAGS.output_dir, f"{variant}-seed{seed}")
  results = os.path.join(out, "results.json")
  if not os.path.exists(results):
    student = [f"Trainer.seed = {seed}"] + VARIANTS[variant]
    params = [
      f"Pipeline.teacher_dir = {os.path.join(FLAGS.pipeline_dir, 'teacher')!r}",
      f"Pipeline.distill_dir = {os.path.join(FLAGS.pipeline_dir, 'distill')!r}",
      # Appended to the student's own config (the quickstart's list plus these).
      f"Pipeline.student_gin = {_quickstart_student() + student!r}",
    ]
    command = [
      sys.executable,
      "-m",
      "t2t_vqem.cli.trainer",
      "--gin_file=em_distill_quickstart.gin",
      f"--output_dir={out}",
    ] + [f"--gin_param={p}" for p in params]
    if FLAGS.data_dir:
      command.append(f"--data_dir={FLAGS.data_dir}")
    print("running", variant, "seed", seed, flush=True)
    subprocess.run(command, check=True)
  with open(results) as f:
    table = json.load(f)
  student_row = table["rows"][2]
  dev = table["stages"]["student"]["dev"]
  return {
    "variant": variant,
    "seed": seed,
    "bleu": student_row["bleu"],
    "teacher_greedy_bleu": table["rows"][0]["bleu"],
    "speedup_vs_greedy": student_row["speedup_vs_greedy"],
    "latent_accuracy": dev["latent_accuracy"],
    "accuracy": dev["accuracy"],
    "usage": dev["usage"],
    "train_seconds": table["stages"]["student"]["seconds"],
  }


def _quickstart_student():
  gin.clear_config()
  config.parse_gin(["em_distill_quickstart.gin"], [], finalize=False)
  items = list(gin.query_parameter("Pipeline.student_gin"))
  gin.clear_config()
  return items


def main(argv):
  del argv
  if not FLAGS.pipeline_dir:
    raise app.UsageError("--pipeline_dir (a finished em_distill_quickstart.gin run) is required")
  rows = [run_one(v, s) for v in FLAGS.variants for s in FLAGS.seeds]
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  with open(os.path.join(FLAGS.output_dir, "summary.json"), "w") as f:
    json.dump(rows, f, indent=2)
  print(
    "| variant | seed | dev latent acc. | dev token acc. | codes used | BLEU | % of greedy "
    "| speedup vs greedy | train s |"
  )
  print("|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(
      f"| {r['variant']} | {r['seed']} | {r['latent_accuracy']:.3f} | {r['accuracy']:.3f} "
      f"| {r['usage']:.2f} | {r['bleu']:.2f} | {100 * r['bleu'] / r['teacher_greedy_bleu']:.0f}% "
      f"| {r['speedup_vs_greedy']:.2f}x | {r['train_seconds']:.0f} |"
    )


if __name__ == "__main__":
  app.run(main)
