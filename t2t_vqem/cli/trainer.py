"""t2t_vqem-trainer: trains a registered model on a registered problem from Gin files.

  t2t_vqem-trainer --gin_file=transformer_quickstart.gin --output_dir=runs/tq
  t2t_vqem-trainer --registry_help

A Gin config that binds Pipeline.student_gin (em_distill.gin) runs the whole
teacher -> distillation -> student -> results pipeline (t2t_vqem/pipeline.py);
one that binds Study.rows (paper_table1.gin, paper_fig3.gin) runs a study: many runs (an
optional teacher and distillation), one table or figure of the paper (t2t_vqem/study.py).
An image run ends with the test split's bits/dim in OUTPUT_DIR/test_results.json.
"""

import sys

from absl import flags
from absl import logging

from t2t_vqem import config
from t2t_vqem import pipeline as pipeline_lib
from t2t_vqem import registry
from t2t_vqem import study as study_lib
from t2t_vqem.cli import common
from t2t_vqem.train import trainer as trainer_lib

flags.DEFINE_string(
  "output_dir",
  None,
  "Where checkpoints, summaries and the operative "
  "config go; rerunning with the same directory resumes.",
)
flags.DEFINE_bool("registry_help", False, "List every registered problem and model, then exit.")
FLAGS = flags.FLAGS


@common.one_line_errors
def main(argv):
  if len(argv) > 1:
    raise config.UsageError(f"unexpected arguments {argv[1:]}; flags are --name=value")
  config.register_everything(FLAGS["import"].value)
  if FLAGS.registry_help:
    print(registry.help_string())
    return
  if not FLAGS.output_dir:
    raise config.UsageError("--output_dir is required")
  if not FLAGS.gin_file:
    raise config.UsageError("give at least one --gin_file (e.g. transformer_quickstart.gin)")
  config.parse_gin(FLAGS.gin_file, FLAGS.gin_param)
  if study_lib.is_configured():  # one teacher, many students -> one table of the paper
    study_lib.Study(FLAGS.output_dir, data_dir=FLAGS.data_dir).run()
    return
  if pipeline_lib.is_configured():  # teacher -> distillation -> student -> results table
    pipeline_lib.Pipeline(FLAGS.output_dir, data_dir=FLAGS.data_dir).run()
    return
  trainer = trainer_lib.Trainer(FLAGS.output_dir, data_dir=FLAGS.data_dir)
  trainer.train()
  results = trainer.evaluate()
  logging.info("final dev results: %s", results)
  written = trainer.write_test_results()  # images: the paper's test bits/dim
  if written:
    print(written)


def run():
  logging.set_verbosity(logging.INFO)
  common.run(main, sys.modules[__name__])


if __name__ == "__main__":
  run()
