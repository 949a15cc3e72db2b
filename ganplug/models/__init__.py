"""Model families: one file each, registered here by name (see registry.py for the contract)."""

from ganplug.models import dcgan, fastgan, mlp, pix2pix, stylegan
from ganplug.models.registry import (
    FAMILIES,
    ModelSpec,
    build_models,
    config_from_dict,
    get_family,
    register,
    takes_images,
)

register(dcgan.FAMILY)
register(stylegan.FAMILY)
register(mlp.FAMILY)
register(pix2pix.FAMILY)
register(fastgan.FAMILY)

__all__ = ["FAMILIES", "ModelSpec", "build_models", "config_from_dict", "get_family", "register", "takes_images"]
