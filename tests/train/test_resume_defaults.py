"""Exact resume with the settings a user gets: auto precision, channels_last and fused Adam, every family.

An interrupted run resumed with `--resume` must end with the same weights, optimiser state and losses as
an uninterrupted one, whatever the two runs' checkpoint, sample-grid and watch cadences were: writing a
checkpoint or a grid, or checking for collapse, must not touch the training trajectory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ganplug import checkpoint as ckpt
from ganplug.cli.app import main
from ganplug.device import make_runtime
from tests.conftest import write_shapes

FAMILIES = {
    "dcgan": ["--base-channels", "8"],
    "stylegan": ["--capacity", "0.05", "--mapping-layers", "1", "--aug", "ada"],
    "pix2pix": ["--base-channels", "8"],
    "fastgan": ["--capacity", "0.05", "--z-dim", "16"],  # with its default DiffAugment
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Plain images for the z families and sketch -> image pairs for pix2pix, as `ganplug prep` makes them."""
    root = tmp_path_factory.mktemp("resume")
    imgs = write_shapes(root / "imgs", 24, size=32)
    assert main(["prep", str(imgs), str(root / "pairs"), "--size", "32", "--pairs", "edges"]) == 0
    return {"dcgan": imgs, "stylegan": imgs, "fastgan": imgs, "pix2pix": root / "pairs"}


def _train(*argv) -> None:
    assert main(["train", *map(str, argv)]) == 0


def _losses(run: Path) -> list[dict[str, float]]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k.startswith(("loss/", "scores/", "aug/"))} for r in rows if "loss/G" in r]


def test_defaults_use_the_fast_path_that_resume_must_survive():
    """Guard: on this machine the defaults really are channels_last (+ bf16 where the CPU has it)."""
    rt = make_runtime("cpu", "auto", True)
    assert rt.channels_last
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2, 3, 4, 4))], fused=True)
    assert opt.defaults["fused"]


@pytest.mark.parametrize("arch", sorted(FAMILIES))
def test_resume_with_defaults_equals_an_uninterrupted_run(arch, data, tmp_path, one_thread):
    common = [data[arch], "--arch", arch, "--size", "32", "--batch", "4", "--seed", "3", "--device", "cpu",
              *FAMILIES[arch]]
    full, part = tmp_path / "full", tmp_path / "part"
    _train(*common, "--out", full, "--steps", "6", "--ckpt-every", "2", "--sample-every", "4",
           "--watch-every", "1")
    _train(*common, "--out", part, "--steps", "3", "--ckpt-every", "1000", "--sample-every", "1",
           "--watch-every", "500")
    _train("--resume", part, "--steps", "6", "--device", "cpu")

    assert _losses(part) == _losses(full)
    a = ckpt.read_tensors(ckpt.resolve_checkpoint(full))
    b = ckpt.read_tensors(ckpt.resolve_checkpoint(part))
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, differ[:5]


def test_restored_optimiser_state_has_the_parameters_layout():
    """The cause of the drift: state restored contiguous beside channels_last parameters."""
    p = torch.nn.Parameter(torch.randn(4, 3, 3, 3).to(memory_format=torch.channels_last))
    opt = torch.optim.Adam([p], lr=0.1, fused=True)
    p.grad = torch.randn_like(p)
    opt.step()
    tensors, info = ckpt._flatten_optimizer("opt", opt)
    tensors = {k: v.clone() for k, v in tensors.items()}  # as read back from a file: no shared storage
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = torch.optim.Adam([q], lr=0.1, fused=True)
    ckpt.restore_optimizer(opt2, "opt", tensors, {"optimizers": {"opt": info}})
    for key in ("exp_avg", "exp_avg_sq"):
        assert opt2.state[q][key].stride() == q.stride()
        assert torch.equal(opt2.state[q][key], opt.state[p][key])
    g = torch.randn_like(p)
    p.grad, q.grad = g.clone(), g.clone()
    opt.step()
    opt2.step()
    assert torch.equal(p, q)
