"""LPIPS-VGG16 against the `lpips` package with the same weights; PPL against a hand-rolled reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from evalkit import standin_dir

from ganplug.errors import UserError
from ganplug.eval.features.lpips import LPIPSVGG
from ganplug.eval.features.weights import locate
from ganplug.eval.metrics.ppl import perceptual_path_length, slerp_keep_norm


def _ours():
    return LPIPSVGG.from_files(locate("vgg16", standin_dir(), allow_unverified=True), locate("lpips-vgg16"))


def _reference_lpips():
    import lpips

    ref = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()  # lin layers from package
    state = torch.load(standin_dir() / "vgg16-397923af.pth", weights_only=True)
    slices = [ref.net.slice1, ref.net.slice2, ref.net.slice3, ref.net.slice4, ref.net.slice5]
    for key, value in state.items():
        idx, kind = key.split(".")[1:]
        for s in slices:
            if idx in s._modules:
                getattr(s._modules[idx], kind).data.copy_(value)
    return ref


def test_lpips_equals_lpips_package_with_same_weights():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 48, 48, generator=gen) * 255
    b = (a + torch.randn(3, 3, 48, 48, generator=gen) * 30).clamp(0, 255)
    with torch.no_grad():
        ours = _ours()(a, b)
        ref = _reference_lpips()(a / 127.5 - 1, b / 127.5 - 1).flatten()
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)
    assert (ours > 0).all()


def _ref_slerp(a, b, t):
    """float64 numpy: rotate a's direction towards b's by t * angle, interpolate the norm."""
    out = []
    for x, y in zip(a, b, strict=True):
        nx, ny = np.linalg.norm(x), np.linalg.norm(y)
        ux, uy = x / nx, y / ny
        ang = np.arccos(np.clip(ux @ uy, -1, 1))
        perp = uy - (ux @ uy) * ux
        perp /= np.linalg.norm(perp)
        out.append((np.cos(t * ang) * ux + np.sin(t * ang) * perp) * (nx + (ny - nx) * t))
    return np.stack(out)


def test_slerp_keep_norm_matches_reference():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    b = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    for t in (0.0, 0.3, 1.0):
        np.testing.assert_allclose(slerp_keep_norm(a, b, torch.full((4, 1), t, dtype=torch.float64)).numpy(),
                                   _ref_slerp(a.numpy(), b.numpy(), t), atol=1e-10)


def test_ppl_on_tiny_dcgan_equals_reference(tiny_run):
    import lpips  # noqa: F401  (reference distance)

    from ganplug.checkpoint import load_generator

    G = load_generator(tiny_run).G
    n, eps = 12, 1e-4
    out = perceptual_path_length(G, _ours(), style_based=False, n=n, batch_size=n, seed=3)
    # reference: same latents, float64 slerp, the `lpips` package as distance, numpy percentiles
    gen = torch.Generator().manual_seed(3)
    z0, z1 = torch.randn(n, G.z_dim, generator=gen), torch.randn(n, G.z_dim, generator=gen)
    za = torch.from_numpy(_ref_slerp(z0.double().numpy(), z1.double().numpy(), 0.0)).float()
    zb = torch.from_numpy(_ref_slerp(z0.double().numpy(), z1.double().numpy(), eps)).float()
    with torch.no_grad():
        d = _reference_lpips()(G(za), G(zb)).flatten().double().numpy() / eps**2
    lo, hi = np.percentile(d, 1, method="lower"), np.percentile(d, 99, method="higher")
    ref = d[(d >= lo) & (d <= hi)].mean()
    assert out["space"] == "z" and out["samples"] == n
    assert out["value"] == pytest.approx(ref, rel=2e-2)  # float32 generator at a 1e-4 step
    assert out["value"] > 0
    with pytest.raises(UserError, match="W space needs a style-based"):
        perceptual_path_length(G, _ours(), style_based=False, n=4, space="w")


def test_ppl_style_based_walks_w_with_lerp():
    from ganplug.models.registry import build_models, config_from_dict

    G, _, spec = build_models("stylegan", config_from_dict("stylegan", {"size": 32, "z_dim": 16, "w_dim": 16,
                                                                         "mapping_layers": 2, "capacity": 0.05}))
    G.eval()
    lp = _ours()
    out = perceptual_path_length(G, lp, style_based=spec.style_based, n=6, batch_size=6, seed=0)
    assert out["space"] == "w"
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(6, 16, generator=gen), torch.randn(6, 16, generator=gen)
    with torch.no_grad():
        w0, w1 = G.mapping(z0), G.mapping(z1)
        a = G.synthesis(w0, noise_mode="const")
        b = G.synthesis(w0 + (w1 - w0) * 1e-4, noise_mode="const")
        d = (lp((a + 1) * 127.5, (b + 1) * 127.5) / 1e-8).double().numpy()
    lo, hi = np.percentile(d, 1, method="lower"), np.percentile(d, 99, method="higher")
    assert out["value"] == pytest.approx(d[(d >= lo) & (d <= hi)].mean(), rel=2e-2)
