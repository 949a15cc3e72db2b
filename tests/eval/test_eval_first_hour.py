"""`ganplug eval` in a new user's first hour (issue 18): progress in a pipe, `--n auto`, nothing skipped in
silence, stand-in numbers flagged, a verdict that knows the model is young, a square sample grid."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from evalkit import standin_dir
from PIL import Image

from ganplug.cli.app import main
from ganplug.eval import pipeline, report, sizing, sources
from ganplug.eval.features import weights
from tests.conftest import write_shapes


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """A machine without any pretrained network file."""
    monkeypatch.setattr(weights, "search_dirs", lambda spec, wd=None: [tmp_path / "nowhere"])


@pytest.fixture(scope="module")
def piped(tiny_run, shapes_dir, tmp_path_factory):
    """One real `ganplug eval` in a subprocess, stderr piped as in a log or CI."""
    out = tmp_path_factory.mktemp("piped")
    argv = [sys.executable, "-m", "ganplug.cli.app", "eval", str(tiny_run), "--real", str(shapes_dir),
            "--metrics", "pr,swd,msssim", "--n", "48", "--collapse-n", "48", "--device", "cpu", "--no-cache",
            "--json", str(out / "e.json"), "--report", str(out / "r.html")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "60"}
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r, json.loads((out / "e.json").read_text()), (out / "r.html").read_text()


def test_progress_lines_for_each_input_in_a_pipe(piped):
    r, _, _ = piped
    err = r.stderr
    line = r"(\d+)/(\d+) \(\d+%\)  [\d,.]+ img/s  elapsed \d+:\d\d:\d\d  eta \d+:\d\d:\d\d"
    assert re.search(rf"^FAKE sampling \+ features {line}$", err, re.M), err
    assert re.search(rf"^REAL features {line}$", err, re.M), err
    assert re.search(r"^FAKE sampling \+ features 48/48 \(100%\)", err, re.M), err  # the closing line
    assert re.search(r"^metrics 3/3 \(100%\)", err, re.M) and re.search(r"^collapse check 1/1", err, re.M), err
    assert re.search(r"^report 1/1 \(100%\)", err, re.M), err
    assert "━" not in err and "\r" not in err and "\x1b[" not in err  # no squashed rich bar, no cursor codes
    for text in err.splitlines():  # one message per line: never two progress lines run together
        assert text.count("elapsed") <= 1, text
    lines = err.splitlines()
    assert len(lines) == len(set(lines)), "a closing progress line was printed twice"


def test_a_young_generator_gets_its_training_time_beside_the_verdict(piped):
    r, data, page = piped
    assert data["training"] == {"step": 6, "nimg": 48, "early": True, "early_below_nimg": 100_000,
                                "text": data["collapse"]["context"]}
    assert "Early in training" in data["collapse"]["context"] and "100,000 images" in data["collapse"]["context"]
    assert "--resume" in data["collapse"]["context"]
    assert r.stdout.index("verdict ") < r.stdout.index("Early in training")  # printed right under the verdict
    assert "<b>Early in training.</b>" in page


def test_the_sample_grid_is_square(piped):
    _, _, page = piped
    assert "grid-template-columns:repeat(8,96px)" in page  # 48 samples: 6 rows of 8, not rows of 11
    assert [report.grid_columns(n) for n in (48, 64, 36, 20, 24, 47, 1)] == [8, 8, 6, 5, 6, 7, 1]


def test_auto_n_is_sized_printed_first_and_recorded(tiny_run, shapes_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sizing, "FULL_N", 64)  # keep the test small: auto may pick 16 .. 64
    monkeypatch.setattr(sizing, "CPU_MIN_N", 16)
    out = tmp_path / "e.json"
    assert main(["eval", str(tiny_run), "--real", str(shapes_dir), "--metrics", "swd,msssim", "--device", "cpu",
                 "--collapse-n", "10", "--no-cache", "--json", str(out)]) == 0
    err = capsys.readouterr().err
    said = re.search(r"^--n auto: (\d+) samples on CPU, about \d+ (s|min) \(timed on this CPU\); for the full "
                     r"protocol: .*--n 50000.* on a GPU$", err, re.M)
    assert said and err.index(said.group(0)) < err.index("FAKE sampling"), err
    data = json.loads(out.read_text())
    n = int(said.group(1))
    assert 16 <= n <= 64 and data["settings"]["n"] == n and data["settings"]["n_auto"] is True
    assert data["sample_count"]["auto"] and data["sample_count"]["estimate_s"] > 0 and data["fake"]["count"] == n
    assert data["fake"]["seeds"] == [0, n - 1]
    # an explicit --n above what auto would pick on this CPU: the estimate comes first too
    monkeypatch.setattr(sizing, "CPU_BUDGET_S", 1e-6)
    assert main(["eval", str(tiny_run), "--real", str(shapes_dir), "--metrics", "swd", "--n", "40", "--device",
                 "cpu", "--no-collapse", "--no-cache"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^--n 40 on CPU will take about \d+ (s|min) .*; --n auto would take 16 samples", err, re.M), err


def test_auto_n_on_cuda_is_the_documented_protocol():
    count = sizing.SampleCount(sizing.FULL_N, True, "cuda")
    assert "10,000 samples" in count.message() and "--n 50000" in count.message()
    assert sizing.fit(180, 0.0, 0.1, 30) == 1500 and sizing.fit(10, 0.0, 1.0, 20) == 0
    assert sizing.fit(100, 1e-4, 0.0, 0) == 1000
    assert sizing.SampleCount(100, False, "cpu").message() is None  # small explicit counts: nothing to warn


def test_an_explicit_metric_without_its_file_is_an_error(tiny_run, shapes_dir, no_weights, capsys):
    assert main(["eval", str(tiny_run), "--real", str(shapes_dir), "--metrics", "fid,kid,is,ppl,pr", "--n", "16",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "--metrics asks for fid, kid, is, ppl" in err and "ganplug weights fetch inception vgg16" in err
    assert "inception-2015-12-05.pt" in err and "vgg16-397923af.pth" in err and "nvlabs-fi-cdn" in err
    assert "FAKE sampling" not in err  # refused before any work
    # asked by name but impossible for these inputs: an error too, not a silent skip
    assert main(["eval", str(shapes_dir), "--metrics", "fid,msssim"]) == 2
    assert "fid needs a REAL set" in capsys.readouterr().err


def test_a_default_metric_that_cannot_run_is_skipped_visibly(shapes_dir, tmp_path, no_weights, capsys):
    fake = write_shapes(tmp_path / "fake", 24, seed=7)
    out, page = tmp_path / "e.json", tmp_path / "r.html"
    assert main(["eval", str(fake), "--real", str(shapes_dir), "--no-cache", "--json", str(out),
                 "--report", str(page)]) == 0
    captured = capsys.readouterr()
    assert re.search(r"^skipping fid, kid, is: inception-2015-12-05.pt not found \(`ganplug weights fetch "
                     r"inception`", captured.err, re.M), captured.err
    data = json.loads(out.read_text())
    assert set(data["skipped"]) == {"fid", "kid", "is"} and set(data["metrics"]) == {"pr", "dc", "swd", "msssim",
                                                                                      "vendi"}
    assert all("ganplug weights fetch inception" in r for r in data["skipped"].values())
    assert data["settings"]["explicit_metrics"] is False
    text = page.read_text()
    assert "<h2>Skipped</h2>" in text and text.count("<tr class='skipped'>") == 3
    assert "fid     skipped: inception-2015-12-05.pt not found" in captured.out


def test_standin_numbers_are_flagged_and_exit_0(tmp_path, shapes_dir, capsys):
    found = weights.locate("inception", standin_dir(), allow_unverified=True)
    assert found.standin and found.status == "stand-in" and found.as_json()["status"] == "stand-in"
    fake = write_shapes(tmp_path / "fake", 24, seed=3)
    out, page = tmp_path / "e.json", tmp_path / "r.html"
    assert main(["eval", str(fake), "--real", str(shapes_dir), "--metrics", "fid,kid,swd", "--weights-dir",
                 str(standin_dir()), "--allow-unverified-weights", "--no-cache", "--device", "cpu", "--json",
                 str(out), "--report", str(page)]) == 0
    stdout = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["metrics"]["fid"]["weights"] == "stand-in" and "weights" not in data["metrics"]["swd"]
    assert data["weights"]["inception"]["status"] == "stand-in"
    [warning] = data["warnings"]
    assert warning.startswith("fid ") and ", kid " in warning and "stand-in network file" in warning
    assert re.search(r"^fid .*\[stand-in network file\]$", stdout, re.M) and f"warning: {warning}" in stdout
    assert "stand-in network file" in page.read_text() and "⚠ stand-in" in page.read_text()


def test_an_implausible_value_from_an_unpinned_file_is_flagged():
    info = {"inception": {"file": "inception-2015-12-05.pt", "path": "/x/inception-2015-12-05.pt",
                          "status": "hash not pinned", "verified": False}}
    results = {"fid": {"value": 3.3e6}, "kid": {"value": 0.1}, "pr": {"value": 0.5, "feature_space": "handcrafted-v1"}}
    [warning] = pipeline.flag_provenance(results, info)
    assert warning.startswith("fid 3.3e+06: outside what the published network produces") and "/x/" in warning
    assert results["fid"]["warning"] == "implausible" and "warning" not in results["kid"]
    assert results["kid"]["weights"] == "hash not pinned" and "weights" not in results["pr"]
    assert pipeline.flag_provenance({"fid": {"value": 23.0}}, info) == []  # a plausible FID: a note, no alarm


def test_eval_composites_through_the_one_shared_function():
    from ganplug.data.decode import apply_background
    from ganplug.ops import composite

    rgba = np.random.default_rng(0).integers(0, 256, (2, 9, 9, 4), dtype=np.uint8)
    assert np.array_equal(sources.composite(rgba, (10, 200, 30)), composite(rgba, (10, 200, 30)))
    im = Image.fromarray(rgba[0], "RGBA")
    assert np.array_equal(sources._to_rgb(im, (255, 255, 255)), np.asarray(apply_background(im, (255,) * 3, False)))
    assert np.array_equal(sources._to_rgb(im, None), rgba[0, ..., :3])
