"""Registry: names, errors, plugin import, --registry_help."""

import subprocess
import sys
import textwrap

import gin
import pytest

from t2t_vqem import registry


def test_default_name_is_snake_case_of_the_class():
  class TranslateFooBarXY:
    pass

  assert registry.default_name(TranslateFooBarXY) == "translate_foo_bar_xy"


def test_builtin_names_are_registered():
  assert {"translate_ende_wmt", "translate_tsv", "translate_grammar_ende"} <= set(
    registry.list_problems()
  )
  assert "transformer" in registry.list_models()


def test_duplicate_name_is_an_error():
  @registry.register_problem("test_dup_problem")
  class First:
    def __init__(self, data_dir=None):
      pass

  with pytest.raises(registry.RegistryError, match="already registered"):

    @registry.register_problem("test_dup_problem")
    class Second:
      def __init__(self, data_dir=None):
        pass


def test_unknown_name_lists_names_and_suggests_the_closest():
  with pytest.raises(registry.RegistryError) as info:
    registry.model("transfomer")
  message = str(info.value)
  assert "\n" not in message
  assert "transformer" in message and "Did you mean 'transformer'?" in message


def test_registered_class_is_gin_configurable_by_name():
  @registry.register_model("test_gin_model")
  class GinModel:
    def __init__(self, vocab_size, width=3):
      self.vocab_size, self.width = vocab_size, width

  with gin.unlock_config():
    gin.parse_config("test_gin_model.width = 7")
  try:
    built = registry.build_model("test_gin_model", vocab_size=5)
    assert (built.vocab_size, built.width) == (5, 7)
    with pytest.raises(ValueError, match="no_such_arg"):
      gin.parse_config("test_gin_model.no_such_arg = 1")
  finally:
    gin.clear_config()


def test_import_module_registers_a_user_problem(tmp_path):
  (tmp_path / "my_plugin.py").write_text(
    textwrap.dedent("""
      from t2t_vqem import registry
      @registry.register_problem
      class MyPluginProblem:
        '''A user's problem.'''
        def __init__(self, data_dir=None):
          pass
  """)
  )
  registry.import_modules([str(tmp_path / "my_plugin.py")])
  assert "my_plugin_problem" in registry.list_problems()
  assert "my_plugin_problem" in registry.help_string()


def test_import_of_a_broken_module_is_a_one_line_error(tmp_path):
  with pytest.raises(registry.RegistryError) as info:
    registry.import_modules(["no_such_module_xyz"])
  assert "no_such_module_xyz" in str(info.value) and "\n" not in str(info.value)


def _trainer(*args):
  return subprocess.run(
    [sys.executable, "-m", "t2t_vqem.cli.trainer", *args],
    capture_output=True,
    text=True,
    timeout=300,
  )


def test_cli_registry_help_lists_problems_and_models_including_plugins(tmp_path):
  (tmp_path / "plug.py").write_text(
    "from t2t_vqem import registry\n@registry.register_model\nclass PlugModel:\n  '''Plugged.'''\n"
  )
  result = _trainer("--registry_help", f"--import={tmp_path / 'plug.py'}")
  assert result.returncode == 0, result.stderr
  for name in ("transformer", "translate_ende_wmt", "translate_grammar_ende", "plug_model"):
    assert name in result.stdout


def test_cli_errors_are_one_line(tmp_path):
  result = _trainer("--import=no_such_module_xyz", "--registry_help")
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith("error: cannot import user module")
  assert "Traceback" not in result.stderr

  result = _trainer(f"--output_dir={tmp_path}", "--gin_file=does_not_exist.gin")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert "does_not_exist.gin" in result.stderr.strip().splitlines()[-1]

  result = _trainer(
    f"--output_dir={tmp_path}",
    "--gin_file=transformer_quickstart.gin",
    "--gin_param=Trainer.model = 'transfomer'",
    "--gin_param=Trainer.train_steps = 1",
  )
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert "Did you mean 'transformer'?" in result.stderr

  result = _trainer(
    f"--output_dir={tmp_path}",
    "--gin_file=transformer_quickstart.gin",
    "--gin_param=Trainer.no_such_param = 1",
  )
  assert result.returncode == 1 and "no_such_param" in result.stderr


def test_subclass_passing_kwargs_exposes_its_base_parameters_to_gin():
  class Base:
    def __init__(self, vocab_size, mode="hard_em", width=3):
      self.vocab_size, self.mode, self.width = vocab_size, mode, width

  @registry.register_model("test_sub_model")
  class Sub(Base):
    def __init__(self, vocab_size, num_samples=10, **kwargs):
      super().__init__(vocab_size, mode="soft_em", **kwargs)
      self.num_samples = num_samples

  names = [p.name for p in registry.constructor_parameters(Sub)]
  assert names == ["vocab_size", "num_samples", "mode", "width"]
  with gin.unlock_config():
    gin.parse_config("test_sub_model.width = 9\ntest_sub_model.num_samples = 4")
  try:
    built = registry.build_model("test_sub_model", vocab_size=2)
    assert (built.width, built.num_samples, built.mode) == (9, 4, "soft_em")
  finally:
    gin.clear_config()


def test_model_interface_is_the_declared_one_and_chooses_the_export():
  from t2t_vqem import export as export_lib  # noqa: PLC0415

  class Declared:
    interface = "test_interface"

  class Server:
    @classmethod
    def for_problem(cls, model, problem, **settings):
      return (model, problem, settings)

  model = Declared()
  assert registry.model_interface(model) == "test_interface"
  with pytest.raises(NotImplementedError, match="'test_interface'.*image, latent_translation"):
    export_lib.make_server(model, "a problem")
  export_lib.register_server("test_interface", Server)
  try:
    built = export_lib.make_server(model, "a problem", beam_size=3)
  finally:
    del export_lib.SERVERS["test_interface"]
  assert built == (model, "a problem", {"max_input_length": None, "beam_size": 3, "alpha": None})


def test_the_built_in_models_declare_their_interfaces():
  expected = {
    "transformer": "translation",
    "latent_transformer": "latent_translation",
    "latent_transformer_vq": "latent_translation",
    "latent_transformer_em": "latent_translation",
    "image_vqvae": "image",
    "image_vqvae_vq": "image",
    "image_vqvae_em": "image",
  }
  assert {name: registry.model(name).interface for name in expected} == expected

  class Undeclared:
    pass

  assert registry.model_interface(Undeclared()) == "translation"
  assert set(registry.MODEL_INTERFACES) == {"translation", "latent_translation", "image"}
