"""Registered problems; importing this package registers them all."""

from t2t_vqem.problems import (
  distilled,  # noqa: F401
  image,  # noqa: F401
  translate_grammar,  # noqa: F401
  translate_tsv,  # noqa: F401
  translate_wmt,  # noqa: F401
)
