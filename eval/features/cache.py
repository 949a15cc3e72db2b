"""Cache of real-set features, so a second eval against the same real set recomputes nothing.

Key = sha256 of {content hash of the images used, extractor, weights file hash, layer(s), every
argument that changes the numbers}. Entries are .npz (no pickles) plus a .json sidecar saying what
they hold, each written to a temp file, fsynced and renamed. Default folder: ~/.cache/ganplug/features
or $GANPLUG_CACHE/features.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ganplug.atomic import atomic_write


def default_cache_dir() -> Path:
    root = os.environ.get("GANPLUG_CACHE")
    return (Path(root).expanduser() if root else Path("~/.cache/ganplug").expanduser()) / "features"


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class FeatureCache:
    def __init__(self, root: Path | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root else default_cache_dir()
        self.enabled = enabled

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        if not self.enabled:
            return None
        path = self.root / f"{key}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            return None  # a damaged entry is recomputed and replaced

    def save(self, key: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
        if not self.enabled:
            return
        atomic_write(self.root / f"{key}.npz", lambda f: np.savez(f, **arrays))
        atomic_write(self.root / f"{key}.json", lambda f: f.write(json.dumps(meta, indent=2, default=str).encode()))
