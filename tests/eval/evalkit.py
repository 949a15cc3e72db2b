"""Shared helpers for the eval tests: seeded stand-in network files and small twemoji folders.

Built once per test session (cached here) because the stand-in Inception takes seconds to make.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TWEMOJI = REPO / ".." / "shared" / "datasets" / "twemoji-128"


@functools.cache
def _session_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="ganplug-eval-tests-"))
    atexit.register(shutil.rmtree, d, True)
    return d


@functools.cache
def standin_dir() -> Path:
    """A folder holding a stand-in inception-2015-12-05.pt and vgg16-397923af.pth (seeded random)."""
    from ganplug.eval.features.standin import save_standin_inception, save_standin_vgg16

    d = _session_dir() / "weights"
    save_standin_inception(d / "inception-2015-12-05.pt", seed=0)
    save_standin_vgg16(d / "vgg16-397923af.pth", seed=0)
    return d


def twemoji_files() -> list[Path]:
    if not TWEMOJI.is_dir():
        pytest.skip(f"shared twemoji dataset not found at {TWEMOJI.resolve()} (present beside the checkout only)")
    return sorted(TWEMOJI.glob("*.png"))


@functools.cache
def _twemoji_folder(start: int, count: int) -> Path:
    files = twemoji_files()
    d = _session_dir() / f"twemoji_{start}_{count}"
    d.mkdir()
    for f in files[start:start + count]:
        shutil.copy(f, d / f.name)
    return d


def twemoji_folder(start: int, count: int) -> Path:
    twemoji_files()  # skip early when absent
    return _twemoji_folder(start, count)


@functools.cache
def extractor(mode: str = "clean", precision: str = "fp32"):
    """A loaded InceptionExtractor on the stand-in file, shared by the tests of one session."""
    from ganplug.device import make_runtime
    from ganplug.eval.features.inception import InceptionExtractor
    from ganplug.eval.features.weights import locate

    found = locate("inception", standin_dir(), allow_unverified=True)
    return InceptionExtractor(found, make_runtime("cpu", precision), mode)
