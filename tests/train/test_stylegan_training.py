"""The StyleGAN2 training step: lazy regularisation, style mixing, ADA in the loop, resume and transfer."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from ganplug import checkpoint as ckpt
from ganplug.device import make_runtime
from ganplug.models.stylegan import StyleGANConfig, build
from ganplug.train import stylegan_loss
from ganplug.train.config import TrainConfig
from ganplug.train.loop import train
from ganplug.train.stylegan_loss import StyleGANStep, auto_r1_gamma, lazy_correction

TINY_MODEL = {"z_dim": 16, "w_dim": 16, "mapping_layers": 2, "capacity": 1 / 32}


def _cfg(**kw) -> TrainConfig:
    values = dict(data="unused", out="unused", arch="stylegan", size=32, batch=4, lr_g=0.002, lr_d=0.002,
                  beta1=0.0, beta2=0.99, device="cpu", precision="fp32", channels_last=False, model=TINY_MODEL)
    values.update(kw)
    return TrainConfig(**values)


def _step(cfg: TrainConfig, D: nn.Module | None = None) -> StyleGANStep:
    torch.manual_seed(0)
    G, D0 = build(StyleGANConfig(size=cfg.size, **TINY_MODEL))
    D = D if D is not None else D0
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    return StyleGANStep(G, D, opt_G, opt_D, cfg, make_runtime("cpu", "fp32", channels_last=False))


def _reals(n=4):
    return lambda: torch.rand(n, 3, 32, 32) * 2 - 1


class ConstantD(nn.Module):
    """A 'discriminator' that always gives the same verdict (its output ignores the image)."""

    def __init__(self, logit: float):
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(logit))

    def forward(self, x):
        return self.logit.expand(x.shape[0]) + 0.0 * x.flatten(1).sum(1)


def test_lazy_regularisation_corrects_adam():
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=0.002, betas=(0.0, 0.99))
    lazy_correction(opt, 16)
    c = 16 / 17
    assert opt.param_groups[0]["lr"] == pytest.approx(0.002 * c)
    assert opt.param_groups[0]["betas"] == pytest.approx((0.0, 0.99**c))
    s = _step(_cfg(r1_gamma=1.0, r1_interval=16, pl_weight=0.0))
    assert s.opt_D.param_groups[0]["lr"] == pytest.approx(0.002 * c)
    assert s.opt_G.param_groups[0]["lr"] == pytest.approx(0.002)  # no path length: G untouched
    assert auto_r1_gamma(64, 32) == pytest.approx(0.0002 * 64 * 64 / 32)


def test_r1_runs_every_interval_and_pl_every_fourth_step():
    s = _step(_cfg(r1_gamma=1.0, r1_interval=2, pl_weight=2.0))
    seen = [s(_reals(), k) for k in range(5)]
    assert ["loss/r1" in st for st in seen] == [True, False, True, False, True]
    assert ["loss/pl" in st for st in seen] == [True, False, False, False, True]
    assert all(torch.isfinite(torch.tensor(list(st.values()))).all() for st in seen)
    assert s.state_dict()["pl_mean"] > 0


def test_style_mixing_probability():
    mixed = _step(_cfg(style_mixing=1.0)).mapped_ws(16)
    assert ((mixed[:, 0] - mixed[:, -1]).abs().amax(1) > 0).all()  # every sample takes a second latent
    plain = _step(_cfg(style_mixing=0.0)).mapped_ws(16)
    assert torch.equal(plain, plain[:, :1].expand_as(plain))


def test_w_avg_is_tracked_during_training():
    s = _step(_cfg())
    assert s.G.w_avg.abs().sum() == 0
    s(_reals(), 0)
    assert s.G.w_avg.abs().sum() > 0


def test_ada_p_rises_when_d_always_says_real():
    s = _step(_cfg(aug="ada", ada_kimg=1.0, r1_gamma=0.0), D=ConstantD(5.0))
    ps = []
    for k in range(8):
        s(_reals(), k)
        ps.append(s.aug_p)
    # ADA adjusts every 4 D updates by batch * 4 / (ada_kimg * 1000) = 0.016
    assert ps == pytest.approx([0, 0, 0, 0.016, 0.016, 0.016, 0.016, 0.032])
    s_fake = _step(_cfg(aug="ada", ada_kimg=1.0, r1_gamma=0.0), D=ConstantD(-5.0))
    for k in range(8):
        s_fake(_reals(), k)
    assert s_fake.aug_p == 0.0


def test_fixed_augmentation_reaches_d_for_reals_and_fakes():
    seen = []

    class Spy(ConstantD):
        def forward(self, x):
            seen.append(x.detach().clone())
            return super().forward(x)

    s = _step(_cfg(aug="diffaug", aug_p=1.0, aug_ops="cutout", r1_gamma=0.0), D=Spy(0.0))
    s(lambda: torch.ones(4, 3, 32, 32), 0)
    # the D main pass sees fakes then reals: the reals (all ones) come out with a zeroed square
    real_view = seen[1]
    assert (real_view == 0).flatten(1).any(1).all()


# ------------------------------------------------------------------------------ end-to-end with the loop


@pytest.fixture(scope="module")
def grad_dir(tmp_path_factory):
    from tests.train.stylegan_data import write_vertical_gradients

    return write_vertical_gradients(tmp_path_factory.mktemp("vgrad") / "imgs", n=24)


def _run_cfg(data, out, **kw) -> TrainConfig:
    values = dict(data=str(data), out=str(out), arch="stylegan", size=32, steps=8, batch=4, lr_g=0.002, lr_d=0.002,
                  beta1=0.0, beta2=0.99, sample_every=0, ckpt_every=4, grid_samples=4, device="cpu",
                  precision="fp32", channels_last=False, aug="ada", ada_kimg=0.2, r1_interval=4, pl_weight=1.0,
                  model=TINY_MODEL)
    values.update(kw)
    return TrainConfig(**values)


def test_resume_restores_ada_state_exactly(grad_dir, tmp_path, monkeypatch, one_thread):
    # Start ADA at p = 0.3 rather than 0, so that p is non-zero and moving whatever this tiny D says.
    monkeypatch.setattr(stylegan_loss, "AdaController", functools.partial(stylegan_loss.AdaController, p=0.3))
    # Stop at step 3: mid-way through ADA's 4-update interval, so the accumulated signs must survive too.
    straight = train(_run_cfg(grad_dir, tmp_path / "straight", steps=6, ckpt_every=3))
    first = train(_run_cfg(grad_dir, tmp_path / "resumed", steps=3, ckpt_every=3))
    assert first.step == 3
    resumed = train(_run_cfg(grad_dir, tmp_path / "resumed", steps=6, ckpt_every=3), resume=True)
    assert resumed.step == 6
    meta_a, meta_b = ckpt.read_meta(straight.checkpoint), ckpt.read_meta(resumed.checkpoint)
    ada = meta_a["step_state"]["ada"]
    assert ada["p"] not in (0.0, 0.3) and ada["updates"] == 2  # p moved and signs are pending
    assert meta_a["step_state"]["pl_mean"] > 0
    assert meta_b["step_state"] == meta_a["step_state"]  # ADA p and counters, path-length mean
    assert meta_b["nimg"] == meta_a["nimg"] == 6 * 4
    a = ckpt.read_tensors(straight.checkpoint, ("G_ema.",))
    b = ckpt.read_tensors(resumed.checkpoint, ("G_ema.",))
    for k in a:
        torch.testing.assert_close(b[k], a[k], msg=k)


def test_transfer_init_from_another_resolution(grad_dir, tmp_path, one_thread):
    src = train(_run_cfg(grad_dir, tmp_path / "src32", steps=2, ckpt_every=0))
    # A negligible learning rate: after one step the 64 px model still holds what it was initialised with.
    dst = train(_run_cfg(grad_dir, tmp_path / "dst64", size=64, steps=1, ckpt_every=0, lr_g=1e-12, lr_d=1e-12,
                         init_from=str(src.run_dir)))
    a = ckpt.read_tensors(src.checkpoint, ("G.", "D."))
    b = ckpt.read_tensors(dst.checkpoint, ("G.", "D."))
    shared_g = [k for k in a if k.startswith("G.") and k in b and not k.endswith("w_avg")]
    assert any(".b32." in k for k in shared_g) and any("mapping" in k for k in shared_g)
    for k in shared_g:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0, msg=k)
    assert any(k.startswith("G.synthesis.blocks.b64.") for k in b)  # the new top block is fresh
    assert not any(k.startswith("G.synthesis.blocks.b64.") for k in a)
    # D: the 32, 16 and 8 px blocks carry over (the 32 px block without its fromRGB, which moved up)
    for k in ("D.blocks.b32.conv0.weight", "D.blocks.b16.conv1.weight", "D.epilogue.fc.weight"):
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0, msg=k)
    assert "D.blocks.b32.fromrgb.weight" not in b


def test_g_update_leaves_d_trainability_as_it_was():
    s = _step(_cfg(r1_gamma=0.0))
    s.D.blocks[0].requires_grad_(False)  # Freeze-D on the first block
    frozen = [n for n, p in s.D.named_parameters() if not p.requires_grad]
    before = {n: p.detach().clone() for n, p in s.D.named_parameters()}
    s(_reals(), 0)
    assert [n for n, p in s.D.named_parameters() if not p.requires_grad] == frozen
    for n, p in s.D.named_parameters():
        assert torch.equal(p, before[n]) == (n in frozen), n  # frozen stay, the rest trained
