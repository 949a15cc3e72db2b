"""Differentiable augmentation: identity at p=0, gradients kept, each op does what it says."""

from __future__ import annotations

import math

import pytest
import torch

from ganplug.errors import UserError
from ganplug.train.augment import OPS, PIPELINES, augment, resolve_ops


def _batch(n=6, c=3, s=8, dtype=torch.float32, seed=0):
    return torch.randn(n, c, s, s, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("name", sorted(OPS))
def test_identity_at_p_zero(name):
    x = _batch()
    assert torch.equal(OPS[name](x, 0.0, None), x)


def test_pipeline_identity_at_p_zero():
    x = _batch(c=4)
    assert torch.equal(augment(x, 0.0, PIPELINES["all"]), x)


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_keep_gradients(name):
    """With the randomness fixed, each op is a differentiable function of x: check it numerically."""
    x = _batch(n=3, s=6, dtype=torch.float64).requires_grad_(True)

    def fn(inp):
        return OPS[name](inp, 1.0, torch.Generator().manual_seed(3))

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5)
    (g,) = torch.autograd.grad(fn(x).square().sum(), x)
    assert g.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_are_per_sample(name):
    """At p=1 at least one sample changes; at p=0.5 over a big batch some samples stay exactly as they were."""
    x = _batch(n=64, c=4)
    y = OPS[name](x, 0.5, torch.Generator().manual_seed(1))
    same = (y == x).flatten(1).all(1)
    assert 0 < int(same.sum()) < 64
    assert y.shape == x.shape


def test_rot90_outputs_are_rotations_in_the_right_proportions():
    x = _batch(n=4000, c=1, s=4)
    p = 0.6
    y = OPS["rot90"](x, p, torch.Generator().manual_seed(0))
    counts = torch.zeros(4)
    for k in range(4):
        counts[k] = (torch.rot90(x, k, dims=(2, 3)) == y).flatten(1).all(1).sum()
    assert counts.sum() == 4000  # every output is exactly one rotation of its input
    freq = counts / 4000
    want = torch.tensor([1 - 3 * p / 4, p / 4, p / 4, p / 4])
    assert torch.allclose(freq, want, atol=0.03)


def test_translation_is_an_integer_shift_with_reflection():
    x = torch.arange(64.0).reshape(1, 1, 8, 8).repeat(50, 1, 1, 1)
    y = OPS["translation"](x, 1.0, torch.Generator().manual_seed(0))
    # Interior: y[i, j] = x[i - ty, j - tx] for one (ty, tx) per sample with |t| <= 1 (1/8 of 8 px).
    shifts = set()
    for n in range(50):
        found = [(ty, tx) for ty in (-1, 0, 1) for tx in (-1, 0, 1)
                 if torch.equal(y[n, 0, 2:6, 2:6], x[n, 0, 2 - ty:6 - ty, 2 - tx:6 - tx])]
        assert len(found) == 1
        shifts.add(found[0])
        assert set(y[n].flatten().tolist()) <= set(x[n].flatten().tolist())
    assert len(shifts) >= 5


def test_colour_ops_change_rgb_only_and_as_described():
    x = _batch(n=200, c=4, s=4)
    g = torch.Generator().manual_seed(0)
    b = OPS["brightness"](x, 1.0, g)
    torch.testing.assert_close(b[:, 3], x[:, 3])
    d = (b[:, :3] - x[:, :3]).flatten(1)
    assert (d.max(1).values - d.min(1).values).abs().max() < 1e-5  # one offset per image
    assert 0.15 < d[:, 0].std() < 0.25  # std 0.2
    c = OPS["contrast"](x, 1.0, g)
    torch.testing.assert_close(c[:, :3].mean(dim=(1, 2, 3)), x[:, :3].mean(dim=(1, 2, 3)), rtol=1e-4, atol=1e-5)
    s = OPS["saturation"](x, 1.0, g)
    torch.testing.assert_close(s[:, :3].mean(1), x[:, :3].mean(1), rtol=1e-4, atol=1e-5)  # grey kept
    ratio = (s[:, 0] - s[:, :3].mean(1)) / (x[:, 0] - x[:, :3].mean(1))
    logs = ratio.flatten(1).median(1).values.log()
    assert abs(logs.std().item() - math.log(2)) < 0.15


def test_cutout_zeroes_a_square_of_half_the_size():
    x = torch.ones(100, 3, 16, 16)
    y = OPS["cutout"](x, 1.0, torch.Generator().manual_seed(0))
    zeros = (y[:, 0] == 0).flatten(1).sum(1)
    assert zeros.max() == 64  # 8 x 8 when the square is fully inside
    assert zeros.min() >= 16  # at least a quarter of it even at a corner
    assert (y[:, 0] == y[:, 2]).all()


def test_cutout_on_rgba_hides_colour_but_never_makes_holes():
    """A transparent box in D's input is what G would learn to draw into cut-outs: alpha must not be cut."""
    x = torch.ones(100, 4, 16, 16)
    y = OPS["cutout"](x, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(y[:, 3], x[:, 3])
    assert ((y[:, :3] == 0).flatten(1).sum(1) >= 3 * 16).all()  # the colour is still cut, in all three


def test_scale_keeps_the_centre_and_zooms():
    x = torch.zeros(1, 1, 32, 32)
    x[..., 12:20, 12:20] = 1.0
    xs = x.repeat(200, 1, 1, 1)
    y = OPS["scale"](xs, 1.0, torch.Generator().manual_seed(0))
    area = y.flatten(1).sum(1)
    assert area.min() < 64 * 0.85 and area.max() > 64 * 1.15  # zoomed in and out
    assert (y[:, 0, 15:17, 15:17] > 0.99).all()  # centre stays put


def test_channels_last_bf16_inputs_work():
    x = _batch(n=4, s=8).contiguous(memory_format=torch.channels_last).to(torch.bfloat16)
    y = augment(x, 1.0, PIPELINES["all"], torch.Generator().manual_seed(0))
    assert y.dtype == torch.bfloat16 and y.shape == x.shape


def test_resolve_ops():
    assert resolve_ops("bgc") == PIPELINES["bgc"]
    assert resolve_ops("translation, cutout") == ("translation", "cutout")
    with pytest.raises(UserError, match="rotate"):
        resolve_ops("translation,rotate")
