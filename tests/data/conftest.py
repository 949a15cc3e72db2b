"""Fixtures for the data tests (helpers live in prep_assets.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prep_assets import TWEMOJI


@pytest.fixture
def twemoji_subset(tmp_path: Path) -> Path:
    """50 real RGBA twemoji PNGs copied into a fresh folder (skips when ../shared is absent)."""
    if not TWEMOJI.is_dir():
        pytest.skip(f"twemoji dataset not found at {TWEMOJI} (CI clones ../shared beside the repo)")
    out = tmp_path / "twemoji50"
    out.mkdir()
    for f in sorted(TWEMOJI.glob("*.png"))[::32][:50]:
        shutil.copy2(f, out / f.name)
    return out
