"""Fixtures for the server tests: untrained checkpoints made here in a second (the trained one is the
lead's `tiny_run`), an app factory, and a client on the loopback Host the server insists on."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from ganplug.checkpoint import save_training_checkpoint
from ganplug.models import build_models, config_from_dict


def write_untrained_run(run_dir: Path, arch: str = "dcgan", step: int = 1, **model) -> Path:
    torch.manual_seed(step)
    cfg = config_from_dict(arch, model)
    G, D, _ = build_models(arch, cfg)
    G.eval()
    opt_g = torch.optim.Adam(G.parameters())
    opt_d = torch.optim.Adam(D.parameters())
    from dataclasses import asdict

    return save_training_checkpoint(run_dir, step=step, G=G, D=D, G_ema=copy.deepcopy(G), opt_G=opt_g, opt_D=opt_d,
                                    rng={"cpu": torch.get_rng_state()},
                                    meta={"arch": arch, "model": asdict(cfg), "train": {}})


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


def make_client(**settings):
    from fastapi.testclient import TestClient

    from ganplug.serve import ServeSettings, create_app

    settings.setdefault("device", "cpu")
    settings.setdefault("precision", "fp32")
    return TestClient(create_app(ServeSettings(**settings)), base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def client(tiny_run, style_run):
    with make_client(models=(tiny_run, style_run)) as c:
        yield c
