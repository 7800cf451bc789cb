"""Gin configs as a library: no absl flags outside the CLI, includes of shipped configs,
scoped configs that give the caller's config back."""

import pathlib
import subprocess
import sys
import textwrap

import gin
import pytest

from t2t_vqem import config

config.register_everything()

# Every flag the entry points define (t2t_vqem/cli/*).
TOOL_FLAGS = {
  "gin_file",
  "gin_param",
  "import",
  "data_dir",
  "output_dir",
  "registry_help",
  "checkpoint",
  "split",
  "decode_from_file",
  "reference_file",
  "decode_to_file",
  "beam_size",
  "alpha",
  "batch_size",
  "max_sentences",
  "export_dir",
  "max_input_length",
}


def teardown_function():
  gin.clear_config()


def test_library_modules_define_no_flags_and_import_no_cli():
  script = textwrap.dedent("""
      import sys
      from absl import flags
      import absl.logging, gin, tensorflow  # their own flags, if any, are not ours
      before = set(flags.FLAGS)
      import t2t_vqem.config, t2t_vqem.pipeline, t2t_vqem.train.trainer, t2t_vqem.export
      import t2t_vqem.decode, t2t_vqem.distill, t2t_vqem.models, t2t_vqem.problems
      t2t_vqem.config.register_everything()
      print(sorted(set(flags.FLAGS) - before))
      print(sorted(m for m in sys.modules if m.startswith("t2t_vqem.cli")))
  """)
  result = subprocess.run(
    [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr
  new_flags, cli_modules = result.stdout.strip().splitlines()[-2:]
  assert new_flags == "[]", f"library imports defined flags {new_flags}"
  assert cli_modules == "[]", f"library imports the CLI: {cli_modules}"
  # The tool flags do exist once the CLI is imported: the check above can fail.
  from absl import flags  # noqa: PLC0415

  import t2t_vqem.cli.common  # noqa: F401,PLC0415

  assert {"gin_file", "gin_param", "import", "data_dir"} <= set(flags.FLAGS) & TOOL_FLAGS


def test_user_gin_file_includes_a_shipped_config_and_overrides_it(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # nothing to find in the working directory
  user = tmp_path / "mine.gin"
  user.write_text(
    "include 'latent_transformer_em_quickstart.gin'\nlatent_transformer_em.hidden_size = 96\n"
  )
  config.parse_gin([str(user)], [], finalize=False)
  assert gin.query_parameter("Trainer.model") == "latent_transformer_em"
  assert gin.query_parameter("latent_transformer_em.hidden_size") == 96
  # The rest is the shipped config's, as its file says.
  shipped = pathlib.Path(config.PACKAGE_GIN_DIR) / "latent_transformer_em_quickstart.gin"
  assert "latent_transformer_em.num_layers = 2" in shipped.read_text()
  assert gin.query_parameter("latent_transformer_em.num_layers") == 2


def test_missing_include_is_a_one_line_usage_error(tmp_path):
  user = tmp_path / "mine.gin"
  user.write_text("include 'no_such_config.gin'\n")
  with pytest.raises(config.UsageError, match="no_such_config.gin") as info:
    config.parse_gin([str(user)], [], finalize=False)
  assert "\n" not in str(info.value)


def test_stage_config_restores_the_callers_bindings_and_lock():
  config.parse_gin([], ["Trainer.train_steps = 7"], finalize=True)
  with config.stage_config(["Trainer.train_steps = 3", "transformer_quickstart.gin"]):
    assert gin.query_parameter("Trainer.train_steps") == 3000  # the file's, parsed last
    assert not gin.config_is_locked()
  assert gin.query_parameter("Trainer.train_steps") == 7
  assert gin.config_is_locked()
  with pytest.raises(RuntimeError):
    with config.stage_config(["Trainer.train_steps = 3"]):
      raise RuntimeError("stage failed")
  assert gin.query_parameter("Trainer.train_steps") == 7
  assert "transformer" not in gin.config_str()  # nothing of the stages stayed behind


def test_stage_config_keeps_the_callers_record_of_called_configurables():
  @gin.configurable("probe_for_operative")
  def probe(value=1):
    return value

  gin.clear_config()
  config.parse_gin([], ["probe_for_operative.value = 5"], finalize=False)
  assert probe() == 5
  with config.stage_config(["Trainer.train_steps = 3"]):
    assert "probe_for_operative" not in gin.operative_config_str()
  assert "probe_for_operative.value = 5" in gin.operative_config_str()
  gin.clear_config()


def test_run_config_of_a_directory_that_is_not_a_run(tmp_path):
  with pytest.raises(FileNotFoundError, match="a training run?"):
    with config.run_config(str(tmp_path)):
      pass
