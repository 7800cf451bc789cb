"""What the entry points share: the --import, --gin_file, --gin_param and --data_dir flags,
a --help that lists a tool's flags, and one-line errors.

The library under them (t2t_vqem.config and the rest) defines no flags.
"""

import functools
import sys

from absl import app
from absl import flags
from absl import logging

from t2t_vqem import config
from t2t_vqem import registry
from t2t_vqem.train import checkpoints
from t2t_vqem.train import trainer

flags.DEFINE_multi_string(
  "gin_file",
  [],
  "Gin file(s); looked up as given, then in ./gin, then in the package's gin/ folder.",
)
flags.DEFINE_multi_string("gin_param", [], "Gin binding(s), e.g. 'Trainer.train_steps = 10'.")
flags.DEFINE_multi_string(
  "import",
  [],
  "User module(s) registering problems and models: a module name, a .py file or a folder.",
)
flags.DEFINE_string(
  "data_dir",
  None,
  "Problem data and vocabulary cache (default: $T2T_VQEM_DATA_DIR or ~/t2t_vqem_data).",
)
FLAGS = flags.FLAGS


HELP_ARGS = ("-h", "-?", "--help", "-help", "--helpshort", "-helpshort")
HELPFULL_ARGS = ("--helpfull", "-helpfull")


def one_line_errors(main):
  """Runs `main`; expected user errors are printed on one line, exit status 1."""

  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except (
      config.UsageError,
      registry.RegistryError,
      FileNotFoundError,
      ValueError,
      checkpoints.CheckpointError,
      trainer.NonFiniteError,
    ) as e:
      if logging.get_verbosity() >= logging.DEBUG:
        raise
      print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
      sys.exit(1)

  return wrapped


def _module_flags_help(module_name):
  """The help lines of the flags `module_name` defines (absl's layout, without its header)."""
  text = FLAGS.module_help(module_name)
  return text.split(":\n", 1)[1] if ":\n" in text else ""


def usage(tool):
  """--help's text: the tool's docstring, its own flags, then the flags every tool shares."""
  # absl files the flags of the module run as __main__ under sys.argv[0].
  name = sys.argv[0] if tool.__name__ == "__main__" else tool.__name__
  return "\n".join(
    [
      (tool.__doc__ or "").strip(),
      "",
      "flags:",
      _module_flags_help(name),
      "",
      "flags of every t2t_vqem tool:",
      _module_flags_help(__name__),
      "",
      "Try --helpfull to get a list of all flags.",
    ]
  )


def _parse_flags(tool, argv):
  """absl's flag parsing, but --help shows the tool's flags and exits with status 0."""
  args = argv[1 : argv.index("--")] if "--" in argv else argv[1:]
  if any(arg in HELPFULL_ARGS for arg in args):
    print((tool.__doc__ or "").strip() + "\n\nflags:\n" + FLAGS.get_help())
    sys.exit(0)
  if any(arg in HELP_ARGS for arg in args):
    print(usage(tool))
    sys.exit(0)
  return app.parse_flags_with_usage(argv)


def run(main, tool):
  """Runs an entry point's `main` under absl.

  Args:
    main: main(argv) of the tool.
    tool: the tool's module; --help shows its docstring and flags.
  """
  app.run(main, flags_parser=functools.partial(_parse_flags, tool))
