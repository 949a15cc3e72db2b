"""Per-seed latents, slerp against a float64 reference, seed parsing and grid layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ganplug.errors import UserError
from ganplug.models import build_models, config_from_dict
from ganplug.sampling import (
    generate_all,
    interpolation_latents,
    make_grid,
    parse_seeds,
    slerp,
    to_uint8,
    z_from_seeds,
)


def test_seed_gives_same_image_at_any_batch_size():
    G, _, _ = build_models("dcgan", config_from_dict("dcgan", {"size": 32, "base_channels": 8}))
    G.eval()
    seeds = [5, 9, 11, 40, 41]
    together = generate_all(G, seeds, batch_size=5)
    one_by_one = generate_all(G, seeds, batch_size=1)
    assert torch.equal(together, one_by_one)
    assert torch.equal(generate_all(G, [11]), together[2:3])
    assert not torch.equal(together[0], together[1])


def test_z_is_standard_normal_and_seeded():
    z = z_from_seeds(range(2000), 64)
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01
    assert torch.equal(z_from_seeds([3], 64)[0], z[3])


def _slerp_reference(a, b, t):
    """Textbook slerp on unit vectors in float64, with linearly interpolated norms."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    ua, ub = a / na, b / nb
    om = math.acos(np.clip(ua @ ub, -1, 1))
    u = (math.sin((1 - t) * om) * ua + math.sin(t * om) * ub) / math.sin(om)
    return u * ((1 - t) * na + t * nb)


def test_slerp_matches_reference():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(32, generator=g, dtype=torch.float64), torch.randn(32, generator=g, dtype=torch.float64)
    for t in (0.0, 0.25, 0.5, 0.9, 1.0):
        np.testing.assert_allclose(slerp(a, b, t).numpy(), _slerp_reference(a, b, t), rtol=1e-6, atol=1e-6)


def test_interpolation_passes_through_every_seed():
    frames = interpolation_latents([3, 7, 12], 9, 16)
    z = z_from_seeds([3, 7, 12], 16)
    assert frames.shape == (9, 16)
    torch.testing.assert_close(frames[0], z[0])
    torch.testing.assert_close(frames[4], z[1])
    torch.testing.assert_close(frames[8], z[2])
    with pytest.raises(UserError):
        interpolation_latents([3], 9, 16)


def test_parse_seeds():
    assert parse_seeds("3,7,12") == [3, 7, 12]
    assert parse_seeds("0-3,9") == [0, 1, 2, 3, 9]
    for bad in ("a,b", "5-2", "", "-3"):
        with pytest.raises(UserError):
            parse_seeds(bad)


def test_to_uint8_rounds_and_clamps():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])
    assert to_uint8(x).tolist() == [0, 0, 128, 255, 255]  # 0 -> 127.5 rounds half to even = 128


def test_grid_places_images_row_major():
    imgs = torch.zeros(5, 3, 4, 4, dtype=torch.uint8)
    for i in range(5):
        imgs[i] = i * 40
    grid = np.asarray(make_grid(imgs, nrow=3, pad=1, fill=255))
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    assert grid[1, 1, 0] == 0 and grid[1, 6, 0] == 40 and grid[1, 11, 0] == 80
    assert grid[6, 1, 0] == 120 and grid[6, 6, 0] == 160
    assert grid[6, 11, 0] == 255  # empty cell stays background
