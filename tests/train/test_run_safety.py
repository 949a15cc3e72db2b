"""A run folder never costs the user anything: --force only replaces ganplug's own files, writes are atomic
and follow the umask, stale temp files are cleaned, a huge batch is caught before it allocates, and Ctrl-C
exits 130 saying what was really saved."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ganplug import checkpoint as ckpt
from ganplug.atomic import clean_stale_temps
from ganplug.cli.app import main
from ganplug.errors import UserError
from ganplug.train.loop import TrainingInterrupted, train
from tests.conftest import tiny_config, write_shapes

TINY = ["--size", "32", "--batch", "8", "--arch", "dcgan", "--base-channels", "8", "--device", "cpu", "--steps", "2",
        "--no-watch"]


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())  # rich wraps long lines at the terminal width


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_force_refuses_a_folder_that_ganplug_did_not_write(tmp_path, shapes_dir, capsys):
    """The reported case: notes.txt, art/ and checkpoints/resnet.pt were wiped by --force."""
    other = tmp_path / "project"
    (other / "art").mkdir(parents=True)
    (other / "art" / "sketch.png").write_bytes(b"not really a png")
    (other / "checkpoints").mkdir()
    (other / "checkpoints" / "resnet.pt").write_bytes(b"weights")
    (other / "notes.txt").write_text("my notes")
    (other / "config.json").write_text(json.dumps({"lr": 0.1}))
    before = _tree(other)
    code, out = run(capsys, "train", shapes_dir, "--out", other, "--force", *TINY)
    assert code == 2 and "not a ganplug run" in out and "Traceback" not in out
    assert _tree(other) == before


def test_force_replaces_only_what_ganplug_wrote(tmp_path, shapes_dir, capsys):
    out_dir = tmp_path / "run"
    assert run(capsys, "train", shapes_dir, "--out", out_dir, "--seed", "1", *TINY)[0] == 0
    old = ckpt.read_tensors(ckpt.resolve_checkpoint(out_dir), ("G.",))
    (out_dir / "notes.txt").write_text("keep me")
    (out_dir / "checkpoints" / "resnet.pt").write_bytes(b"mine")
    (out_dir / "samples" / "favourite.png").write_bytes(b"mine too")
    code, out = run(capsys, "train", shapes_dir, "--out", out_dir, "--force", "--seed", "2", *TINY)
    assert code == 0 and "kept what ganplug did not write" in out and "notes.txt" in out
    assert (out_dir / "notes.txt").read_text() == "keep me"
    assert (out_dir / "checkpoints" / "resnet.pt").read_bytes() == b"mine"
    assert (out_dir / "samples" / "favourite.png").read_bytes() == b"mine too"
    new = ckpt.read_tensors(ckpt.resolve_checkpoint(out_dir), ("G.",))
    assert any(not (old[k] == new[k]).all() for k in old)  # really retrained (seed 2)
    assert json.loads((out_dir / "config.json").read_text())["train"]["seed"] == 2


def test_a_refused_option_never_wipes_the_run_it_would_replace(tmp_path, shapes_dir, capsys):
    out_dir = tmp_path / "run"
    assert run(capsys, "train", shapes_dir, "--out", out_dir, *TINY)[0] == 0
    before = _tree(out_dir)
    code, out = run(capsys, "train", shapes_dir, "--out", out_dir, "--force", *TINY, "--model", "nonsense=1")
    assert code == 2 and "nonsense" in out
    assert _tree(out_dir) == before


def test_batch_larger_than_the_dataset_is_clamped_with_a_notice(tmp_path, shapes_dir, capsys):
    out_dir = tmp_path / "run"
    code, out = run(capsys, "train", shapes_dir, "--out", out_dir, *TINY, "--batch", "1000000")
    n = len(list(shapes_dir.iterdir()))
    assert code == 0 and f"--batch 1000000 is larger than the dataset ({n} images)" in out
    assert json.loads((out_dir / "config.json").read_text())["train"]["batch"] == n


def test_a_step_that_cannot_fit_in_memory_is_refused_before_allocating(tmp_path, capsys, monkeypatch):
    """StyleGAN at 512 px and 4x the paper's widths, one image more per batch than this machine can hold."""
    import torch

    from ganplug.models import config_from_dict, get_family
    from ganplug.train import memory

    cfg = config_from_dict("stylegan", {"size": 512, "capacity": 4.0})
    free = memory.available_bytes(torch.device("cpu"))
    monkeypatch.setattr(memory, "available_bytes", lambda device: free)  # other tests' processes come and go
    fits = memory.estimate("stylegan", cfg, get_family("stylegan").spec(cfg)).max_batch(free)
    if fits > 15:
        pytest.skip(f"this machine holds {fits} images of this model per step; the case needs < 16")
    data = write_shapes(tmp_path / "big", fits + 1, size=64)
    code, out = run(capsys, "train", data, "--out", tmp_path / "run", "--arch", "stylegan", "--size", "512",
                    "--capacity", "4", "--batch", str(fits + 1), "--device", "cpu", "--steps", "1", "--no-watch")
    assert code == 2 and "GiB (estimated)" in out and "Traceback" not in out
    assert (f"use --batch {fits} or less" if fits else "use a smaller --size") in out
    assert not (tmp_path / "run").exists()


def test_a_default_batch_too_big_for_memory_shrinks_to_one_that_fits_and_a_chosen_one_is_refused(
        tmp_path, capsys, monkeypatch):
    """FastGAN's CPU default (32) at 512-1024 px needs 7-11 GiB: a machine with less free trains at the largest
    batch that fits, saying so and recording it, rather than refusing a batch the user never gave."""
    from ganplug.models import config_from_dict, get_family
    from ganplug.models.fastgan import CPU_BATCH, CPU_CAPACITY
    from ganplug.train import memory

    cfg = config_from_dict("fastgan", {"size": 32, "capacity": CPU_CAPACITY, "channels": 3})
    need = memory.estimate("fastgan", cfg, get_family("fastgan").spec(cfg))
    free = (need.free_needed(5) + need.free_needed(6)) // 2  # room for 5 images a step, not 6
    assert need.max_batch(free) == 5 and need.fits(5, free) and not need.fits(6, free)
    monkeypatch.setattr(memory, "available_bytes", lambda device: free)
    data = write_shapes(tmp_path / "data", CPU_BATCH + 8, size=32)
    common = ["--arch", "fastgan", "--size", "32", "--no-alpha", "--device", "cpu", "--steps", "1", "--no-watch",
              "--sample-every", "0", "--grid-samples", "4"]
    code, out = run(capsys, "train", data, "--out", tmp_path / "auto", *common)
    assert code == 0 and f"the default batch ({CPU_BATCH}) needs more memory" in out and "--batch 5" in out
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["train"]["batch"] == 5
    # the API says so too: the result's config is the one that trained (the demo reads it)
    from ganplug.train.config import TrainConfig

    api = TrainConfig.for_family("fastgan", data=str(data), out=str(tmp_path / "api"), size=32, alpha=False,
                                 device="cpu", steps=1, sample_every=0, grid_samples=4,
                                 model={"channels": 3, "capacity": CPU_CAPACITY})
    result = train(api, batch_is_default=True)
    assert api.batch == CPU_BATCH and result.config.batch == 5
    assert result.config.to_dict() == json.loads((tmp_path / "api" / "config.json").read_text())["train"]
    code, out = run(capsys, "train", data, "--out", tmp_path / "chosen", *common, "--batch", str(CPU_BATCH))
    assert code == 2 and "use --batch 5 or less" in out and not (tmp_path / "chosen").exists()


def test_step_memory_agrees_with_itself_on_what_fits():
    """max_batch, fits and free_needed are three views of one margin: the batch check and the batch a
    refusal names must never disagree (naming a batch that is then refused)."""
    from ganplug.train.memory import StepMemory

    need = StepMemory(per_image=3_000_017, fixed=250_000_003)
    for available in (0, 10**8, 3 * 10**8 + 7, 2**33 + 12345, 10**11):
        b = need.max_batch(available)
        assert b == 0 or need.fits(b, available)
        assert not need.fits(b + 1, available)
    for batch in (1, 7, 64):
        assert need.fits(batch, need.free_needed(batch)) and not need.fits(batch, need.free_needed(batch) - 1)


def test_estimate_counts_every_activation_of_a_known_network():
    """DCGAN at 32 px with 8 channels, counted by hand from the architecture (float32 bytes)."""
    from ganplug.models import build_models, config_from_dict
    from ganplug.train.memory import estimate

    cfg = config_from_dict("dcgan", {"size": 32, "channels": 3, "base_channels": 8})
    G, D, spec = build_models("dcgan", cfg)
    outputs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(o.numel()))
             for net in (G, D) for m in net.modules() if not list(m.children())]
    import torch

    with torch.no_grad():
        D(G(torch.randn(1, spec.z_dim)))
    for h in hooks:
        h.remove()
    g_count = sum(outputs[: sum(1 for m in G.modules() if not list(m.children()))])
    d_count = sum(outputs) - g_count
    got = estimate("dcgan", cfg, spec)
    assert got.per_image == 4 * (g_count + 2 * d_count)
    params = sum(p.numel() for net in (G, D) for p in net.parameters())
    assert got.fixed == params * 4 * 5


def test_config_json_is_never_left_empty_by_a_full_disk(tmp_path, shapes_dir, monkeypatch):
    out_dir = tmp_path / "run"
    train(tiny_config(shapes_dir, out_dir, steps=2, ckpt_every=2))
    before = (out_dir / "config.json").read_bytes()
    import ganplug.atomic

    monkeypatch.setattr(ganplug.atomic.os, "fsync", _raise_enospc_for(out_dir / "config.json"))
    with pytest.raises(UserError, match="No space left"):
        train(tiny_config(shapes_dir, out_dir, steps=4), resume=True)
    assert (out_dir / "config.json").read_bytes() == before
    assert not [p for p in out_dir.rglob(".*.tmp")]


def _raise_enospc_for(target: Path):
    """os.fsync that fails like a full disk while the config's temp file is being flushed."""
    real = os.fsync

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if Path(name).name.startswith(f".{target.name}."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    return fsync


def test_stale_temp_files_of_dead_processes_are_cleaned_on_the_next_start(tmp_path, shapes_dir):
    out_dir = tmp_path / "run"
    train(tiny_config(shapes_dir, out_dir, steps=2, ckpt_every=2))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out_dir / "checkpoints" / f".step-000004.safetensors.pid{dead.pid}.k3j2h1.tmp"
    stale.write_bytes(b"x" * 1000)
    live = out_dir / "checkpoints" / f".step-000004.safetensors.pid{os.getpid()}.a1b2c3.tmp"
    live.write_bytes(b"y")
    foreign = out_dir / "checkpoints" / ".someone-elses.tmp"
    foreign.write_bytes(b"z")
    train(tiny_config(shapes_dir, out_dir, steps=3, ckpt_every=3), resume=True)
    assert not stale.exists()
    assert live.exists() and foreign.exists()  # a live writer's and another program's files are left alone
    assert clean_stale_temps(out_dir) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, shapes_dir, umask):
    old = os.umask(umask)
    try:
        out_dir = tmp_path / "run"
        train(tiny_config(shapes_dir, out_dir, steps=2, ckpt_every=2))
    finally:
        os.umask(old)
    for path in (ckpt.resolve_checkpoint(out_dir), out_dir / "config.json", out_dir / "samples" / "step-000002.png",
                 out_dir / "checkpoints" / "latest"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


class _InterruptAt:
    """A reporter that presses Ctrl-C when training reaches `step` (0: before the first step)."""

    def __init__(self, step: int):
        self.step = step

    def start(self, total, first, info):
        if self.step == 0:
            raise KeyboardInterrupt

    def update(self, step, stats):
        if step == self.step:
            raise KeyboardInterrupt

    def message(self, text):
        pass

    def finish(self):
        pass


def test_ctrl_c_says_what_was_saved(tmp_path, shapes_dir):
    from ganplug.cli.train_cmd import interrupted_message

    out_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as before_first:
        train(tiny_config(shapes_dir, out_dir, steps=50, ckpt_every=100), reporter=_InterruptAt(0))
    assert before_first.value.checkpoint is None and not ckpt.list_checkpoints(out_dir)
    assert "no checkpoint was saved" in interrupted_message(before_first.value, out_dir)

    with pytest.raises(TrainingInterrupted) as mid:
        train(tiny_config(shapes_dir, out_dir, steps=50, ckpt_every=100), force=True, reporter=_InterruptAt(3))
    assert mid.value.checkpoint == ckpt.resolve_checkpoint(out_dir)
    assert ckpt.read_meta(mid.value.checkpoint)["step"] == 3
    assert "saved" in interrupted_message(mid.value, out_dir) and "--resume" in interrupted_message(mid.value, out_dir)

    with pytest.raises(TrainingInterrupted) as on_resume:
        train(tiny_config(shapes_dir, out_dir, steps=50), resume=True, reporter=_InterruptAt(0))
    assert on_resume.value.checkpoint is None and on_resume.value.resumed_from == mid.value.checkpoint
    assert "nothing new was saved" in interrupted_message(on_resume.value, out_dir)


def test_ctrl_c_in_a_real_process_exits_130(tmp_path, shapes_dir):
    out_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "ganplug.cli.app", "train", str(shapes_dir), "--out", str(out_dir), "--size", "32",
           "--batch", "8", "--arch", "dcgan", "--base-channels", "8", "--device", "cpu", "--steps", "100000",
           "--ckpt-every", "100000"]
    # A runner started in the background by a non-interactive shell (nohup, `&`) ignores SIGINT and its
    # children inherit that, so Python would install no Ctrl-C handler: give the child the default back.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (out_dir / "metrics.jsonl").is_file() or not (out_dir / "metrics.jsonl").read_text().strip():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    try:  # generous: on 2 loaded cores the final checkpoint and grid can take a while
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running 180 s after Ctrl-C; its output: {proc.communicate()[0][-3000:]}")
    assert proc.returncode == 130, out
    assert "saved" in out and "--resume" in out and "Traceback" not in out
    step = ckpt.read_meta(ckpt.resolve_checkpoint(out_dir))["step"]
    assert f"interrupted at step {step}" in out
