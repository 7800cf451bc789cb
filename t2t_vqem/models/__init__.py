"""Registered models; importing this package registers them."""

from t2t_vqem.models import (
  image_vqvae,  # noqa: F401
  latent_transformer,  # noqa: F401
  transformer,  # noqa: F401
)
