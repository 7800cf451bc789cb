"""Benchmark (issue 5): the quickstart pipeline's table with and without
distillation, hard EM vs soft EM, BLEU and batch-1 speedup, in one process.

Reuses a finished quickstart pipeline run (--pipeline_dir, e.g. the README's
`t2t_vqem-trainer --gin_file=em_distill_quickstart.gin --output_dir=/tmp/eq3`)
read-only: its teacher, its distilled data and its student (soft EM on
distilled targets). Trains the three other students into --output_dir, with
the student settings of em_distill_quickstart.gin (Pipeline.student_gin, then
Pipeline.shared_gin; hard EM = the same bindings on latent_transformer_vq and
its quickstart config):

  vq_distilled   latent_transformer_vq on translate_distilled (the run's distill/)
  em_gold        latent_transformer_em on the gold translate_grammar_ende targets
  vq_gold        latent_transformer_vq on the gold targets

Then loads the teacher (greedy and beam 4) and the four students, computes
BLEU on the same test sentences, and times batch-1 decoding sentence by
sentence in interleaved order (the order rotates from sentence to sentence),
so that the speedups are ratios measured side by side.

  python benchmarks/distill_ablation.py --pipeline_dir=/tmp/eq3 --output_dir=/tmp/bench_distill

With --pipeline_dir unset (or without a finished pipeline in it) it first runs
the quickstart pipeline itself into OUTPUT_DIR/pipeline.
"""

import json
import os
import platform

from absl import app
from absl import flags
from absl import logging
import gin
import numpy as np

from t2t_vqem import config as config_lib
from t2t_vqem import decode
from t2t_vqem import metrics
from t2t_vqem import pipeline as pipeline_lib
from t2t_vqem.cli import common  # noqa: F401  (the shared flags: --data_dir, --gin_param, ...)

flags.DEFINE_string("pipeline_dir", None, "A finished em_distill_quickstart.gin run.")
flags.DEFINE_string("output_dir", "/tmp/bench_distill", "Where the extra students go.")
flags.DEFINE_string("pipeline_gin", "em_distill_quickstart.gin", "The pipeline's config.")
flags.DEFINE_integer("bleu_sentences", 1000, "Test sentences scored for BLEU.")
flags.DEFINE_integer("latency_sentences", 100, "Test sentences timed at batch size 1.")
FLAGS = flags.FLAGS


def pipeline_config():
  """(student_gin, shared_gin, Pipeline kwargs) of the pipeline's Gin file."""
  gin.clear_config()
  config_lib.parse_gin([FLAGS.pipeline_gin], [], finalize=False)
  student = list(gin.query_parameter("Pipeline.student_gin"))
  shared = list(gin.query_parameter("Pipeline.shared_gin"))
  teacher_beam = gin.query_parameter("Pipeline.teacher_beam_size")
  gin.clear_config()
  return student, shared, teacher_beam


def as_hard_em(items):
  """The soft-EM student's config items for latent_transformer_vq (hard EM)."""
  return [item.replace("latent_transformer_em", "latent_transformer_vq") for item in items]


def main(_):
  config_lib.register_everything()
  student_gin, shared_gin, teacher_beam = pipeline_config()
  pipeline_dir = FLAGS.pipeline_dir
  if not pipeline_dir or not os.path.exists(os.path.join(pipeline_dir, pipeline_lib.RESULTS_JSON)):
    pipeline_dir = pipeline_dir or os.path.join(FLAGS.output_dir, "pipeline")
    logging.info("No finished pipeline in %s: running it", pipeline_dir)
    with pipeline_lib.stage_config([FLAGS.pipeline_gin]):
      pipeline_lib.Pipeline(pipeline_dir, data_dir=FLAGS.data_dir).run()
  teacher_dir = os.path.join(pipeline_dir, "teacher")
  distill_dir = os.path.join(pipeline_dir, "distill")
  # A Pipeline that only reads pipeline_dir: external teacher and distill_dir.
  pipe = pipeline_lib.Pipeline(
    FLAGS.output_dir,
    data_dir=FLAGS.data_dir,
    teacher_gin=[],
    student_gin=student_gin,
    shared_gin=shared_gin,
    teacher_dir=teacher_dir,
    distill_dir=distill_dir,
  )
  distilled_items = pipe._student_items()  # pylint: disable=protected-access
  gold_items = student_gin + shared_gin
  students = {
    "em_distilled": (os.path.join(pipeline_dir, "student"), None),
    "vq_distilled": (os.path.join(FLAGS.output_dir, "vq_distilled"), as_hard_em(distilled_items)),
    "em_gold": (os.path.join(FLAGS.output_dir, "em_gold"), gold_items),
    "vq_gold": (os.path.join(FLAGS.output_dir, "vq_gold"), as_hard_em(gold_items)),
  }
  stages = {}
  for name, (run_dir, items) in students.items():
    if items is not None:
      logging.info("Student %s in %s: %s", name, run_dir, items)
      stages[name] = pipe._train(run_dir, items)  # pylint: disable=protected-access
    else:
      with open(os.path.join(run_dir, pipeline_lib.STAGE_DONE)) as f:
        stages[name] = json.load(f)

  # Evaluation, every row in this process.
  problem, teacher, teacher_ckpt, _ = pipe._load(teacher_dir)  # pylint: disable=protected-access
  sources, references = problem.sources_and_references("test", FLAGS.bleu_sentences)
  rows = [
    ("Transformer (greedy)", teacher, 1, teacher_ckpt, None),
    (f"Transformer (beam {teacher_beam})", teacher, teacher_beam, teacher_ckpt, None),
  ]
  labels = {
    "em_distilled": "soft EM + distillation",
    "vq_distilled": "hard EM + distillation",
    "em_gold": "soft EM, no distillation",
    "vq_gold": "hard EM, no distillation",
  }
  for name, (run_dir, _) in students.items():
    student_problem, model, ckpt, _ = pipe._load(run_dir)  # pylint: disable=protected-access
    if student_problem.vocab.path != problem.vocab.path:
      raise ValueError(
        f"{run_dir} uses vocabulary {student_problem.vocab.path}, the teacher {problem.vocab.path}"
      )
    rows.append((labels[name], model, 1, ckpt, name))
  results = {}
  decode_fns = {label: decode.decode_function(model, beam) for label, model, beam, _, _ in rows}
  for label, model, beam, ckpt, name in rows:
    hyps = decode.translate(
      model, problem.vocab, sources, batch_size=64, decode_fn=decode_fns[label]
    )
    bleu, signature = metrics.corpus_bleu(hyps, references)
    bottleneck = getattr(model, "bottleneck", None)
    dev = stages[name]["dev"] if name else {}
    results[label] = {
      "bleu": bleu,
      "checkpoint": ckpt,
      "beam_size": beam,
      "n_c": getattr(model, "compress_steps", None),
      "n_s": (bottleneck.num_samples if getattr(bottleneck, "mode", None) == "soft_em" else None),
      "dev_usage": dev.get("usage"),
      "dev_perplexity": dev.get("perplexity"),
      "steps": stages[name]["step"] if name else None,
    }
    logging.info("%s: BLEU %.2f", label, bleu)
  latency_sources = sources[: FLAGS.latency_sentences]
  times = decode.batch1_times(decode_fns, problem.vocab, latency_sources)
  for label, row_times in times.items():
    results[label]["times"] = row_times

  greedy = np.median(results["Transformer (greedy)"]["times"])
  beam_ms = np.median(results[f"Transformer (beam {teacher_beam})"]["times"])
  print(
    f"\nBLEU on {len(sources)} test sentences ({signature}); latency: median (mean) "
    f"batch-1 decode time over {len(latency_sources)} test sentences, interleaved; "
    f"{platform.machine()}, {os.cpu_count()} CPU threads visible\n"
  )
  print(
    f"| Model | n_c | n_s | BLEU | Latency median (mean), ms | Speedup vs greedy | "
    f"Speedup vs beam {teacher_beam} | dev usage | dev perplexity |"
  )
  print("|---|---|---|---|---|---|---|---|---|")
  summary = {
    "pipeline_dir": os.path.abspath(pipeline_dir),
    "bleu_sentences": len(sources),
    "latency_sentences": len(latency_sources),
    "bleu_signature": signature,
    "stages": stages,
    "rows": {},
  }
  for label, row in results.items():
    times = row.pop("times")
    row.update(
      latency_median_ms=float(np.median(times)),
      latency_mean_ms=float(np.mean(times)),
      speedup_vs_greedy=greedy / np.median(times),
      speedup_vs_beam=beam_ms / np.median(times),
    )
    summary["rows"][label] = row
    cell = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    print(
      f"| {label} | {cell(row['n_c'], 'd')} | {cell(row['n_s'], 'd')} | {row['bleu']:.2f} "
      f"| {row['latency_median_ms']:.1f} ({row['latency_mean_ms']:.1f}) "
      f"| {row['speedup_vs_greedy']:.2f}x | {row['speedup_vs_beam']:.2f}x "
      f"| {cell(row['dev_usage'], '.4f')} | {cell(row['dev_perplexity'], '.1f')} |"
    )
  with open(os.path.join(FLAGS.output_dir, "results.json"), "w") as f:
    json.dump(summary, f, indent=2, default=float)


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
