"""`ganplug prep` on the command line: exit codes, messages, the summary table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prep_assets import distinct_designs

from ganplug.cli.app import main
from ganplug.data import open_dataset


def test_prep_twemoji_subset(twemoji_subset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "tw32"
    assert main(["prep", str(twemoji_subset), str(out), "--size", "32", "--workers", "2", "--holdout", "0.2",
                 "--seed", "1"]) == 0
    captured = capsys.readouterr()
    assert "training images" in captured.out and "40" in captured.out
    assert "img/s" in captured.err  # the progress bar's rate column
    assert "kept transparency (RGBA)" in captured.err and "--no-alpha" in captured.err  # emoji are cut-outs
    ds = open_dataset(out)
    assert ds.images.shape == (40, 32, 32, 4) and len(open_dataset(out, split="holdout")) == 10
    assert json.loads((out / "dataset.json").read_text())["options"]["holdout"] == 0.2

    assert main(["prep", str(twemoji_subset), str(out), "--size", "32", "--holdout", "0.2", "--seed", "1"]) == 0
    assert "up to date" in " ".join(capsys.readouterr().err.split())  # the message wraps at a long tmp path

    assert main(["prep", str(twemoji_subset), str(out), "--size", "64", "--holdout", "0.2", "--seed", "1"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "size: 32 -> 64" in err and "Traceback" not in err


def test_prep_no_alpha_composites_the_cutouts(twemoji_subset: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "rgb"
    assert main(["prep", str(twemoji_subset), str(out), "--size", "16", "--no-alpha", "--background", "black"]) == 0
    assert "kept transparency" not in capsys.readouterr().err
    ds = open_dataset(out)
    assert ds.channels == 3 and ds.meta["alpha"] == {"requested": "off", "kept": False}
    corners = ds.images[:, 0, 0]
    assert (corners == 0).all(-1).mean() > 0.6  # most emoji's transparent corners, composited onto black


def test_prep_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["prep", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    distinct_designs(tmp_path / "src", 2)
    assert main(["prep", str(tmp_path / "src"), str(tmp_path / "out"), "--split", "spiral"]) == 2
    assert "--split 'spiral'" in capsys.readouterr().err
    assert main(["prep", str(tmp_path / "src"), str(tmp_path / "out"), "--brightness", "2,1"]) == 2
    assert not (tmp_path / "out").exists()


def test_prep_cli_all_options_are_recorded(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    distinct_designs(tmp_path / "src", 3)
    out = tmp_path / "out"
    args = ["prep", str(tmp_path / "src"), str(out), "--size", "24", "--background", "#102030", "--fit", "crop",
            "--resample", "box", "--split", "none", "--no-dedup", "--mirror", "--brightness", "0.9,1.1",
            "--color", "0.8,1.0", "--jitter", "28", "--copies", "2", "--seed", "9", "--pairs", "edges",
            "--max-pixels", "5000000", "--hash", "contents", "--quiet"]
    assert main(args) == 0
    assert capsys.readouterr().out == ""
    opts = json.loads((out / "dataset.json").read_text())["options"]
    assert opts == {
        "size": 24, "background": "#102030", "keep_alpha": False, "fit": "crop", "resample": "box", "split": "none",
        "dedup": False, "dedup_threshold": 12.0, "mirror": True, "brightness": [0.9, 1.1], "color": [0.8, 1.0],
        "jitter": 28, "copies": 2, "seed": 9, "holdout": 0.0, "pairs": "edges", "max_pixels": 5_000_000,
        "hash": "contents",
    }
    assert len(open_dataset(out)) == 9
