"""What the entry points share: --import, --gin_file / --gin_param, one-line errors."""

import functools
import os
import sys

from absl import flags
from absl import logging
import gin

from t2t_vqem import registry

PACKAGE_GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "gin")

flags.DEFINE_multi_string("gin_file", [], "Gin file(s); looked up as given, then in "
                          "./gin, then in the package's gin/ folder.")
flags.DEFINE_multi_string("gin_param", [], "Gin binding(s), e.g. 'Trainer.train_steps = 10'.")
flags.DEFINE_multi_string("import", [], "User module(s) registering problems and models: "
                          "a module name, a .py file or a folder.")
flags.DEFINE_string("data_dir", None, "Problem data and vocabulary cache (default: "
                    "$T2T_VQEM_DATA_DIR or ~/t2t_vqem_data).")
FLAGS = flags.FLAGS


class UsageError(ValueError):
  """A bad flag or config value; reported on one line without a traceback."""


def find_gin_file(name):
  """The path of Gin file `name`: as given, then ./gin/, then the package's gin/."""
  candidates = [name, os.path.join("gin", name), os.path.join(PACKAGE_GIN_DIR, name)]
  if not name.endswith(".gin"):
    candidates += [c + ".gin" for c in candidates]
  for path in candidates:
    if os.path.isfile(path):
      return path
  shipped = sorted(f for f in os.listdir(PACKAGE_GIN_DIR) if f.endswith(".gin"))
  raise UsageError(f"Gin file {name!r} not found as given, in ./gin or in "
                   f"{PACKAGE_GIN_DIR}; shipped configs: {', '.join(shipped)}")


def parse_gin(gin_files, gin_params, finalize=True):
  """Parses Gin files and bindings; any error becomes a one-line UsageError."""
  paths = [find_gin_file(name) for name in gin_files]
  for path in paths:
    if not os.access(path, os.R_OK):
      raise UsageError(f"Gin file {path!r} is not readable")
  try:
    gin.parse_config_files_and_bindings(paths, gin_params, finalize_config=finalize)
  except (ValueError, KeyError, SyntaxError, IOError) as e:
    message = " ".join(str(e).split())
    raise UsageError(f"bad Gin config: {message}") from None


def parse_run_config(output_dir, gin_files, gin_params):
  """Parses a training run's operative_config.gin, then extra Gin files and bindings."""
  config = os.path.join(output_dir, "operative_config.gin")
  if not os.path.isfile(config):
    raise FileNotFoundError(f"{config!r} not found: is {output_dir!r} a training run?")
  parse_gin([config] + list(gin_files), gin_params)


def register_everything(user_modules):
  """Imports the built-in problems and models and the --import modules."""
  import t2t_vqem.models  # noqa: F401  (registers the models)
  import t2t_vqem.problems  # noqa: F401  (registers the problems)
  import t2t_vqem.train.trainer  # noqa: F401  (the Trainer's Gin parameters)
  import t2t_vqem.pipeline  # noqa: F401  (the Pipeline's Gin parameters)
  registry.import_modules(user_modules)


def one_line_errors(main):
  """Runs `main`; expected user errors are printed on one line, exit status 1."""
  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except (UsageError, registry.RegistryError, FileNotFoundError, ValueError) as e:
      if logging.get_verbosity() >= logging.DEBUG:
        raise
      print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
      sys.exit(1)
  return wrapped
