"""The training loop: exact resume, determinism, transfer init, Freeze-D, each loss, and that it learns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganplug import checkpoint as ckpt
from ganplug.errors import CheckpointError, UserError
from ganplug.train.loop import train
from tests.conftest import tiny_config


def _losses(run: Path) -> list[tuple[int, float, float]]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss/G"], r["loss/D"]) for r in rows]


def test_resume_reproduces_an_uninterrupted_run(tmp_path, shapes_dir):
    full = tmp_path / "full"
    train(tiny_config(shapes_dir, full, steps=8, ckpt_every=4, sample_every=4, model={"base_channels": 8,
                                                                                    "d_dropout": 0.2}))
    part = tmp_path / "part"
    train(tiny_config(shapes_dir, part, steps=4, ckpt_every=4, sample_every=4, model={"base_channels": 8,
                                                                                    "d_dropout": 0.2}))
    cfg = tiny_config(shapes_dir, part, steps=8)
    train(cfg, resume=True)
    assert _losses(part) == _losses(full)  # bit-for-bit the same losses, steps 1..8
    a = ckpt.read_tensors(ckpt.resolve_checkpoint(full))
    b = ckpt.read_tensors(ckpt.resolve_checkpoint(part))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_same_seed_same_run_other_seed_other_run(tmp_path, shapes_dir):
    train(tiny_config(shapes_dir, tmp_path / "a", steps=3))
    train(tiny_config(shapes_dir, tmp_path / "b", steps=3))
    train(tiny_config(shapes_dir, tmp_path / "c", steps=3, seed=1))
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    assert _losses(tmp_path / "a") != _losses(tmp_path / "c")


def test_run_folder_contents(tiny_run):
    assert (tiny_run / "config.json").is_file()
    assert [p.name for p in ckpt.list_checkpoints(tiny_run)] == ["step-000003.safetensors", "step-000006.safetensors"]
    assert (tiny_run / "checkpoints" / "latest").read_text().strip() == "step-000006.safetensors"
    assert sorted(p.name for p in (tiny_run / "samples").glob("*.png")) == ["step-000003.png", "step-000006.png"]
    with Image.open(tiny_run / "timelapse.gif") as gif:
        assert gif.n_frames >= 2
    rows = [json.loads(x) for x in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"loss/G", "loss/D", "scores/real", "scores/fake", "prob/real", "prob/fake"} <= rows[0].keys()


@pytest.mark.parametrize("loss", ["nonsat", "hinge", "wgan-gp"])
def test_each_loss_trains(tmp_path, shapes_dir, loss):
    model = {"base_channels": 8, **({"d_norm": "layer"} if loss == "wgan-gp" else {})}
    d_steps = 2 if loss == "wgan-gp" else 1
    result = train(tiny_config(shapes_dir, tmp_path / loss, steps=3, loss=loss, d_steps=d_steps, model=model,
                               ckpt_every=1))
    assert len(result.history) == 3
    if loss == "wgan-gp":
        assert all(h["loss/grad_penalty"] >= 0 for h in result.history)
    else:
        assert all("loss/grad_penalty" not in h for h in result.history)
    # the discriminator's weights moved
    before = ckpt.read_tensors(ckpt.list_checkpoints(tmp_path / loss)[0], ("D.",))
    after = ckpt.read_tensors(ckpt.resolve_checkpoint(tmp_path / loss), ("D.",))
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


def test_learns_the_colour_of_a_constant_dataset(tmp_path):
    """On a dataset of solid orange squares, samples become orange (the model learns, not just runs)."""
    folder = tmp_path / "orange"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        arr = np.empty((32, 32, 3), np.uint8)
        arr[:] = (240, 130, 20)
        arr = np.clip(arr.astype(int) + rng.integers(-8, 9, arr.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"o{i}.png")
    result = train(tiny_config(folder, tmp_path / "run", steps=60, batch=16, sample_every=0, ckpt_every=0,
                               lr_g=1e-3, lr_d=1e-3))
    model = ckpt.load_generator(result.checkpoint)
    from ganplug.sampling import generate_all

    mean = generate_all(model.G, range(32)).float().mean(dim=(0, 2, 3))
    # An untrained generator is grey on average (|R - B| of a few levels); after 60 steps R > G > B as in the data.
    assert mean[0] > mean[1] > mean[2] and mean[0] - mean[2] > 30, mean


def test_init_from_copies_weights_and_restarts(tmp_path, tiny_run, shapes_dir):
    out = tmp_path / "transfer"
    result = train(tiny_config(shapes_dir, out, steps=1, init_from=str(tiny_run), lr_g=1e-12, lr_d=1e-12))
    assert result.step == 1  # fresh step counter
    src = ckpt.read_tensors(ckpt.resolve_checkpoint(tiny_run), ("G.",))
    dst = ckpt.read_tensors(result.checkpoint, ("G.",))
    weights = [k for k in src if k.endswith("weight")]
    for k in weights:  # a learning rate of 1e-12 leaves the copied weights (almost) untouched
        torch.testing.assert_close(dst[k], src[k], rtol=1e-6, atol=1e-6)


def test_init_from_other_resolution_copies_matching_layers(tmp_path, tiny_run, shapes_dir):
    """32 px -> 64 px: the shared 4x4..16x16 generator layers keep their values, new ones are fresh."""
    out = tmp_path / "bigger"
    # DCGAN layers are numbered, so at 64 px one 32 px layer name holds another shape: refused, named...
    with pytest.raises(CheckpointError, match=r"G\.net\.9\.weight \(8, 3, 4, 4\) -> \(8, 4, 4, 4\).*--allow-partial"):
        train(tiny_config(shapes_dir, tmp_path / "refused", size=64, steps=1, init_from=str(tiny_run),
                          model={"base_channels": 4}))
    assert not (tmp_path / "refused" / "checkpoints").exists()
    # ...and copied where it fits with --allow-partial
    result = train(tiny_config(shapes_dir, out, size=64, steps=1, init_from=str(tiny_run), lr_g=1e-12,
                               lr_d=1e-12, model={"base_channels": 4}, allow_partial=True))
    src = ckpt.read_tensors(ckpt.resolve_checkpoint(tiny_run), ("G.",))
    dst = ckpt.read_tensors(result.checkpoint, ("G.",))
    shared = [k for k in src if k in dst and src[k].shape == dst[k].shape and k.endswith("weight")]
    assert shared
    for k in shared:
        torch.testing.assert_close(dst[k], src[k], rtol=1e-6, atol=1e-6)


def test_init_from_refuses_a_non_checkpoint(tmp_path, shapes_dir):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"nope")
    with pytest.raises(CheckpointError):
        train(tiny_config(shapes_dir, tmp_path / "x", steps=1, init_from=str(junk)))


def test_freeze_d_keeps_first_blocks_fixed(tmp_path, shapes_dir):
    result = train(tiny_config(shapes_dir, tmp_path / "fz", steps=3, freeze_d=1, ckpt_every=1))
    first = ckpt.read_tensors(ckpt.list_checkpoints(tmp_path / "fz")[0], ("D.",))
    last = ckpt.read_tensors(result.checkpoint, ("D.",))
    assert torch.equal(first["D.blocks.0.0.weight"], last["D.blocks.0.0.weight"])
    assert not torch.equal(first["D.blocks.1.0.weight"], last["D.blocks.1.0.weight"])


def test_existing_run_is_never_overwritten_silently(tmp_path, shapes_dir):
    out = tmp_path / "run"
    train(tiny_config(shapes_dir, out, steps=1))
    stamp = (out / "checkpoints" / "latest").read_text()
    with pytest.raises(UserError, match="--resume"):
        train(tiny_config(shapes_dir, out, steps=1))
    assert (out / "checkpoints" / "latest").read_text() == stamp
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(UserError, match="not a ganplug run"):
        train(tiny_config(shapes_dir, other, steps=1), force=True)
    assert (other / "todo.txt").read_text() == "mine"
    train(tiny_config(shapes_dir, out, steps=2), force=True)
    assert ckpt.read_meta(ckpt.resolve_checkpoint(out))["step"] == 2


def test_resume_past_the_end_is_refused(tmp_path, shapes_dir):
    out = tmp_path / "run"
    train(tiny_config(shapes_dir, out, steps=2))
    with pytest.raises(UserError, match="larger --steps"):
        train(tiny_config(shapes_dir, out, steps=2), resume=True)


class _NanAt:
    """Wraps a train step so chosen calls report a non-finite loss (as a diverging step would)."""

    def __init__(self, inner, bad_calls):
        self.inner, self.bad_calls, self.calls = inner, set(bad_calls), 0

    def __call__(self, next_real, step):
        self.calls += 1
        stats = self.inner(next_real, step)
        if self.calls in self.bad_calls:
            stats["loss/G"] = float("nan")
        return stats

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


def _with_nans(monkeypatch, bad_calls):
    import ganplug.train.loop as loop

    real = loop.build_step
    monkeypatch.setattr(loop, "build_step", lambda *a: _NanAt(real(*a), bad_calls))


def test_nonfinite_loss_rolls_back_and_halves_lr(tmp_path, shapes_dir, monkeypatch):
    _with_nans(monkeypatch, {5})  # the 5th step call diverges; the last good checkpoint is step 4
    result = train(tiny_config(shapes_dir, tmp_path / "r", steps=6, ckpt_every=2, lr_g=1e-3, lr_d=1e-3))
    assert result.step == 6
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in rows if r.get("event") == "nonfinite_rollback"]
    assert len(events) == 1 and events[0]["restored_step"] == 4
    assert events[0]["lr_g"] == pytest.approx(5e-4) and events[0]["lr_d"] == pytest.approx(5e-4)
    meta = ckpt.read_meta(result.checkpoint)
    assert meta["optimizers"]["opt_G"]["param_groups"][0]["lr"] == pytest.approx(5e-4)


def test_three_nonfinite_in_a_row_stop_with_a_message(tmp_path, shapes_dir, monkeypatch):
    _with_nans(monkeypatch, {2, 3, 4})
    with pytest.raises(UserError, match="3 times in a row"):
        train(tiny_config(shapes_dir, tmp_path / "r", steps=6, ckpt_every=2))


class _FlagOnce:
    """A watch that flags one chosen step, to test what the loop does with a verdict."""

    def __init__(self, on_collapse, bad_step):
        from ganplug.train.loop import WatchResult

        self.every, self.on_collapse, self.bad_step, self.seen = 2, on_collapse, bad_step, []
        self.result = WatchResult

    def check(self, step, G_ema, history):
        self.seen.append(step)
        bad = step == self.bad_step and self.seen.count(step) == 1
        return self.result(healthy=not bad, stats={"score": float(step)}, reasons=["test says so."] if bad else [])

    def begin(self, cfg, dataset):
        pass

    def remedy(self, context):
        from ganplug.train.trainer import Remedy

        return Remedy({"lr_d": context.lr_d * 0.5}, "halved D's learning rate")


def test_watch_rollback_restores_last_healthy_checkpoint(tmp_path, shapes_dir):
    watch = _FlagOnce("rollback", bad_step=4)
    result = train(tiny_config(shapes_dir, tmp_path / "r", steps=6, ckpt_every=2), watch=watch)
    assert result.step == 6 and not result.stopped_early
    assert watch.seen == [2, 4, 4, 6]  # step 4 flagged, rolled back to 2, steps 3-4 trained again
    assert result.events[0]["restored_step"] == 2 and "halved" in result.events[0]["remedy"]
    meta = ckpt.read_meta(result.checkpoint)
    assert meta["optimizers"]["opt_D"]["param_groups"][0]["lr"] == pytest.approx(1e-4)
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("watch/score") == 6.0 for r in rows)


def test_watch_stop_ends_training_with_the_reason(tmp_path, shapes_dir):
    result = train(tiny_config(shapes_dir, tmp_path / "r", steps=6, ckpt_every=2), watch=_FlagOnce("stop", 4))
    assert result.stopped_early and result.step == 4 and "test says so" in result.stop_reason
    assert ckpt.read_meta(ckpt.resolve_checkpoint(tmp_path / "r"))["step"] == 4


def test_consecutive_nonfinite_losses_keep_halving(tmp_path, shapes_dir, monkeypatch):
    _with_nans(monkeypatch, {5, 6})  # two bad attempts in a row at step 5, then training recovers
    result = train(tiny_config(shapes_dir, tmp_path / "r", steps=6, ckpt_every=2, lr_g=1e-3, lr_d=1e-3))
    meta = ckpt.read_meta(result.checkpoint)
    assert meta["optimizers"]["opt_D"]["param_groups"][0]["lr"] == pytest.approx(2.5e-4)
