"""Fixtures for the server tests (helpers in serve_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_helpers import make_client, write_untrained_run


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A folder of two untrained 32 px DCGAN runs (RGB and RGBA) and a stray non-model file."""
    root = tmp_path_factory.mktemp("models")
    write_untrained_run(root / "rgb32", size=32, channels=3, base_channels=8, z_dim=16)
    write_untrained_run(root / "rgba32", size=32, channels=4, base_channels=8, z_dim=16)
    (root / "notes.txt").write_text("not a model")
    return root


@pytest.fixture(scope="session")
def style_run(tmp_path_factory) -> Path:
    """An untrained 32 px style-based run (tiny widths): for style mixing and projection refusals."""
    root = tmp_path_factory.mktemp("style") / "style32"
    write_untrained_run(root, arch="stylegan", size=32, z_dim=16, w_dim=16, mapping_layers=2, capacity=0.05,
                        channel_max=32)
    return root


@pytest.fixture(scope="module")
def client(tiny_run, style_run):
    with make_client(models=(tiny_run, style_run)) as c:
        yield c
