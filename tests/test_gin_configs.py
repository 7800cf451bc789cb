"""Every shipped Gin config parses against the registered problems and models."""

import pathlib

import gin
import pytest

from t2t_vqem import config
from t2t_vqem import registry

config.register_everything()
CONFIGS = sorted(p.name for p in pathlib.Path(config.PACKAGE_GIN_DIR).glob("*.gin"))


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_config_parses_and_names_registered_things(name):
  gin.clear_config()
  try:
    config.parse_gin([name], [], finalize=False)
    try:
      model, problem = (
        gin.query_parameter("Trainer.model"),
        gin.query_parameter("Trainer.problem"),
      )
    except ValueError:
      return  # a pipeline config names its stages' configs instead
    registry.model(model)
    registry.problem(problem)
  finally:
    gin.clear_config()


def test_missing_config_lists_the_shipped_ones():
  with pytest.raises(config.UsageError, match="transformer_quickstart.gin"):
    config.find_gin_file("nope.gin")
