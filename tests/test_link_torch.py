"""scripts/link_torch.py seeds the core-smoke venv with .venv's torch: it must take torch and what torch
requires, and nothing more (an extra package slipping in would hide a core command that imports it)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "link_torch.py"


@pytest.fixture(scope="module")
def link_torch():
    spec = importlib.util.spec_from_file_location("link_torch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_dist(site: Path, name: str, requires: Sequence[str] = (), files: Sequence[str] = ()) -> None:
    """A minimal installed distribution: dist-info with METADATA and RECORD, plus the files RECORD lists."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: " + name + "\nVersion: 1.0\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
    for rel in files:
        path = (site / rel).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {rel}\n")
    (info / "RECORD").write_text("".join(f"{rel},,\n" for rel in (*files, f"{info.name}/METADATA")))


def test_closure_follows_requirements_and_skips_extras_and_other_platforms(link_torch, tmp_path, monkeypatch):
    site = tmp_path / "site"
    fake_dist(site, "alpha", ["beta>=1", 'delta; extra == "fancy"', 'eps; sys_platform == "no-such-os"'])
    fake_dist(site, "beta", ["Gamma_Pkg"])
    fake_dist(site, "gamma-pkg", ["alpha"])  # a cycle must end
    for other in ("delta", "eps", "zeta"):  # installed, so following them by mistake would find them
        fake_dist(site, other)
    monkeypatch.syspath_prepend(str(site))
    names = sorted(d.metadata["Name"] for d in link_torch.closure("alpha"))
    assert names == ["alpha", "beta", "gamma-pkg"]


def test_link_tree_hard_links_site_packages_files_and_leaves_scripts_out(link_torch, tmp_path, monkeypatch):
    # laid out as venvs are: RECORD names console scripts relative to site-packages, in ../../bin
    site, target = tmp_path / "src/lib/site-packages", tmp_path / "dst/lib/site-packages"
    fake_dist(site, "alpha", files=["alpha/__init__.py", "alpha/sub/data.bin", "../../bin/alpha-cli"])
    monkeypatch.syspath_prepend(str(site))
    target.mkdir(parents=True)
    n = link_torch.link_tree(link_torch.closure("alpha"), target)
    copied = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert copied == ["alpha-1.0.dist-info/METADATA", "alpha/__init__.py", "alpha/sub/data.bin"]
    assert n == 3
    # the same inode: a link, not a copy (both live under tmp_path, one file system)
    assert os.stat(target / "alpha/sub/data.bin").st_ino == os.stat(site / "alpha/sub/data.bin").st_ino
    assert (tmp_path / "src/bin/alpha-cli").is_file()
    assert not (tmp_path / "dst/bin").exists(), "a console script (its shebang names the other venv) was linked"


def test_the_real_torch_closure_holds_no_extra_of_ganplug(link_torch):
    names = {d.metadata["Name"].lower().replace("_", "-") for d in link_torch.closure("torch")}
    assert "torch" in names
    extras = {"scipy", "clean-fid", "matplotlib", "fastapi", "uvicorn", "starlette", "imageio", "imageio-ffmpeg",
              "torchvision", "scikit-learn", "lpips", "pytorch-msssim", "torch-fidelity", "prdc", "httpx"}
    assert not names & extras


def test_refuses_another_torch_version_and_links_nothing(tmp_path):
    # the target is this very venv: a link attempt would fail loudly, so a clean exit 1 proves none was made
    r = subprocess.run([sys.executable, str(SCRIPT), sys.executable, "torch==0.0.1"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1
    assert "not torch==0.0.1; not linking" in r.stderr
    assert "linked" not in r.stdout
