"""Reading, cleaning, preparing and serving training images.

The names below load on first use (PEP 562), so importing one torch-free submodule (decode, options:
what `ganplug prep --help` needs) does not import torch through the dataset and cache modules.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "load_training_data": "cache",
    "ImageDataset": "dataset",
    "is_prepared_dataset": "dataset",
    "open_dataset": "dataset",
    "DEFAULT_MAX_PIXELS": "decode",
    "ImageReadError": "decode",
    "decode_image": "decode",
    "PrepOptions": "options",
    "PrepResult": "prep",
    "prepare_dataset": "prep",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
