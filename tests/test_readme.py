"""README's first commands stay true: CI runs exactly its test command; configs exist."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _first_commands():
  text = (ROOT / "README.md").read_text()
  block = re.search(r"```\n(.*?)```", text, re.S).group(1)
  return [line for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command():
  main_job, test_command = _first_commands()[:2]
  assert "pytest" in test_command and "pytest" not in main_job
  assert test_command in (ROOT / ".ci" / "run").read_text()


def test_main_job_config_is_shipped():
  main_job = _first_commands()[0]
  gin_file = re.search(r"--gin_file=(\S+)", main_job).group(1)
  assert (ROOT / "t2t_vqem" / "gin" / gin_file).is_file()
