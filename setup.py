"""t2t_vqem: discrete-latent autoencoders trained with EM, in TensorFlow 2."""

import pathlib

from setuptools import find_packages
from setuptools import setup

here = pathlib.Path(__file__).parent
requirements = [
  line.strip()
  for line in (here / "requirements.txt").read_text().splitlines()
  if line.strip() and not line.startswith("#")
]

setup(
  name="t2t_vqem",
  version="0.1.0",
  description=(
    "Vector quantized autoencoders trained with hard and soft EM "
    "(Roy et al. 2018), Tensor2Tensor-style, on TensorFlow 2."
  ),
  long_description=(here / "README.md").read_text(),
  long_description_content_type="text/markdown",
  python_requires=">=3.10",
  packages=find_packages(include=["t2t_vqem", "t2t_vqem.*"]),
  package_data={"t2t_vqem": ["gin/*.gin"]},
  install_requires=requirements,
  extras_require={"test": ["pytest>=8", "pytest-xdist>=3", "hypothesis>=6.100"]},
  entry_points={
    "console_scripts": [
      "t2t_vqem-trainer = t2t_vqem.cli.trainer:run",
      "t2t_vqem-decoder = t2t_vqem.cli.decoder:run",
      "t2t_vqem-exporter = t2t_vqem.cli.exporter:run",
    ],
  },
)
