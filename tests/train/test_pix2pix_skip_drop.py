"""pix2pix's `skip_drop` (issue 19): the K outermost U-Net skip connections removed, so the decoder levels
nearest the output see only the upsampled path and a translation whose parts move (a mirror, a turn) is
not pulled towards copying its input. Shapes at every size, that K concatenations really go, that old
configs load as the paper's U-Net, and the CLI flag as a user meets it."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from torch import nn

from ganplug import checkpoint as ckpt
from ganplug.cli.app import main
from ganplug.errors import UserError
from ganplug.models import config_from_dict
from ganplug.models.pix2pix import Pix2PixConfig, build
from tests.conftest import write_shapes


def up_in_channels(G: nn.Module) -> list[int]:
    """Input channels of each decoder level's transposed convolution, outermost (up[0]) first."""
    return [next(m for m in layer if isinstance(m, nn.ConvTranspose2d)).in_channels for layer in G.up]


@pytest.mark.parametrize("size", [32, 64, 128, 256, 512])
def test_skip_drop_shapes_at_every_size(size):
    """Every K from 0 to levels - 1 builds, keeps the output shape, and narrows exactly the K outermost levels."""
    levels = Pix2PixConfig(size=size).levels
    for k in range(levels):
        cfg = Pix2PixConfig(size=size, base_channels=2, max_channels=8, skip_drop=k, dense_bottleneck=1 if k else 0)
        G, _ = build(cfg)
        widths = [cfg.width(i) if i < k or i == levels - 1 else 2 * cfg.width(i) for i in range(levels)]
        assert up_in_channels(G) == widths, (size, k)
        with torch.no_grad():
            y = G(torch.randn(1, 3, size, size))
        assert y.shape == (1, 3, size, size) and y.abs().max() <= 1, (size, k)


def test_skip_drop_removes_k_concatenations():
    """Counted at run time: K = 0..levels-1 leaves levels - 1 - K concatenations, and the K outermost decoder
    levels receive only the upsampled path (width(i) channels, not 2 x width(i))."""
    for k in range(5):
        cfg = Pix2PixConfig(size=32, base_channels=4, skip_drop=k, dropout=0.0)
        G, _ = build(cfg)
        seen: dict[int, int] = {}
        for i, layer in enumerate(G.up):
            layer.register_forward_hook(lambda m, inp, out, i=i, seen=seen: seen.update({i: inp[0].shape[1]}))
        with mock.patch("ganplug.models.pix2pix.torch.cat", wraps=torch.cat) as cat, torch.no_grad():
            G(torch.randn(1, 3, 32, 32))
        assert cat.call_count == 4 - k, k
        assert seen == {i: cfg.width(i) if i < k or i == 4 else 2 * cfg.width(i) for i in range(5)}, k


def test_skip_drop_all_but_the_bottleneck_is_an_encoder_decoder():
    """K = levels - 1: the output depends on the input only through the 1x1 code (change the code's
    channels to zero and every input gives the same output)."""
    cfg = Pix2PixConfig(size=32, base_channels=4, skip_drop=4, dropout=0.0)
    G, _ = build(cfg)
    G.eval()
    G.down[-1].register_forward_hook(lambda m, inp, out: torch.zeros_like(out))
    with torch.no_grad():
        a, b = G(torch.randn(1, 3, 32, 32)), G(torch.randn(1, 3, 32, 32))
    assert torch.equal(a, b)
    plain, _ = build(Pix2PixConfig(size=32, base_channels=4, dropout=0.0))
    plain.eval()
    plain.down[-1].register_forward_hook(lambda m, inp, out: torch.zeros_like(out))
    with torch.no_grad():
        assert not torch.equal(plain(torch.randn(1, 3, 32, 32)), plain(torch.randn(1, 3, 32, 32)))


def test_bad_skip_drop_is_a_user_error():
    for bad in (dict(skip_drop=-1), dict(skip_drop=5), dict(size=64, skip_drop=6), dict(skip_drop=1.0),
                dict(skip_drop=True), dict(size=256, skip_drop=8)):
        with pytest.raises(UserError, match="skip_drop"):
            build(Pix2PixConfig(**{"size": 32, "base_channels": 2, **bad}))
    build(Pix2PixConfig(size=64, base_channels=2, skip_drop=5))  # levels - 1 is the most there is


def test_configs_saved_before_skip_drop_load_as_the_papers_unet():
    """A checkpoint's model config from before the option has no skip_drop key: it builds the plain U-Net,
    with the same weight names and shapes."""
    saved = {"size": 32, "channels": 3, "in_channels": 3, "base_channels": 4, "max_channels": 512, "dropout": 0.5,
             "d_layers": 3, "dense_bottleneck": 0}
    cfg = config_from_dict("pix2pix", saved)
    assert cfg.skip_drop == 0
    old = {k: v.shape for k, v in build(cfg)[0].state_dict().items()}
    new = {k: v.shape for k, v in build(Pix2PixConfig(size=32, base_channels=4))[0].state_dict().items()}
    assert old == new


def test_skip_drop_is_saved_with_the_model_and_translate_uses_it(tmp_path, one_thread):
    write_shapes(tmp_path / "src" / "a", 4, size=32, seed=0)
    write_shapes(tmp_path / "src" / "b", 4, size=32, seed=0)
    assert main(["prep", str(tmp_path / "src"), str(tmp_path / "data"), "--size", "32", "--pairs", "a,b"]) == 0
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "data"), "--arch", "pix2pix", "--out", str(run), "--steps", "1",
                 "--batch", "2", "--base-channels", "4", "--skip-drop", "3", "--device", "cpu"]) == 0
    model = ckpt.load_generator(run)
    assert model.G.cfg.skip_drop == 3 and up_in_channels(model.G)[:3] == [4, 8, 16]
    src = next((tmp_path / "src" / "a").iterdir())
    assert main(["translate", str(run), str(src), "--out", str(tmp_path / "out.png"), "--device", "cpu"]) == 0
    assert (tmp_path / "out.png").exists()


def test_skip_drop_is_refused_for_other_families_and_checked_for_pix2pix(tmp_path, capsys):
    imgs = write_shapes(tmp_path / "imgs", 4, size=32)
    for arch in ("dcgan", "stylegan"):
        code = main(["train", str(imgs), "--out", str(tmp_path / "r"), "--arch", arch, "--skip-drop", "1",
                     "--dry-run"])
        captured = capsys.readouterr()
        out = captured.out + captured.err
        assert code == 2 and f"--skip-drop does nothing for --arch {arch}" in out and "pix2pix" in out, out
    code = main(["train", str(imgs), "--out", str(tmp_path / "r"), "--arch", "pix2pix", "--size", "32",
                 "--skip-drop", "5", "--dry-run"])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 2 and "skip_drop must be a whole number from 0 to 4 at 32 px" in out and "Traceback" not in out
