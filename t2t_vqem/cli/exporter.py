"""t2t_vqem-exporter: writes a serving SavedModel of a trained run (signatures: t2t_vqem/export.py).

  t2t_vqem-exporter --output_dir=runs/tq                      # -> runs/tq/export
  t2t_vqem-exporter --output_dir=runs/tq --export_dir=models/tq/1 --beam_size=4

Load it with tensorflow and tensorflow_text only (see README, "Serving").
"""

import os
import sys

from absl import flags
import gin

from t2t_vqem import config
from t2t_vqem import export as export_lib
from t2t_vqem.cli import common
from t2t_vqem.train import trainer as trainer_lib

flags.DEFINE_string("output_dir", None, "A training run's output_dir.")
flags.DEFINE_string("checkpoint", None, "A checkpoint path (default: the run's latest).")
flags.DEFINE_integer("beam_size", None, "Beam size fixed in the export (default: the model's).")
flags.DEFINE_float("alpha", None, "Length penalty fixed in the export (default: the model's).")
flags.DEFINE_string(
  "export_dir",
  None,
  "Where the SavedModel goes (default: OUTPUT_DIR/export; replaced if it exists).",
)
flags.DEFINE_integer(
  "max_input_length",
  None,
  "Sources are cut to this many subwords, EOS "
  "included (default: export_model.max_input_length, else the "
  "problem's max_length).",
)
FLAGS = flags.FLAGS


@common.one_line_errors
def main(argv):
  if len(argv) > 1:
    raise config.UsageError(f"unexpected arguments {argv[1:]}; flags are --name=value")
  if not FLAGS.output_dir:
    raise config.UsageError("--output_dir (a training run) is required")
  if FLAGS.max_input_length is not None and FLAGS.max_input_length < 2:
    raise config.UsageError(
      f"--max_input_length={FLAGS.max_input_length} must be >= 2 (one subword and EOS)"
    )
  if FLAGS.beam_size is not None and FLAGS.beam_size < 1:
    raise config.UsageError(f"--beam_size={FLAGS.beam_size} must be >= 1")
  config.register_everything(FLAGS["import"].value)
  problem, model, checkpoint = trainer_lib.load_run(
    FLAGS.output_dir, FLAGS.checkpoint, FLAGS.data_dir, FLAGS.gin_file, FLAGS.gin_param
  )
  settings = {
    name: getattr(FLAGS, name)
    for name in ("max_input_length", "beam_size", "alpha")
    if getattr(FLAGS, name) is not None
  }
  export_dir = FLAGS.export_dir or os.path.join(FLAGS.output_dir, "export")
  # export_model's own Gin settings come from the run's config and the extra ones.
  with config.run_config(FLAGS.output_dir, FLAGS.gin_file, FLAGS.gin_param):
    try:
      server = export_lib.export_model(
        model,
        problem,
        export_dir,
        # The checkpoint's name only: an export embeds no path of this machine.
        extra_info={"checkpoint": os.path.basename(checkpoint)},
        **settings,
      )
    except NotImplementedError as e:
      raise config.UsageError(str(e)) from None
    model_name = gin.query_parameter("Trainer.model")
  print(f"exported {model_name} ({', '.join(sorted(server.signatures()))}) to {export_dir}")


def run():
  common.run(main, sys.modules[__name__])


if __name__ == "__main__":
  run()
