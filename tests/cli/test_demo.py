"""`ganplug demo` tells the truth about what it made, and its output never litters the repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ganplug.cli.app import main

REPO = Path(__file__).resolve().parents[2]


def test_a_too_short_demo_says_its_grid_is_not_yet_meaningful(tmp_path, capsys, one_thread):
    out = tmp_path / "demo"
    assert main(["demo", "--minutes", "0.05", "--out", str(out), "--device", "cpu", "--batch", "16"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "of DCGAN training" in said and "0.05 minutes" in said
    assert "verdict: the grid is not yet meaningful" in said
    assert f"ganplug train --resume {out}" in said
    assert (out / "samples-final.png").is_file() and (out / "morph.gif").is_file()


def test_one_minute_is_singular(capsys):
    from ganplug.cli.demo_cmd import _minutes

    assert _minutes(1) == "1 minute" and _minutes(3) == "3 minutes" and _minutes(0.5) == "0.5 minutes"


def test_the_default_demo_folder_is_ignored_by_git():
    for name in ("ganplug-demo", "ganplug-demo-2"):
        proc = subprocess.run(["git", "check-ignore", "-q", f"{name}/samples-final.png"], cwd=REPO)
        assert proc.returncode == 0, f"{name}/ is not in .gitignore"
