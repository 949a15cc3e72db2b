"""Packaging: eval/ and cli/ install as ganplug.eval and ganplug.cli, and every sub-package is listed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAPPED = {"ganplug": REPO / "ganplug", "ganplug.eval": REPO / "eval", "ganplug.cli": REPO / "cli"}


def _packages_on_disk() -> set[str]:
    found = set()
    for name, root in MAPPED.items():
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    return found


def test_package_list_matches_the_tree():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    data_only = set(cfg["package-data"])  # folders of files, no __init__.py (demo images, the web page)
    assert set(cfg["packages"]) == _packages_on_disk() | data_only
    for name in data_only:
        assert (REPO / name.replace(".", "/")).is_dir() and not (REPO / name.replace(".", "/") / "__init__.py").exists()
    assert cfg["package-dir"] == {"ganplug": "ganplug", "ganplug.eval": "eval", "ganplug.cli": "cli"}


def test_wheel_installs_under_ganplug_only(tmp_path):
    """Build the real wheel: no top-level `eval` or `cli`, demo data included, console script declared."""
    pytest.importorskip("setuptools")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "-w",
                           str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # a quiet install: no warnings about the project's own packaging configuration
    assert "BuildBackendWarning" not in proc.stdout + proc.stderr
    assert "absent from the `packages` configuration" not in proc.stdout + proc.stderr
    (wheel,) = tmp_path.glob("ganplug-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "eval" not in tops and "cli" not in tops
    assert "ganplug/eval/__init__.py" in names and "ganplug/cli/app.py" in names
    assert sum(n.startswith("ganplug/demo_data/") and n.endswith(".png") for n in names) >= 400
    assert "ganplug/demo_data/NOTICE" in names
    shipped = [n for n in names if n.startswith("ganplug/demo_model/") and n.endswith(".safetensors")]
    assert shipped and "ganplug/demo_model/NOTICE" in names  # the model the demo shows first, with its licence
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ganplug = ganplug.cli.app:main" in zipfile.ZipFile(wheel).read(entry).decode()
