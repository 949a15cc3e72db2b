"""The HTML report: self-contained content, JSON from the CLI, and a render in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ganplug.cli.app import app
from ganplug.eval import pipeline, report
from ganplug.eval.options import EvalOptions


@pytest.fixture(scope="module")
def content(tiny_run, shapes_dir) -> report.ReportContent:
    opts = EvalOptions(metrics=("pr", "dc"), n=48, collapse=True, collapse_n=48, all_checkpoints=True)
    return pipeline.run(tiny_run, shapes_dir, opts).report


def test_report_is_self_contained_and_says_the_verdict_first(content, tmp_path):
    page = tmp_path / "r.html"
    report.write_report(page, content)
    text = page.read_text()
    assert not re.search(r"""(src|href)=['"](?!data:)""", text)  # every image embedded, no external file
    verdict = content.collapse["verdict"]
    assert text.index(verdict.capitalize()) < text.index("Collapse statistics") < text.index("Samples")
    grid, pairs = min(report.GRID, len(content.fake_images)), len(content.memorisation["closest"])
    assert grid == 48 and pairs == 8
    assert text.count("<img src='data:image/png;base64,") == grid + 2 * pairs
    assert text.count("<img class='plot' src='data:image/png;base64,") == 3  # bins, checkpoints, losses
    assert "Checkpoints" in text and "★ best" in text and "Training losses" in text
    assert "Metrics" in text and "Precision: share of samples" in text  # the registry's help beside each metric
    steps = [r["step"] for r in content.checkpoints]
    assert steps == sorted(steps) and sum(r["best"] for r in content.checkpoints) == 1
    assert content.losses and content.losses[0]["step"] == 1
    assert "Judged in handcrafted-v1 features." in text
    with pytest.raises(Exception, match="--force"):
        report.write_report(page, content)


def test_a_verdict_in_another_space_is_shown_beside_the_network_free_one(content, tmp_path):
    from dataclasses import replace

    both = replace(content, feature_space="dinov2-vitl14",
                   by_space={"dinov2-vitl14": {"verdict": content.collapse["verdict"], "severity": 0.1},
                             "handcrafted-v1": {"verdict": "partial collapse", "severity": 0.42}})
    page = tmp_path / "both.html"
    report.write_report(page, both)
    text = page.read_text()
    assert "Judged in dinov2-vitl14 features. In handcrafted-v1 features: partial collapse (severity 0.42)." in text


def test_eval_cli_adds_the_verdict_to_json_and_writes_the_report(tiny_run, shapes_dir, tmp_path):
    out, page = tmp_path / "e.json", tmp_path / "e.html"
    r = CliRunner().invoke(app, ["eval", str(tiny_run), "--real", str(shapes_dir), "--metrics", "pr,dc", "--n", "32",
                                 "--json", str(out), "--report", str(page), "--collapse-n", "32"])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["collapse"]["verdict"] in ("healthy", "partial collapse", "collapse")
    assert data["fake"]["kind"] == "checkpoint" and "pr" in data["metrics"]
    assert 0 <= data["memorisation"]["rate"] <= 1
    assert f"verdict {data['collapse']['verdict']}" in r.output and page.is_file()


def test_report_renders_in_headless_chromium(content, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required in CI (installed by .ci/run) but was not found")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    page, shot = tmp_path / "r.html", tmp_path / "r.png"
    report.write_report(page, content)
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
           page.as_uri()]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (2000, 1280)
    # The verdict box's coloured left border is drawn near the top of the page.
    colour = {"healthy": (0x1e, 0x84, 0x49), "partial collapse": (0xb9, 0x77, 0x0e), "collapse": (0xc0, 0x39, 0x2b)}[
        content.collapse["verdict"]]
    top = img[:500]
    assert (np.abs(top - np.array(colour)).sum(-1) < 30).sum() > 500
    # Embedded images decoded and drawn: many distinct colours below the verdict, not a blank page.
    assert len(np.unique(img[500:].reshape(-1, 3), axis=0)) > 200
