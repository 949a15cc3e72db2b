"""The training watch: verdicts on stand-in generators, the discriminator signals, and a rollback in a real run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ganplug import checkpoint as ckpt
from ganplug.train.loop import train
from ganplug.train.watch import CollapseWatch, WatchSettings
from tests.conftest import tiny_config, write_shapes


def _load(folder) -> torch.Tensor:
    arrs = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()


class _Lookup(torch.nn.Module):
    """A 'generator' returning the stored images in turn: as diverse as the store, never repeating early."""

    def __init__(self, images: torch.Tensor):
        super().__init__()
        self.z_dim = 16
        self.register_buffer("images", images.float() / 127.5 - 1)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.next = 0

    def forward(self, z):
        idx = (torch.arange(len(z)) + self.next) % len(self.images)
        self.next += len(z)
        return self.images[idx]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("watch")
    return _load(write_shapes(root / "real", 300, size=32, seed=1)), _load(write_shapes(root / "fake", 200, size=32,
                                                                                          seed=2))


def test_watch_calls_a_diverse_generator_healthy_and_a_constant_one_collapsed(shapes):
    real, fresh = shapes
    watch = CollapseWatch(real, WatchSettings(every=10, samples=96))
    good = watch.check(10, _Lookup(fresh), history=[])
    assert good.healthy, good.reasons
    bad = watch.check(20, _Lookup(fresh[:1]), history=[])
    assert not bad.healthy and bad.reasons[0].startswith("collapse")
    assert bad.stats["duplicate_rate"] == 1.0 and good.stats["duplicate_rate"] < 0.5
    assert bad.stats["severity"] > 0.7 > good.stats["severity"]


def test_discriminator_domination_is_flagged_from_the_history(shapes):
    real, fresh = shapes
    watch = CollapseWatch(real, WatchSettings(every=4, samples=96))
    fine = [{"loss/D": 1.2, "prob/real": 0.6, "prob/fake": 0.4, "scores/real": 0.3, "scores/fake": -0.2}] * 4
    winning = [{"loss/D": 0.01, "prob/real": 0.99, "prob/fake": 0.02, "scores/real": 6.0, "scores/fake": -5.0}] * 4
    assert watch.check(4, _Lookup(fresh), fine).healthy
    r = watch.check(8, _Lookup(fresh), fine + winning)
    assert not r.healthy
    assert r.stats["d_loss"] == pytest.approx(0.01) and r.stats["d_prob_gap"] == pytest.approx(0.97)
    assert any("near zero" in x for x in r.reasons) and any("almost perfectly" in x for x in r.reasons)


def test_rollback_on_a_tiny_run_restores_and_applies_the_remedy(tmp_path, shapes_dir):
    """An untrained DCGAN draws near-constant images: the first check flags it, the loop rolls back to
    the last healthy state (step 0) and the remedy halves D's learning rate and turns on D-side
    augmentation (DCGAN's step augments D's inputs, so that is the regulariser it really has)."""
    cfg = tiny_config(shapes_dir, tmp_path / "r", steps=6, ckpt_every=2, sample_every=0)
    watch = CollapseWatch.for_config(cfg, WatchSettings(every=2, on_collapse="rollback", samples=48,
                                                        max_rollbacks=2))
    result = train(cfg, watch=watch)
    assert result.step == 6
    assert len(result.events) == 2  # then the watch switched to warnings
    first = result.events[0]
    assert first["event"] == "collapse_rollback" and first["restored_step"] == 0
    assert "learning rate x0.5" in first["remedy"] and "augmentation probability raised to 0.20" in first["remedy"]
    assert "only warns" in result.events[1]["remedy"] and watch.on_collapse == "warn"
    meta = ckpt.read_meta(result.checkpoint)
    # Rollbacks keep the learning rates in use (ganplug.train.loop.Snapshot.restore), so the two remedies
    # compound: 2e-4 -> 5e-5; the saved run config records that rate, and the augmentation probability
    # grows with each remedy.
    assert meta["optimizers"]["opt_D"]["param_groups"][0]["lr"] == pytest.approx(5e-5)
    assert meta["train"]["lr_d"] == pytest.approx(5e-5)
    assert meta["train"]["aug"] == "diffaug" and meta["train"]["aug_p"] == pytest.approx(0.4)
    assert cfg.aug == "none" and cfg.lr_d == pytest.approx(2e-4)  # the caller's config was left alone
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert sum(r.get("event") == "collapse_rollback" for r in rows) == 2
    assert any("watch/severity" in r and "watch/coverage" in r for r in rows)


def test_unknown_on_collapse_is_a_user_error(shapes):
    from ganplug.errors import UserError

    with pytest.raises(UserError, match="warn, stop or rollback"):
        CollapseWatch(shapes[0], WatchSettings(on_collapse="panic"))


@pytest.mark.parametrize("loss, augments, ada_p, expect", [
    ("nonsat", False, None, {"lr_d", "label_smoothing"}),
    ("hinge", False, None, {"lr_d"}),  # hinge has no labels to smooth: the remedy must not claim it did
    ("wgan-gp", False, None, {"lr_d"}),
    ("hinge", True, None, {"lr_d", "aug", "aug_p"}),
    ("nonsat", True, 0.3, {"lr_d", "ada_p"}),
])
def test_remedy_only_changes_what_the_run_uses(loss, augments, ada_p, expect, shapes):
    from ganplug.train.config import TrainConfig
    from ganplug.train.loop import RemedyContext

    cfg = TrainConfig(data="", out="", arch="dcgan", loss=loss, **({"aug": "ada"} if ada_p is not None else {}))
    watch = CollapseWatch(shapes[0], WatchSettings(on_collapse="rollback"))
    remedy = watch.remedy(RemedyContext(cfg=cfg, lr_d=2e-4, ada_p=ada_p, augments=augments))
    assert set(remedy.changes) == expect
    assert remedy.changes["lr_d"] == pytest.approx(1e-4)
    assert ("label smoothing" in remedy.description) == ("label_smoothing" in expect)
    assert cfg.lr_d == 2e-4 and cfg.label_smoothing == 0.0  # nothing was changed in place
