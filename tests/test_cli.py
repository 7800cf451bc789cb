"""Entry points: --help lists each tool's own flags and the shared ones, and exits 0.

The installed console script (t2t_vqem-<tool>) is launched, or `python -m
t2t_vqem.cli.<tool>` where it is not installed; the kill and multi-worker tests
launch the trainer as a module.
"""

import os
import shutil
import subprocess
import sys

import pytest

SHARED_FLAGS = ("--gin_file", "--gin_param", "--import", "--data_dir")
OWN_FLAGS = {
  "trainer": ("--output_dir", "registry_help"),  # a bool flag shows as --[no]registry_help
  "decoder": (
    "--output_dir",
    "--checkpoint",
    "--split",
    "--decode_from_file",
    "--beam_size",
    "--max_sentences",
  ),
  "exporter": ("--output_dir", "--checkpoint", "--export_dir", "--max_input_length"),
}


def _console_script(tool):
  """The installed t2t_vqem-<tool> beside this Python, or on PATH; None if not installed."""
  beside = os.path.join(os.path.dirname(sys.executable), f"t2t_vqem-{tool}")
  return beside if os.path.isfile(beside) else shutil.which(f"t2t_vqem-{tool}")


@pytest.mark.parametrize("tool", sorted(OWN_FLAGS))
def test_help_lists_the_tools_flags_and_exits_0(tool):
  script = _console_script(tool)
  command = [script] if script else [sys.executable, "-m", f"t2t_vqem.cli.{tool}"]
  result = subprocess.run(command + ["--help"], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  for flag in OWN_FLAGS[tool] + SHARED_FLAGS:
    assert flag in result.stdout, f"{flag} missing from {tool} --help:\n{result.stdout}"
  assert f"t2t_vqem-{tool}" in result.stdout  # the tool's docstring comes first
