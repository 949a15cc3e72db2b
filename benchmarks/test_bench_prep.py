"""Prep throughput, and minibatches from the prepared array vs decoding PNGs every step.

Run with `make bench` (or `.venv/bin/python -m pytest -q --benchmark-enable --benchmark-only
benchmarks/test_bench_prep.py`); figures go to docs/benchmarks.md ("Dataset preparation").
Uses the twemoji set (1,609 RGBA PNGs, 128 px) when ../shared is present, else 1,000 synthetic PNGs.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganplug.data import PrepOptions, decode_image, open_dataset, prepare_dataset
from ganplug.data.geometry import fit_square

REPO = Path(__file__).resolve().parents[1]
TWEMOJI = REPO.parent / "shared" / "datasets" / "twemoji-128"
BATCH = 64


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    if TWEMOJI.is_dir():
        return TWEMOJI
    folder = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    for i in range(1000):
        a = np.full((128, 128, 4), 0, np.uint8)
        a[32:96, 32:96] = np.append(rng.integers(0, 256, 3), 255)
        Image.fromarray(a).save(folder / f"{i:04d}.png")
    return folder


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("workers", [1, 2])
def test_prep_throughput(benchmark, source: Path, tmp_path: Path, size: int, workers: int) -> None:
    out = tmp_path / "out"
    files = len(list(source.glob("*.png")))

    cpu: list[float] = []

    def clear() -> None:
        shutil.rmtree(out, ignore_errors=True)

    def run():
        t = time.process_time()  # CPU time of all threads: robust to other load on shared machines
        res = prepare_dataset(source, out, PrepOptions(size=size, seed=0), workers=workers)
        cpu.append(time.process_time() - t)
        return res

    result = benchmark.pedantic(run, setup=clear, rounds=2, iterations=1)
    assert result.counts["read"] == files
    benchmark.extra_info["images"] = files
    benchmark.extra_info["images_per_second"] = round(files / benchmark.stats.stats.mean, 1)
    benchmark.extra_info["cpu_ms_per_image"] = round(1000 * min(cpu) / files, 3)


@pytest.fixture(scope="module")
def prepared64(source: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "tw64"
    prepare_dataset(source, out, PrepOptions(size=64, seed=0), workers=2)
    return out


def test_minibatch_from_memmap(benchmark, prepared64: Path) -> None:
    ds = open_dataset(prepared64)  # memory-mapped, as training opens it
    rng = np.random.default_rng(0)
    batch = benchmark(lambda: ds.batch(rng.integers(0, len(ds), BATCH)))
    assert tuple(batch.shape) == (BATCH, 3, 64, 64)


def test_minibatch_decoding_pngs(benchmark, source: Path) -> None:
    files = sorted(source.glob("*.png"))
    rng = np.random.default_rng(0)

    def draw() -> np.ndarray:
        picks = rng.integers(0, len(files), BATCH)
        return np.stack([np.asarray(fit_square(Image.fromarray(decode_image(files[i])), 64)) for i in picks])

    batch = benchmark(draw)
    assert batch.shape == (BATCH, 64, 64, 3)
