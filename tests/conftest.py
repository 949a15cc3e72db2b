"""Shared fixtures: tiny image folders, a tiny trained run, and where the shared twemoji set lives."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TWEMOJI = REPO.parent / "shared" / "datasets" / "twemoji-128"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep the prepared-dataset cache and weight look-ups inside the test session."""
    old = {k: os.environ.get(k) for k in ("GANPLUG_CACHE", "GANPLUG_WEIGHTS")}
    os.environ["GANPLUG_CACHE"] = str(tmp_path_factory.mktemp("ganplug-cache"))
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def one_thread():
    """Tiny convolutions run faster on one thread, and much faster when other jobs share the cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def twemoji_dir() -> Path:
    if not TWEMOJI.is_dir():
        pytest.skip(f"shared twemoji dataset not found at {TWEMOJI} (only present beside the project checkout)")
    return TWEMOJI


def shape_image(rng: np.random.Generator, size: int, rgba: bool = False) -> Image.Image:
    """A coloured disc or square on a plain background: tiny, varied, easy to learn."""
    yy, xx = np.mgrid[0:size, 0:size]
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    r = rng.uniform(0.15, 0.35) * size
    mask = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r) if rng.random() < 0.5 else (
        (abs(xx - cx) < r) & (abs(yy - cy) < r))
    colour = rng.integers(0, 256, 3)
    if rgba:
        arr = np.zeros((size, size, 4), np.uint8)
        arr[mask, :3] = colour
        arr[mask, 3] = 255
        return Image.fromarray(arr, "RGBA")
    arr = np.full((size, size, 3), 255, np.uint8)
    arr[mask] = colour
    return Image.fromarray(arr, "RGB")


def write_shapes(folder: Path, n: int, size: int = 40, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        shape_image(rng, size, rgba=(i % 3 == 0)).save(folder / f"shape_{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """24 small PNGs (a third of them RGBA) of coloured shapes."""
    return write_shapes(tmp_path_factory.mktemp("shapes") / "imgs", 24)


def tiny_config(data: Path, out: Path, **overrides):
    from ganplug.train.config import TrainConfig

    values = dict(data=str(data), out=str(out), arch="dcgan", size=32, steps=6, batch=8, sample_every=3, ckpt_every=3,
                  device="cpu", precision="fp32", channels_last=False, grid_samples=4,
                  model={"base_channels": 8})
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, shapes_dir) -> Path:
    """A run folder with checkpoints of a tiny 32 px DCGAN trained for 6 steps on `shapes_dir`."""
    from ganplug.train.loop import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(shapes_dir, out))
    return out
