"""Helpers for the server tests: untrained checkpoints made in a second (the trained one is the lead's
`tiny_run`) and a test client on the loopback Host the server insists on."""

from __future__ import annotations

import copy
from pathlib import Path

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


def make_client(**settings):
    from fastapi.testclient import TestClient

    from ganplug.serve import ServeSettings, create_app

    settings.setdefault("device", "cpu")
    settings.setdefault("precision", "fp32")
    return TestClient(create_app(ServeSettings(**settings)), base_url="http://127.0.0.1")
