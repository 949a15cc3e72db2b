"""FastGAN through `ganplug train`: what the step records (augmentation in
force, reconstruction distance), the user's --aug winning, and transfer with Freeze-D."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ganplug import checkpoint as ckpt
from ganplug.cli.app import main
from ganplug.errors import UserError
from ganplug.models import fastgan as fg
from ganplug.train.config import TrainConfig
from tests.conftest import write_shapes

TINY = ["--arch", "fastgan", "--size", "32", "--batch", "4", "--capacity", "0.05", "--z-dim", "16", "--device",
        "cpu", "--grid-samples", "4"]


@pytest.fixture(scope="module")
def imgs(tmp_path_factory) -> Path:
    return write_shapes(tmp_path_factory.mktemp("fastgan-train") / "imgs", 40, size=32)  # more than a CPU batch


def _train(*argv) -> None:
    assert main(["train", *map(str, argv)]) == 0


def _losses(run: Path) -> list[dict[str, float]]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k.startswith(("loss/", "scores/", "aug/"))} for r in rows if "loss/G" in r]


def _state(run: Path) -> dict:
    return ckpt.read_meta(ckpt.resolve_checkpoint(run))["step_state"]


def test_config_json_says_what_trains(imgs, tmp_path, one_thread):
    """Hinge, DiffAugment and the CPU's batch are the run's recorded settings; the step records its recon distance
    (exact resume with the defaults is in tests/train/test_resume_defaults.py)."""
    run = tmp_path / "run"
    _train(imgs, "--arch", "fastgan", "--size", "32", "--capacity", "0.05", "--z-dim", "16", "--device", "cpu",
           "--grid-samples", "4", "--seed", "3", "--out", run, "--steps", "3", "--no-watch")
    train = json.loads((run / "config.json").read_text())["train"]
    assert (train["loss"], train["aug"], train["aug_ops"], train["aug_p"], train["batch"]) == (
        "hinge", "diffaug", fg.FAMILY_AUG_OPS, fg.FAMILY_AUG_P, fg.CPU_BATCH)
    assert _state(run)["recon_loss"] in ("lpips", "pixel+ssim")
    rows = _losses(run)
    assert all(r["aug/p"] == fg.FAMILY_AUG_P for r in rows) and all(r["loss/recon"] > 0 for r in rows)


def test_the_users_aug_wins(imgs, tmp_path, one_thread):
    run = tmp_path / "ada"
    _train(imgs, *TINY, "--out", run, "--steps", "2", "--aug", "ada", "--sample-every", "0", "--no-watch")
    assert json.loads((run / "config.json").read_text())["train"]["aug"] == "ada"
    assert "ada" in _state(run)  # ADA's controller is saved as for every family


def test_resume_refuses_another_reconstruction_distance(imgs, tmp_path, monkeypatch, one_thread):
    """A run trained with LPIPS must not silently continue with pixel + SSIM (its weights went missing)."""
    run = tmp_path / "r"
    monkeypatch.setattr(fg, "recon_distance", lambda device: ("lpips", fg.pixel_ssim_distance))
    _train(imgs, *TINY, "--out", run, "--steps", "1", "--sample-every", "0", "--no-watch")
    assert _state(run)["recon_loss"] == "lpips"
    monkeypatch.setattr(fg, "recon_distance", lambda device: ("pixel+ssim", fg.pixel_ssim_distance))
    from ganplug.train.config import TrainConfig
    from ganplug.train.loop import train

    saved = TrainConfig.from_dict(json.loads((run / "config.json").read_text())["train"])
    with pytest.raises(UserError, match="'lpips' reconstruction loss"):
        train(TrainConfig.from_dict({**saved.to_dict(), "steps": 2}), resume=True)


def test_transfer_with_freeze_d_keeps_the_first_blocks(imgs, tmp_path, one_thread):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _train(imgs, *TINY, "--out", src, "--steps", "2", "--sample-every", "0", "--no-watch")
    _train(imgs, *TINY, "--out", dst, "--steps", "2", "--sample-every", "0", "--no-watch",
           "--init-from", src, "--freeze-d", "2")
    a = ckpt.read_tensors(ckpt.resolve_checkpoint(src))
    b = ckpt.read_tensors(ckpt.resolve_checkpoint(dst))
    frozen = [k for k in a if k.startswith(("D.blocks.0.", "D.blocks.1.", "D.small_blocks.0.", "D.small_blocks.1."))
              and "running" not in k
              and "num_batches" not in k and not k.endswith(("._u", "._v"))]
    assert any(k.startswith("D.small_blocks.") for k in frozen)  # both branches of the default two-scale D
    assert frozen and all(torch.equal(a[k], b[k]) for k in frozen)
    trained = [k for k in a if k.startswith("D.head.") and k.endswith("original")]
    assert trained and not all(torch.equal(a[k], b[k]) for k in trained)


def test_a_cpu_run_gets_a_quarter_of_the_papers_widths_unless_asked(imgs, tmp_path, capsys):
    """Capacity 1 costs ~9x per image on a CPU; the default there is 0.25, written to the run's config."""
    def model(*extra) -> dict:
        assert main(["train", str(imgs), "--arch", "fastgan", "--out", str(tmp_path / "r"), "--device", "cpu",
                     "--dry-run", *extra]) == 0
        return json.loads(capsys.readouterr().out)["model"]

    assert model()["capacity"] == fg.CPU_CAPACITY
    assert model("--capacity", "1")["capacity"] == 1.0
    # judged without the device being there, as the batch is: a GPU run's config still loads on a laptop
    assert fg.model_defaults(TrainConfig(data="", out="", device="cuda:1")) == {"multiscale": True}
    assert fg.model_defaults(TrainConfig(data="", out="", device="cpu")) == {"capacity": fg.CPU_CAPACITY,
                                                                             "multiscale": True}


def test_a_cpu_run_trains_at_batch_32_a_gpu_at_the_papers_8_unless_asked(imgs, tmp_path, capsys, monkeypatch):
    """A CPU step costs about the same per image at 8 and 32, and 32 covered more of the data in the same
    time (docs/results.md); on a GPU the paper's 8 keeps 1024 px within a consumer card's memory."""
    from ganplug import device

    def batch(*extra) -> int:
        assert main(["train", str(imgs), "--arch", "fastgan", "--out", str(tmp_path / "r"), "--device", "cpu",
                     "--dry-run", *extra]) == 0
        return json.loads(capsys.readouterr().out)["batch"]

    assert fg.CPU_BATCH == 32 and batch() == 32
    assert batch("--batch", "8") == 8
    assert TrainConfig.for_family("fastgan", data="", out="", device="cpu", batch=12).batch == 12
    # the family's choice is judged without the device being there: a GPU machine's config checks anywhere
    saved = {**TrainConfig.for_family("fastgan", data="", out="", device="cpu").to_dict(), "device": "cuda:1"}
    TrainConfig.from_dict(saved).check_options()
    monkeypatch.setattr(device, "resolve_device", lambda name="auto": torch.device("cuda"))
    assert TrainConfig.for_family("fastgan", data="", out="").batch == 8
    assert TrainConfig.for_family("dcgan", data="", out="").batch == TrainConfig(data="", out="").batch  # theirs


def test_a_new_run_trains_gs_small_image_and_ds_small_branch(imgs, tmp_path, one_thread):
    """A new run is multiscale: G's small head and D's small branch and decoder are in the checkpoint and
    learn (they differ from a run's first step to its third); `--model multiscale=false` leaves them out."""
    runs = {}
    for steps in (1, 3):
        runs[steps] = tmp_path / f"s{steps}"
        _train(imgs, *TINY, "--out", runs[steps], "--steps", steps, "--seed", "5", "--sample-every", "0",
               "--no-watch")
    assert json.loads((runs[3] / "config.json").read_text())["model"]["multiscale"] is True
    a, b = (ckpt.read_tensors(ckpt.resolve_checkpoint(runs[s])) for s in (1, 3))
    for prefix in ("G.to_small.", "D.small_blocks.0.", "D.small_head.", "D.decode_small."):
        keys = [k for k in a if k.startswith(prefix) and k.endswith("original")]
        assert keys and not all(torch.equal(a[k], b[k]) for k in keys), prefix
    single = tmp_path / "single"
    _train(imgs, *TINY, "--out", single, "--steps", 1, "--sample-every", "0", "--no-watch",
           "--model", "multiscale=false")
    assert json.loads((single / "config.json").read_text())["model"]["multiscale"] is False
    assert not any("small" in k for k in ckpt.read_tensors(ckpt.resolve_checkpoint(single)))
