"""Gin configs: finding files, parsing them, and configs scoped to one stage or one run.

Library code with no absl flags: the entry points (t2t_vqem.cli) pass their
--gin_file and --gin_param values here, and so can a script or a test.

A Gin file is looked up as given, then in ./gin/, then among the shipped
configs (t2t_vqem/gin/); a Gin `include` finds files in the same places, so
a user's file can start with `include 'latent_transformer_em_quickstart.gin'`
and then override some of its bindings.
"""

import contextlib
import functools
import os

import gin

from t2t_vqem import registry

PACKAGE_GIN_DIR = os.path.join(os.path.dirname(__file__), "gin")
OPERATIVE_CONFIG = "operative_config.gin"


class UsageError(ValueError):
  """A bad flag or config value; the entry points report it on one line, without a traceback."""


def shipped_configs():
  """The names of the Gin files shipped in the package, sorted."""
  return sorted(f for f in os.listdir(PACKAGE_GIN_DIR) if f.endswith(".gin"))


def find_gin_file(name):
  """The path of Gin file `name`: as given, then in ./gin/, then the package's gin/."""
  candidates = [name, os.path.join("gin", name), os.path.join(PACKAGE_GIN_DIR, name)]
  if not name.endswith(".gin"):
    candidates += [c + ".gin" for c in candidates]
  for path in candidates:
    if os.path.isfile(path):
      return path
  raise UsageError(
    f"Gin file {name!r} not found as given, in ./gin or in "
    f"{PACKAGE_GIN_DIR}; shipped configs: {', '.join(shipped_configs())}"
  )


@functools.cache
def _add_search_paths():
  """Puts ./gin/ and the shipped configs on Gin's search path (for `include`), once."""
  gin.add_config_file_search_path("gin")
  gin.add_config_file_search_path(PACKAGE_GIN_DIR)


def parse_gin(gin_files, gin_params, finalize=True):
  """Parses Gin files and bindings into the global config.

  Args:
    gin_files: file names, looked up by `find_gin_file`.
    gin_params: binding strings, e.g. 'Trainer.train_steps = 10', applied after the files.
    finalize: lock the config afterwards.

  Raises:
    UsageError: a file is missing or unreadable, or the config is bad (one line).
  """
  paths = [find_gin_file(name) for name in gin_files]
  for path in paths:
    if not os.access(path, os.R_OK):
      raise UsageError(f"Gin file {path!r} is not readable")
  _add_search_paths()
  try:
    gin.parse_config_files_and_bindings(paths, gin_params, finalize_config=finalize)
  except (ValueError, KeyError, SyntaxError, IOError) as e:
    message = " ".join(str(e).split())
    raise UsageError(f"bad Gin config: {message}") from None


def operative_config_path(run_dir):
  """run_dir/operative_config.gin, which every training run writes."""
  path = os.path.join(run_dir, OPERATIVE_CONFIG)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path!r} not found: is {run_dir!r} a training run?")
  return path


@contextlib.contextmanager
def isolated_config():
  """Runs the body under an empty Gin config; gives the caller's config back afterwards.

  The caller's bindings (and whether its config was locked) are restored even
  when the body raises, and so is Gin's record of which configurables the
  caller called (`gin.operative_config_str`), which starts afresh inside: a
  run that loads another run (a warm start) still writes its own operative
  config. (Gin has no public API for that record; its module dict is copied.)
  """
  saved, locked = gin.config_str(), gin.config_is_locked()
  operative = dict(gin.config._OPERATIVE_CONFIG)  # noqa: SLF001
  gin.clear_config()
  try:
    yield
  finally:
    gin.clear_config()
    gin.parse_config(saved)
    gin.config._OPERATIVE_CONFIG.update(operative)  # noqa: SLF001
    if locked:
      gin.finalize()


def _is_binding(item):
  return "=" in item


@contextlib.contextmanager
def stage_config(items):
  """Runs the body under a fresh Gin config made of `items`; restores the caller's after.

  Args:
    items: Gin file names (looked up like --gin_file) and binding strings
      ('transformer.num_layers = 2'), applied in order.
  """
  with isolated_config():
    for item in items:
      if _is_binding(item):
        parse_gin([], [item], finalize=False)
      else:
        parse_gin([item], [], finalize=False)
    yield


@contextlib.contextmanager
def run_config(run_dir, gin_files=(), gin_params=()):
  """Runs the body under a training run's own config; restores the caller's after.

  Args:
    run_dir: a training run's output_dir; its operative_config.gin is parsed first.
    gin_files, gin_params: more Gin files and bindings, applied on top of it.
  """
  path = operative_config_path(run_dir)
  with isolated_config():
    parse_gin([path] + list(gin_files), list(gin_params), finalize=False)
    yield


def register_everything(user_modules=()):
  """Makes known everything a Gin config may name: the built-in problems and models,
  the Trainer's and the Pipeline's parameters, then the user modules (`--import`)."""
  import t2t_vqem.models  # noqa: F401,PLC0415  (registers the models)
  import t2t_vqem.pipeline  # noqa: F401,PLC0415  (the Pipeline's Gin parameters)
  import t2t_vqem.problems  # noqa: F401,PLC0415  (registers the problems)
  import t2t_vqem.train.trainer  # noqa: F401,PLC0415  (the Trainer's Gin parameters)

  registry.import_modules(user_modules)
