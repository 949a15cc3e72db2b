"""Style mixing on a tiny StyleGAN: coarse styles from one latent, fine styles from another."""

from __future__ import annotations

import torch

from ganplug.models.stylegan import StyleGANConfig, build, mix_styles


def _tiny():
    torch.manual_seed(0)
    G, _ = build(StyleGANConfig(size=32, z_dim=16, w_dim=32, mapping_layers=2, capacity=1 / 32))
    return G.eval()


def _features_at(G, ws, res):
    """Run synthesis and capture the feature map leaving block b{res}."""
    got = {}

    def hook(module, inputs, outputs):  # returns None, so the block's output is left as it is
        got["x"] = outputs[0]

    handle = G.synthesis.blocks[f"b{res}"].register_forward_hook(hook)
    try:
        img = G.synthesis(ws)
    finally:
        handle.remove()
    return got["x"], img


def test_mix_styles_picks_layers():
    a = torch.zeros(3, 8, 4)
    b = torch.ones(3, 8, 4)
    mixed = mix_styles(a, b, 3)
    assert (mixed[:, :3] == 0).all() and (mixed[:, 3:] == 1).all()
    per_sample = mix_styles(a, b, torch.tensor([0, 4, 8]))
    assert per_sample[0].eq(1).all() and per_sample[2].eq(0).all()
    assert per_sample[1, :4].eq(0).all() and per_sample[1, 4:].eq(1).all()


def test_coarse_styles_fix_the_low_resolution_features():
    G = _tiny()
    with torch.no_grad():
        ws_a = G.mapping(torch.randn(2, 16))
        ws_b = G.mapping(torch.randn(2, 16))
        # b4 uses style inputs 0 (conv) and 1 (toRGB); b8 uses 1 and 2 for its convs.
        mixed = mix_styles(ws_a, ws_b, 3)
        xa8, img_a = _features_at(G, ws_a, 8)
        xb8, img_b = _features_at(G, ws_b, 8)
        xm8, img_m = _features_at(G, mixed, 8)
    torch.testing.assert_close(xm8, xa8)  # everything up to 8x8 follows A
    assert (xm8 - xb8).abs().max() > 1e-3
    # ...but the image is not A's: the fine layers came from B
    assert (img_m - img_a).abs().mean() > 1e-4
    assert (img_m - img_b).abs().mean() > 1e-4


def test_mixing_extremes_reproduce_each_source():
    G = _tiny()
    with torch.no_grad():
        ws_a = G.mapping(torch.randn(2, 16))
        ws_b = G.mapping(torch.randn(2, 16))
        torch.testing.assert_close(G.synthesis(mix_styles(ws_a, ws_b, G.num_ws)), G.synthesis(ws_a))
        torch.testing.assert_close(G.synthesis(mix_styles(ws_a, ws_b, 0)), G.synthesis(ws_b))
