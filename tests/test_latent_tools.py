"""Latent tools: style-mixing grids and projection on tiny models (projection loss must fall)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganplug.errors import UserError
from ganplug.latent import load_target, parse_styles, project, render_projection, style_mixing_grid
from ganplug.models import build_models
from ganplug.models.dcgan import DCGANConfig
from ganplug.models.stylegan import StyleGANConfig
from ganplug.sampling import to_uint8, z_from_seeds


@pytest.fixture(scope="module")
def tiny_g():
    torch.manual_seed(0)
    G, _, _ = build_models("stylegan", StyleGANConfig(size=32, z_dim=16, w_dim=16, mapping_layers=2, capacity=1 / 32))
    for m in G.modules():  # a live noise path, so that noise maps matter
        if hasattr(m, "noise_strength"):
            torch.nn.init.constant_(m.noise_strength, 0.3)
    return G.eval().requires_grad_(False)


def test_style_mixing_grid_cells(tiny_g):
    G = tiny_g
    rows, cols, styles = [1, 2], [3, 4, 5], [0, 1, 2]
    cells = style_mixing_grid(G, rows, cols, styles)
    assert cells.shape == ((len(rows) + 1) * (len(cols) + 1), 3, 32, 32) and cells.dtype == torch.uint8
    assert (cells[0] == 255).all()  # top-left blank
    with torch.no_grad():
        w_r = G.mapping(z_from_seeds(rows, 16))
        w_c = G.mapping(z_from_seeds(cols, 16))
        torch.testing.assert_close(cells[1:4], to_uint8(G.synthesis(w_c)), atol=1, rtol=0)  # header row
        for r in range(2):
            base = (r + 1) * 4
            torch.testing.assert_close(cells[base], to_uint8(G.synthesis(w_r[r : r + 1]))[0], atol=1, rtol=0)
            for c in range(3):
                w = w_c[c : c + 1].clone()
                w[:, styles] = w_r[r : r + 1, styles]
                torch.testing.assert_close(cells[base + 1 + c], to_uint8(G.synthesis(w))[0], atol=1, rtol=0)


def test_parse_styles():
    assert parse_styles("0-2,5", 8) == [0, 1, 2, 5]
    with pytest.raises(UserError, match="out of range"):
        parse_styles("0-8", 8)
    with pytest.raises(UserError, match="cannot read"):
        parse_styles("a-b", 8)


def test_style_mixing_refuses_dcgan():
    G, _, _ = build_models("dcgan", DCGANConfig(size=32, base_channels=8))
    with pytest.raises(UserError, match="style-based"):
        style_mixing_grid(G, [1], [2])


def test_projection_loss_falls_and_latent_regenerates_the_image(tiny_g):
    G = tiny_g
    with torch.no_grad():
        target = to_uint8(G(z_from_seeds([7], 16)))[0]
    result = project(G, target, steps=30, loss="pixel", frame_every=10)
    assert result.loss_name == "pixel+ms-ssim" and "as asked" in result.loss_note
    assert result.space == "w" and result.latent.shape == (G.num_ws, 16)
    assert np.mean(result.losses[-5:]) < 0.7 * result.losses[0]
    assert len(result.frames) == 4 and result.noise  # frames at steps 0, 10, 20 and 29
    # What is saved is enough to get the image back, and G itself was not touched.
    again = to_uint8(render_projection(G, result.latent, "w", result.noise))[0]
    assert torch.equal(again, result.image)
    assert not any(b.requires_grad for b in G.buffers())


def test_projection_of_a_dcgan_works_in_z():
    torch.manual_seed(1)
    G, _, _ = build_models("dcgan", DCGANConfig(size=32, base_channels=8, z_dim=8))
    with torch.no_grad():  # untrained DCGAN weights (std 0.02) barely depend on z; make them responsive
        for m in G.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                m.weight.normal_(0, 0.3)
    G.eval()
    with torch.no_grad():
        target = to_uint8(G(torch.randn(1, 8)))[0]
    result = project(G, target, steps=30, loss="pixel")
    assert result.space == "z" and result.latent.shape == (8,)
    assert np.mean(result.losses[-5:]) < result.losses[0]


def _standin_lpips_dir(tmp_path):
    """VGG16 stand-in (real format, random weights) and LPIPS linear layers of the right shapes."""
    from ganplug.eval.features.standin import save_standin_vgg16

    save_standin_vgg16(tmp_path / "vgg16-397923af.pth", seed=0)
    gen = torch.Generator().manual_seed(0)
    lins = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen)
            for i, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(lins, tmp_path / "vgg.pth")
    return tmp_path


def test_projection_uses_vgg_when_weights_are_present(tiny_g, tmp_path, monkeypatch):
    weights = _standin_lpips_dir(tmp_path)
    monkeypatch.setenv("GANPLUG_WEIGHTS", str(tmp_path / "elsewhere"))
    G = tiny_g
    with torch.no_grad():
        target = to_uint8(G(z_from_seeds([3], 16)))[0]
    result = project(G, target, steps=15, loss="auto", weights_dir=str(weights), allow_unverified_weights=True)
    assert result.loss_name == "lpips-vgg16" and "unverified" in result.loss_note
    assert np.mean(result.losses[-5:]) < result.losses[0]


def test_projection_falls_back_and_says_why(tiny_g, tmp_path, monkeypatch):
    monkeypatch.setenv("GANPLUG_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = torch.zeros(3, 32, 32, dtype=torch.uint8)
    result = project(tiny_g, target, steps=2, loss="auto", weights_dir=str(tmp_path))
    assert result.loss_name == "pixel+ms-ssim"
    assert "not found" in result.loss_note
    with pytest.raises(UserError, match="vgg16-397923af.pth"):
        project(tiny_g, target, steps=2, loss="vgg", weights_dir=str(tmp_path))


def test_load_target_resizes_with_a_notice_and_refuses_non_images(tmp_path):
    Image.new("RGBA", (64, 48), (255, 0, 0, 128)).save(tmp_path / "a.png")
    t = load_target(tmp_path / "a.png", 32, 3)
    assert t.image.shape == (3, 32, 32) and t.image.dtype == torch.uint8
    assert t.notices and "resized to 32x32" in t.notices[0] and "square" in t.notices[0]
    assert load_target(tmp_path / "a.png", 32, 4).image.shape == (4, 32, 32)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match="not an image"):
        load_target(tmp_path / "notes.txt", 32, 3)
    with pytest.raises(UserError, match="does not exist"):
        load_target(tmp_path / "missing.png", 32, 3)
