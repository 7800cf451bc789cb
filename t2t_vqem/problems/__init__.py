"""Registered problems; importing this package registers them all."""

from t2t_vqem.problems import distilled  # noqa: F401
from t2t_vqem.problems import image  # noqa: F401
from t2t_vqem.problems import translate_grammar  # noqa: F401
from t2t_vqem.problems import translate_tsv  # noqa: F401
from t2t_vqem.problems import translate_wmt  # noqa: F401
