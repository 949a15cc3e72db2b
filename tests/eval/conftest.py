"""Shared fixtures of the eval tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private HOME and torch hub folder and no GANPLUG_WEIGHTS, so no real network file is found."""
    h = tmp_path / "home"
    h.mkdir(mode=0o755)
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("GANPLUG_WEIGHTS", raising=False)
    import torch.hub

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torchhub"))
    return h
