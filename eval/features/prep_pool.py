"""Per-image CPU preprocessing for the network extractors, on a few threads (PIL's resize releases the GIL,
so two workers keep a CPU feature pass from waiting on it)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


class PrepPool:
    """`workers` = 0 runs in the caller's thread (a lone image always does)."""

    def __init__(self, workers: int = 2) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers) if workers > 0 else None

    def stack(self, fn: Callable[[np.ndarray], np.ndarray], images: list[np.ndarray]) -> torch.Tensor:
        """fn on each image, stacked into one [N, ...] tensor in input order."""
        if self.executor is not None and len(images) > 1:
            arrays = list(self.executor.map(fn, images))
        else:
            arrays = [fn(im) for im in images]
        return torch.from_numpy(np.stack(arrays))
