"""ganplug.ops: the one place each family's choice is made (morph space, style mixing), and tileable
generation that stays inside its own call."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ganplug import ops
from ganplug.checkpoint import LoadedModel
from ganplug.device import make_runtime
from ganplug.errors import UserError
from ganplug.models import build_models, config_from_dict
from ganplug.models.stylegan import mix_styles
from ganplug.sampling import lerp, to_uint8, z_from_seeds

RT = make_runtime("cpu", "fp32", channels_last=False)


def _model(arch: str, **cfg) -> LoadedModel:
    torch.manual_seed(0)
    config = config_from_dict(arch, cfg)
    G, _, spec = build_models(arch, config)
    for m in G.modules():  # a live noise path, so noise modes differ
        if hasattr(m, "noise_strength"):
            torch.nn.init.constant_(m.noise_strength, 0.3)
    return LoadedModel(G=G.eval().requires_grad_(False), spec=spec, meta={}, path=Path(f"{arch}.safetensors"))


@pytest.fixture(scope="module")
def style() -> LoadedModel:
    return _model("stylegan", size=32, z_dim=16, w_dim=16, mapping_layers=2, capacity=0.05, channel_max=32)


@pytest.fixture(scope="module")
def dcgan() -> LoadedModel:
    return _model("dcgan", size=32, base_channels=8, z_dim=16)


def test_style_interpolation_lerps_in_w(style):
    got = ops.interpolate(style, RT, [1, 2], 3, truncation=0.7).images
    G = style.G
    with torch.no_grad():
        ws = G.mapping(z_from_seeds([1, 2], 16), truncation=0.7)
        mid = to_uint8(G.synthesis(lerp(ws[0:1], ws[1:2], 0.5), noise_mode="const"))
    assert torch.equal(got[1:2], mid)
    ends = ops.generate(style, RT, [1, 2], truncation=0.7).images  # and it starts and ends at the seeds
    assert (got[[0, 2]].int() - ends.int()).abs().max() <= 1


def test_dcgan_interpolation_slerps_in_z(dcgan):
    from ganplug.sampling import interpolation_latents

    got = ops.interpolate(dcgan, RT, [1, 2, 3], 5).images
    with torch.no_grad():
        want = to_uint8(dcgan.G(interpolation_latents([1, 2, 3], 5, 16)))
    assert torch.equal(got, want)


def test_mix_of_a_prefix_equals_trainings_crossover(style):
    """`styles` 0..k-1 is exactly models.stylegan.mix_styles at cutoff k (the training-time mixing)."""
    result = ops.mix(style, RT, [1, 2], [3], "0-2")
    G = style.G
    with torch.no_grad():
        rows, cols = G.mapping(z_from_seeds([1, 2], 16)), G.mapping(z_from_seeds([3], 16))
        want = to_uint8(G.synthesis(mix_styles(rows, cols.expand_as(rows), 3), noise_mode="const"))
    assert torch.equal(result.images, want)
    assert result.labels == [{"row_seed": 1, "col_seed": 3}, {"row_seed": 2, "col_seed": 3}]
    assert result.params["styles"] == [0, 1, 2]
    assert ops.mix_grid(result).shape[0] == (2 + 1) * (1 + 1)


def test_family_checks_are_user_errors(dcgan, style):
    with pytest.raises(UserError, match="style-based"):
        ops.mix(dcgan, RT, [1], [2])
    with pytest.raises(UserError, match="noise"):
        ops.generate(dcgan, RT, [1], noise="random")
    with pytest.raises(UserError, match="out of range"):
        ops.mix(style, RT, [1], [2], [0, 99])
    with pytest.raises(UserError, match="pix2pix"):
        ops.translate(dcgan, RT, torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_variations_at_zero_strength_are_the_seed(dcgan):
    base = ops.generate(dcgan, RT, [21]).images
    zero = ops.variations(dcgan, RT, 21, 2, strength=0.0).images
    assert torch.equal(zero, base.expand_as(zero))


def test_tileable_call_leaves_other_threads_and_models_alone(dcgan, style):
    """While one thread is inside a tileable generation, F is untouched and another thread's plain
    generation of another model gives exactly its usual pixels."""
    plain = ops.generate(dcgan, RT, [4, 5]).images
    inside, release = threading.Event(), threading.Event()
    tiled: dict[str, torch.Tensor] = {}

    def slow_synthesis(ws: torch.Tensor) -> torch.Tensor:
        inside.set()  # now inside tileable(): hold it open while the other thread generates
        release.wait(10)
        return style.G.synthesis(ws, noise_mode="const")

    def tileable_job() -> None:
        ws = style.G.mapping(z_from_seeds([1], 16))
        tiled["img"] = ops.render(slow_synthesis, ws, RT, tileable=True)

    worker = threading.Thread(target=tileable_job)
    worker.start()
    try:
        assert inside.wait(10)
        assert F.conv2d is torch.conv2d and F.conv_transpose2d is torch.conv_transpose2d
        assert torch.equal(ops.generate(dcgan, RT, [4, 5]).images, plain)
    finally:
        release.set()
        worker.join()
    assert torch.equal(ops.generate(dcgan, RT, [4, 5]).images, plain)
    seamless = ops.render(lambda w: style.G.synthesis(w, noise_mode="const"),
                          style.G.mapping(z_from_seeds([1], 16)), RT, tileable=True)
    assert torch.equal(tiled["img"], seamless)  # and the held call really was tileable
    assert not torch.equal(seamless, ops.generate(style, RT, [1]).images)


def test_composite_is_trainings_formula():
    """One compositing: the array form gives exactly what prep's apply_background gives each image."""
    import numpy as np
    from PIL import Image

    from ganplug.data.decode import apply_background

    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (2, 3, 8, 8, 4), dtype=np.uint8)
    got = ops.composite(rgba, (10, 200, 30))
    assert got.shape == (2, 3, 8, 8, 3) and got.dtype == np.uint8
    want = np.asarray(apply_background(Image.fromarray(rgba[1, 2], "RGBA"), (10, 200, 30), False))
    assert np.array_equal(got[1, 2], want)
