"""Data-parallel training under a real torchrun (gloo, 2 CPU processes): the same training as one process.

A 2-process run with global batch B must end with the weights, optimiser moments, RNG state and ADA state of
a 1-process run with batch B (within float rounding: Adam turns the last bits of a near-zero gradient into
a whole step, so a few elements differ by up to ~lr); either world size resumes the other's checkpoint;
only rank 0 writes; and a rank that crashes ends the run with a message and a non-zero exit, well inside
the collective timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from ganplug import checkpoint as ckpt
from ganplug.cli.app import main
from tests.conftest import REPO, write_shapes

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")

COMMON = ["--size", "32", "--seed", "3", "--device", "cpu", "--precision", "fp32", "--no-watch", "--sample-every", "0"]
DCGAN = ["--arch", "dcgan", "--base-channels", "8", "--batch", "4"]
# batch 8 = 2 ranks x minibatch-stddev groups of 4; ADA adjusts p once, after 4 D updates
STYLEGAN = ["--arch", "stylegan", "--capacity", "0.05", "--mapping-layers", "1", "--batch", "8", "--aug", "ada",
            "--ada-kimg", "0.1", "--pl-weight", "2"]
# Float rounding grows with steps: a one-process run on 2 threads drifts from itself on 1 thread as fast as
# 2 processes drift from 1 (measured: by stylegan's second path-length step, or fastgan's 4th step, ~20% of
# the elements differ by > 1e-5 either way). 3-4 steps is where both still agree to ~1e-5 nearly everywhere.
FASTGAN = ["--arch", "fastgan", "--capacity", "0.05", "--z-dim", "16", "--batch", "4"]  # BatchNorm + DiffAugment
PIX2PIX = ["--arch", "pix2pix", "--base-channels", "8", "--batch", "4"]  # dropout, jitter, patch D


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dist")
    imgs = write_shapes(root / "imgs", 16, size=32)
    assert main(["prep", str(imgs), str(root / "ds"), "--size", "32"]) == 0
    assert main(["prep", str(imgs), str(root / "pairs"), "--size", "32", "--pairs", "edges"]) == 0
    return {"images": root / "ds", "pairs": root / "pairs"}


def torchrun(*argv, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc_per_node 2 -m ganplug.cli.app ARGV`."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ganplug.cli.app", *map(str, argv)]
    return subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def one_process(*argv) -> None:
    assert main(list(map(str, argv))) == 0


def tensors(run: Path) -> dict[str, torch.Tensor]:
    return ckpt.read_tensors(ckpt.resolve_checkpoint(run))


def assert_same_training(a: Path, b: Path) -> None:
    """Same step state (ADA p, counters), the same RNG state bit for bit, and every weight and optimiser
    moment within float rounding: at most 0.2% of elements off by more than 1e-5 (relative), none by more
    than 5e-3 (an Adam step taken the other way on a near-zero gradient). A real mismatch (e.g. D's
    minibatch-stddev groups split across ranks) moves ~40% of the elements by more than that."""
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    floats = []
    for k in ta:
        if k.startswith("rng.") or not ta[k].is_floating_point():
            assert torch.equal(ta[k], tb[k]), k
        else:
            floats.append(k)
    x = torch.cat([ta[k].double().flatten() for k in floats])
    diff = (x - torch.cat([tb[k].double().flatten() for k in floats])).abs()
    worst = max(floats, key=lambda k: (ta[k].double() - tb[k].double()).abs().max().item())
    assert diff.max() < 5e-3, (worst, diff.max().item())
    assert (diff > 1e-5 * (1 + x.abs())).double().mean() < 2e-3, (diff > 1e-5 * (1 + x.abs())).double().mean()
    sa, sb = (_flat(ckpt.read_meta(ckpt.resolve_checkpoint(r))["step_state"]) for r in (a, b))
    assert sa.keys() == sb.keys()
    for k, v in sa.items():
        assert v == (sb[k] if isinstance(v, str) else pytest.approx(sb[k], rel=1e-5, abs=1e-8)), k


def assert_same_losses(a: Path, b: Path) -> None:
    """Every step's logged losses, D scores and augmentation stats agree (rank means = the batch's)."""
    def rows(run: Path) -> list[dict[str, float]]:
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k.startswith(("loss/", "scores/", "aug/", "ada/"))}
                for r in lines if "loss/G" in r]

    ra, rb = rows(a), rows(b)
    assert [r.keys() for r in ra] == [r.keys() for r in rb]
    for x, y in zip(ra, rb, strict=True):
        assert x == pytest.approx(y, rel=1e-4, abs=1e-6)


def _flat(state: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in state.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and "tensorboard" not in p.parts)


def metrics_steps(run: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if "loss/G" in x]


def test_dcgan_two_processes_train_as_one_and_resume_across_world_sizes(data, tmp_path, one_thread):
    """BatchNorm in G and D: the ranks' batch statistics are the global batch's."""
    common = [data["images"], *COMMON, *DCGAN, "--ckpt-every", "3"]
    solo, duo, full = tmp_path / "solo", tmp_path / "duo", tmp_path / "full"
    one_process("train", *common, "--out", solo, "--steps", "3")
    proc = ok(torchrun("train", *common, "--out", duo, "--steps", "3"))
    assert_same_training(solo, duo)
    assert_same_losses(solo, duo)

    # only rank 0 wrote: the same files as one process, one metrics row per step, one final message
    assert files(duo) == files(solo)
    assert metrics_steps(duo) == [1, 2, 3]
    assert (proc.stdout + proc.stderr).count("done: trained to step 3") == 1

    # resume across world sizes, both ways: each ends where an uninterrupted one-process run does
    one_process("train", *common, "--out", full, "--steps", "5")
    solo_then_duo, duo_then_solo = tmp_path / "s2d", tmp_path / "d2s"
    shutil.copytree(solo, solo_then_duo)
    shutil.copytree(duo, duo_then_solo)
    ok(torchrun("train", "--resume", solo_then_duo, "--steps", "5", "--device", "cpu", "--precision", "fp32"))
    one_process("train", "--resume", duo_then_solo, "--steps", "5", "--device", "cpu", "--precision", "fp32")
    assert_same_training(full, solo_then_duo)
    assert_same_training(full, duo_then_solo)
    assert metrics_steps(solo_then_duo) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("arch,options,dataset", [
    ("stylegan", STYLEGAN, "images"),
    ("fastgan", FASTGAN, "images"),
    ("pix2pix", PIX2PIX, "pairs"),
])
def test_two_processes_train_as_one(arch, options, dataset, data, tmp_path, one_thread):
    """stylegan: ADA (its statistic all-reduced; p moves), R1, path length, style mixing, mbstd groups;
    fastgan: BatchNorm, DiffAugment, noise maps, random quadrants; pix2pix: dropout, jitter crops."""
    common = [data[dataset], *COMMON, *options, "--steps", "4" if arch == "stylegan" else "3"]
    solo, duo = tmp_path / "solo", tmp_path / "duo"
    one_process("train", *common, "--out", solo)
    if arch == "fastgan":  # through `ganplug train --gpus 2`, which starts torchrun itself
        cmd = [sys.executable, "-m", "ganplug.cli.app", "train", *map(str, common), "--out", str(duo), "--gpus", "2"]
        ok(subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=120))
    else:
        ok(torchrun("train", *common, "--out", duo))
    assert_same_training(solo, duo)
    assert_same_losses(solo, duo)
    if arch == "stylegan":  # one adjustment after 4 D updates, from the signs of all 4 x 8 images (not 4 x 4)
        ada = ckpt.read_meta(ckpt.resolve_checkpoint(duo))["step_state"]["ada"]
        assert ada["adjustments"] == 1 and ada["last_rt"] != 0


def test_a_crashing_rank_ends_the_run_with_a_message(data, tmp_path):
    """Rank 1 raises at step 2 (the GANPLUG_TEST_CRASH_RANK hook): the run ends, non-zero, naming it."""
    t0 = time.perf_counter()
    proc = torchrun("train", data["images"], *COMMON, *DCGAN, "--steps", "50", "--out", tmp_path / "crash",
                    env={"GANPLUG_TEST_CRASH_RANK": "1", "GANPLUG_TEST_CRASH_STEP": "2", "GANPLUG_DIST_TIMEOUT": "30"},
                    timeout=90)
    assert proc.returncode != 0
    assert time.perf_counter() - t0 < 60
    assert "rank 1 of 2 failed: RuntimeError: injected crash on rank 1 at step 2" in proc.stderr
