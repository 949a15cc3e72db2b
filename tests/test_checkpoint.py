"""Checkpoints: exact round trip, atomic saves under kill and full disk, clear refusals of bad files."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ganplug import checkpoint as ckpt
from ganplug.errors import CheckpointError, UserError
from ganplug.models import build_models, config_from_dict


def _models(size=32, base=8):
    torch.manual_seed(0)
    cfg = config_from_dict("dcgan", {"size": size, "base_channels": base})
    G, D, spec = build_models("dcgan", cfg)
    G_ema, _, _ = build_models("dcgan", cfg)
    return cfg, G, D, G_ema


def _save(run: Path, step: int, size=32, base=8):
    cfg, G, D, G_ema = _models(size, base)
    opt_G = torch.optim.Adam(G.parameters(), lr=1e-3)
    opt_D = torch.optim.Adam(D.parameters(), lr=1e-3)
    for opt, m in ((opt_G, G), (opt_D, D)):  # populate optimiser state
        m(torch.randn(2, 100) if m is G else torch.randn(2, 3, size, size)).sum().backward()
        opt.step()
    meta = {"arch": "dcgan", "model": ckpt.config_dict(cfg), "train": {"note": "test"}}
    path = ckpt.save_training_checkpoint(run, step=step, G=G, D=D, G_ema=G_ema, opt_G=opt_G, opt_D=opt_D,
                                         rng={"torch": torch.get_rng_state()}, meta=meta)
    return path, G, D, G_ema, opt_G, opt_D


def test_round_trip_restores_everything(tmp_path):
    path, G, D, G_ema, opt_G, opt_D = _save(tmp_path, 7)
    assert path == tmp_path / "checkpoints" / "step-000007.safetensors"
    assert ckpt.resolve_checkpoint(tmp_path) == path
    meta = ckpt.read_meta(path)
    assert meta["step"] == 7 and meta["arch"] == "dcgan" and meta["format"] == "ganplug-checkpoint"
    loaded = ckpt.load_generator(tmp_path, ema=False)
    for k, v in G.state_dict().items():
        torch.testing.assert_close(loaded.G.state_dict()[k], v, rtol=0, atol=0)
    D2, _ = ckpt.load_discriminator(path)
    for k, v in D.state_dict().items():
        torch.testing.assert_close(D2.state_dict()[k], v, rtol=0, atol=0)
    tensors = ckpt.read_tensors(path)
    _, G3, _, _ = _models()
    opt3 = torch.optim.Adam(G3.parameters(), lr=5.0)
    ckpt.restore_optimizer(opt3, "opt_G", tensors, meta)
    want, got = opt_G.state_dict(), opt3.state_dict()
    assert got["param_groups"][0]["lr"] == 1e-3
    for idx, st in want["state"].items():
        for key, value in st.items():
            torch.testing.assert_close(got["state"][idx][key], value, rtol=0, atol=0)
    assert tensors["rng.torch"].dtype == torch.uint8 and tensors["rng.torch"].shape == torch.get_rng_state().shape


def test_keep_prunes_old_checkpoints(tmp_path):
    cfg, G, D, G_ema = _models()
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    meta = {"arch": "dcgan", "model": ckpt.config_dict(cfg), "train": {}}
    for step in (1, 2, 3, 4):
        ckpt.save_training_checkpoint(tmp_path, step=step, G=G, D=D, G_ema=G_ema, opt_G=opt_G, opt_D=opt_D,
                                      rng={}, meta=meta, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-000003.safetensors", "step-000004.safetensors"]


def test_foreign_and_truncated_files_are_refused(tmp_path):
    not_st = tmp_path / "photo.safetensors"
    not_st.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    with pytest.raises(CheckpointError, match="not a readable ganplug checkpoint"):
        ckpt.load_generator(not_st)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(other), metadata={"framework": "x"})
    with pytest.raises(CheckpointError, match="not a ganplug checkpoint"):
        ckpt.load_generator(other)
    path, *_ = _save(tmp_path / "run", 1)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        ckpt.load_generator(cut)
    with pytest.raises(CheckpointError, match="without checkpoints"):
        ckpt.resolve_checkpoint(tmp_path / "run" / "checkpoints")


def test_other_architecture_weights_are_named(tmp_path):
    """A checkpoint whose tensors do not fit the architecture its metadata names says which layers differ."""
    path, *_ = _save(tmp_path, 1, size=32)
    meta = ckpt.read_meta(path)
    meta["model"]["size"] = 64  # claims 64 px, holds 32 px weights
    tensors = ckpt.read_tensors(path)
    import json

    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={"ganplug": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="do not fit"):
        ckpt.load_generator(bad)


def test_disk_full_keeps_previous_checkpoint(tmp_path, monkeypatch):
    first, *_ = _save(tmp_path, 1)
    before = first.read_bytes()
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 1000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    import ganplug.atomic

    monkeypatch.setattr(ganplug.atomic.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(UserError, match="No space left"):
        _save(tmp_path, 2)
    monkeypatch.undo()
    assert ckpt.resolve_checkpoint(tmp_path) == first
    assert first.read_bytes() == before
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))  # no litter
    assert not (tmp_path / "checkpoints" / "step-000002.safetensors").exists()


SAVER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {tests!r})
    from test_checkpoint import _models
    from ganplug import checkpoint as ckpt
    cfg, G, D, G_ema = _models(size=64, base=64)
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    meta = {{"arch": "dcgan", "model": ckpt.config_dict(cfg), "train": {{}}}}
    step = 0
    while True:
        step += 1
        ckpt.save_training_checkpoint(sys.argv[1], step=step, G=G, D=D, G_ema=G_ema, opt_G=opt_G, opt_D=opt_D,
                                      rng={{}}, meta=meta, keep=2)
        print(step, flush=True)
""")


def test_kill_during_save_never_corrupts_latest(tmp_path):
    """SIGKILL a process that saves 64 px checkpoints back to back, at several moments; latest always loads."""
    script = tmp_path / "saver.py"
    script.write_text(SAVER.format(tests=str(Path(__file__).parent)))
    run = tmp_path / "run"
    for delay in (0.05, 0.4, 0.9, 1.7):
        proc = subprocess.Popen([sys.executable, str(script), str(run)], stdout=subprocess.PIPE, text=True)
        # wait for at least one completed save after the first kill round, then kill mid-stream
        if not ckpt.list_checkpoints(run):
            assert proc.stdout.readline().strip() == "1"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        latest = ckpt.resolve_checkpoint(run)
        model = ckpt.load_generator(latest)  # reads and checks every generator tensor
        assert model.spec.size == 64
        assert ckpt.read_tensors(latest)  # the whole file is intact
