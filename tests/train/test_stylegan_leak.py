"""Leak check (StyleGAN2-ADA's failure mode): D sees images rotated by 90-degree steps, flipped,
shifted, zoomed and recoloured with p = 0.6, yet G must still draw the data as it is: upright.

The data: vertical gradients, dark at the top and bright at the bottom. A generator that learned the
augmented distribution instead would draw some of them sideways or upside down.
"""

from __future__ import annotations

import torch

from ganplug import checkpoint as ckpt
from ganplug.sampling import generate_all
from ganplug.train.config import TrainConfig
from ganplug.train.loop import train
from tests.train.stylegan_data import write_vertical_gradients


def orientation(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(bottom minus top, right minus left) mean brightness per uint8 image."""
    grey = images.float().mean(1)
    h, w = grey.shape[1:]
    down = grey[:, h // 2 :].mean((1, 2)) - grey[:, : h // 2].mean((1, 2))
    right = grey[:, :, w // 2 :].mean((1, 2)) - grey[:, :, : w // 2].mean((1, 2))
    return down, right


def test_augmented_training_does_not_leak_rotations(tmp_path, one_thread):
    data = write_vertical_gradients(tmp_path / "grad", n=64)
    cfg = TrainConfig(
        data=str(data), out=str(tmp_path / "run"), arch="stylegan", size=32, steps=150, batch=16,
        lr_g=0.0025, lr_d=0.0025, beta1=0.0, beta2=0.99, mirror=False, seed=0,
        aug="diffaug", aug_p=0.6, aug_ops="bgc", sample_every=0, ckpt_every=0, grid_samples=4,
        device="cpu", precision="fp32", channels_last=True,
        model={"z_dim": 32, "w_dim": 32, "mapping_layers": 2, "capacity": 1 / 16},
    )
    result = train(cfg)
    G = ckpt.load_generator(result.run_dir).G
    down, right = orientation(generate_all(G, range(64)))
    real_down, real_right = orientation(read_images(data))
    assert (real_down > 30).all() and (real_right.abs() < 1).all()  # the data: upright gradients
    upright = (down > right.abs()).float().mean().item()
    rotated = ((right.abs() > down.abs()) | (down < 0)).float().mean().item()
    assert upright >= 0.9, f"only {upright:.0%} of samples upright"
    assert rotated <= 0.05, f"{rotated:.0%} of samples rotated or upside down"


def read_images(folder) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    arrs = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2)
