"""`ganplug demo` tells the truth about what it made, and its output never litters the repository."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch
from PIL import Image

from ganplug.cli.app import main
from ganplug.cli.demo_cmd import SHIPPED_NAME, shipped_model

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_shows_the_shipped_model_at_once_then_fine_tunes(tmp_path, capsys, one_thread):
    out = tmp_path / "demo"
    assert main(["demo", "--minutes", "0.05", "--out", str(out), "--device", "cpu"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "the model that ships with ganplug" in said and "CC-BY 4.0" in said
    assert "0.05 minutes of fine-tuning" in said
    assert "verdict:" in said and "on top of the shipped model's" in said
    assert f"ganplug serve --models {out / 'fine-tune'}" in said
    for name in ("shipped-samples.png", "shipped-morph.gif", "fine-tuned-samples.png", "fine-tuned-morph.gif"):
        assert (out / name).is_file(), name
    assert Image.open(out / "shipped-samples.png").mode == "RGBA"  # cut-outs with real transparency
    config = json.loads((out / "fine-tune" / "config.json").read_text())
    assert config["train"]["arch"] == "fastgan" and config["init_from"].endswith(SHIPPED_NAME)


def test_the_shipped_model_is_small_licensed_and_varied():
    from ganplug.checkpoint import load_generator, read_meta
    from ganplug.sampling import generate_all

    path = shipped_model()
    assert path.stat().st_size <= 10_000_000
    assert "CC-BY 4.0" in read_meta(path)["notice"] and "CC-BY 4.0" in (path.parent / "NOTICE").read_text()
    model = load_generator(path)
    assert (model.spec.arch, model.spec.size, model.spec.channels) == ("fastgan", 64, 4)
    x = generate_all(model.G, range(32)).float()
    assert (x[:, 3] < 128).float().mean() > 0.1 and (x[:, 3] > 128).float().mean() > 0.3  # cut-outs
    diffs = (x[:, None] - x[None]).abs().mean((2, 3, 4))
    assert diffs[~torch.eye(32, dtype=torch.bool)].min() > 5  # 32 seeds, 32 different images


def test_one_minute_is_singular(capsys):
    from ganplug.cli.demo_cmd import _minutes

    assert _minutes(1) == "1 minute" and _minutes(3) == "3 minutes" and _minutes(0.5) == "0.5 minutes"


def test_the_default_demo_folder_is_ignored_by_git():
    for name in ("ganplug-demo", "ganplug-demo-2"):
        proc = subprocess.run(["git", "check-ignore", "-q", f"{name}/samples-final.png"], cwd=REPO)
        assert proc.returncode == 0, f"{name}/ is not in .gitignore"


def test_early_is_judged_by_images_seen_whatever_the_batch(tmp_path):
    """A CPU fine-tunes at batch 32, a GPU at 8: the same few steps are 4x the images, and the advice to
    train on asks for the steps that reach MEANINGFUL_IMAGES at the run's own batch."""
    from ganplug.checkpoint import load_generator
    from ganplug.cli.demo_cmd import MEANINGFUL_IMAGES, demo_data_dir, judge_demo
    from ganplug.train.config import TrainConfig

    model = load_generator(shipped_model())
    for batch, needed in ((32, 250), (8, 1000)):
        cfg = TrainConfig.for_family("fastgan", data=str(demo_data_dir()), out=str(tmp_path), size=model.spec.size,
                                     batch=batch)
        said = judge_demo(model.G, 3, cfg, tmp_path, pretrained=0)
        assert f"only 3 steps ({3 * batch} images seen)" in said and f"about {MEANINGFUL_IMAGES:,} images" in said
        assert f"--steps {needed}`" in said
        assert "only" not in judge_demo(model.G, 3, cfg, tmp_path, pretrained=MEANINGFUL_IMAGES)
