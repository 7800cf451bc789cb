"""Registered models; importing this package registers them."""

from t2t_vqem.models import image_vqvae  # noqa: F401
from t2t_vqem.models import latent_transformer  # noqa: F401
from t2t_vqem.models import transformer  # noqa: F401
