"""Reading, cleaning, preparing and serving training images."""

from ganplug.data.cache import load_training_data
from ganplug.data.dataset import ImageDataset, is_prepared_dataset, open_dataset
from ganplug.data.decode import DEFAULT_MAX_PIXELS, ImageReadError, decode_image
from ganplug.data.options import PrepOptions
from ganplug.data.prep import PrepResult, prepare_dataset

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageDataset",
    "ImageReadError",
    "PrepOptions",
    "PrepResult",
    "decode_image",
    "is_prepared_dataset",
    "load_training_data",
    "open_dataset",
    "prepare_dataset",
]
