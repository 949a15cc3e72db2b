"""`ganplug eval` under a real torchrun (gloo, 2 CPU processes): the same results as one process.

Each rank samples and extracts features for batches r, r + 2, ... of each input; rank 0 gathers them in
input order, so its arrays are the one-process run's bit for bit and every number (the seeded SWD patches,
MS-SSIM pairs, PR/DC, Vendi, the collapse verdict and the copy rate) is identical. Only rank 0 prints and
writes; `--gpus 2 --device cpu` starts torchrun itself; a rank that crashes ends the run with its message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as dist

from ganplug.cli.app import main
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")

# 36 samples in batches of 8: 5 batches, so rank 0 takes 3 and rank 1 two (the last round is uneven);
# REAL's 24 images are 3 batches. The network-free metrics need no network file. `--samples` is `--n`
# (torchrun's own parser would take `--n` for an abbreviation of --nnodes); --gpus gets `--n`.
METRICS = "swd,pr,dc,msssim,vendi"
COMMON = ["--metrics", METRICS, "--samples", "36", "--batch-size", "8", "--device", "cpu", "--seed", "5",
          "--collapse-n", "30"]
SAME = ("metrics", "skipped", "collapse", "memorisation", "feature_space", "fake", "real", "losses", "sample_count")


def launch(*argv, torchrun: bool = True, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc_per_node 2 -m ganplug.cli.app ARGV`, or without
    torchrun `python -m ganplug.cli.app ARGV` (for `--gpus`)."""
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] if torchrun \
        else [sys.executable]
    cmd = [*run, "-m", "ganplug.cli.app", *map(str, argv)]
    return subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def results(path: Path) -> dict:
    data = json.loads(path.read_text())
    assert data["settings"]["metrics"] == METRICS.split(",")
    return {k: data.get(k) for k in SAME}


@pytest.fixture(scope="module")
def solo(tiny_run, shapes_dir, tmp_path_factory) -> tuple[dict, dict]:
    """One process, one thread (as the ranks run): the results to match, and the JSON's settings."""
    import torch

    out = tmp_path_factory.mktemp("solo") / "eval.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["eval", str(tiny_run), "--real", str(shapes_dir), *COMMON, "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return results(out), json.loads(out.read_text())["settings"]


def test_two_processes_give_one_process_results_and_only_rank0_writes(tiny_run, shapes_dir, solo, tmp_path):
    """REAL's features are not cached here (--no-cache), so both inputs are shared out."""
    out = tmp_path / "out"
    out.mkdir()
    proc = ok(launch("eval", tiny_run, "--real", shapes_dir, *COMMON, "--no-cache", "--json", out / "eval.json",
                     "--report", out / "report.html"))
    duo = results(out / "eval.json")
    assert duo == solo[0]  # exactly: the gathered arrays are the one-process arrays
    assert duo["metrics"]["swd"]["images"] == 24 and duo["memorisation"]["samples"] == 30
    settings = json.loads((out / "eval.json").read_text())["settings"]
    assert settings["processes"] == 2 and solo[1]["processes"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["eval.json", "report.html"]  # no temp files left beside
    lines = (proc.stdout + proc.stderr).splitlines()
    for start in ("wrote " + str(out / "eval.json"), "verdict ", "msssim ", "FAKE sampling + features 36/36"):
        assert sum(line.startswith(start) for line in lines) == 1, (start, lines[-40:])


def test_gpus_2_on_the_cpu_relaunches_under_torchrun_and_uses_the_cache(tiny_run, shapes_dir, solo, tmp_path):
    """`ganplug eval --gpus 2 --device cpu` starts torchrun itself; REAL's handcrafted features come from the
    cache the one-process run wrote (rank 0 reads it; the ranks still share out the images the streams need)."""
    out = tmp_path / "eval.json"
    argv = ["--n" if a == "--samples" else a for a in COMMON]  # relaunched as --samples
    ok(launch("eval", tiny_run, "--real", shapes_dir, *argv, "--json", out, "--gpus", "2", torchrun=False))
    assert results(out) == solo[0]
    assert json.loads(out.read_text())["cache"]["handcrafted"] == "cache hit"


def test_a_crashing_rank_ends_the_evaluation_with_a_message(tiny_run, shapes_dir, tmp_path):
    """Rank 1 raises as its first batch begins (the GANPLUG_TEST_CRASH_RANK hook): non-zero, naming it,
    nothing written."""
    t0 = time.perf_counter()
    proc = launch("eval", tiny_run, "--real", shapes_dir, *COMMON, "--json", tmp_path / "eval.json",
                  env={"GANPLUG_TEST_CRASH_RANK": "1", "GANPLUG_TEST_CRASH_STEP": "1", "GANPLUG_DIST_TIMEOUT": "30"},
                  timeout=90)
    assert proc.returncode != 0
    assert time.perf_counter() - t0 < 60
    assert "ganplug eval: rank 1 of 2 failed: RuntimeError: injected crash on rank 1 at step 1" in proc.stderr
    assert not (tmp_path / "eval.json").exists()
