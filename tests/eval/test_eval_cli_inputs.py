"""`ganplug eval` / `ganplug weights` end to end: schema, cache, skipping, and bad inputs (exit code 2)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from evalkit import standin_dir, twemoji_folder
from PIL import Image

from ganplug.cli.app import main
from ganplug.eval import evaluate
from ganplug.eval.features import weights


def _folder(tmp_path, name, n, size=32, seed=0, mode="RGB", sizes=None):
    d = tmp_path / name
    d.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        s = sizes[i % len(sizes)] if sizes else size
        arr = rng.integers(0, 256, (s, s, 3)).astype(np.uint8)
        img = Image.fromarray(arr).convert(mode) if mode != "RGB" else Image.fromarray(arr)
        img.save(d / f"img_{i:03d}.png")
    return d


def test_network_free_metrics_run_and_inception_ones_are_skipped_without_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "search_dirs", lambda spec, wd=None: [tmp_path / "nowhere"])
    fake, real = _folder(tmp_path, "f", 12, seed=1), _folder(tmp_path, "r", 12, seed=2, mode="L")
    out_json = tmp_path / "out.json"
    rc = main(["eval", str(fake), "--real", str(real), "--json", str(out_json)])  # the default metrics
    assert rc == 0
    data = json.loads(out_json.read_text())
    assert data["schema"] == "ganplug-eval/1"
    assert "inception-2015-12-05.pt not found" in data["skipped"]["fid"]
    assert set(data["metrics"]) == {"swd", "pr", "dc", "msssim", "vendi"}
    assert data["metrics"]["pr"]["feature_space"] == "handcrafted-v1"
    assert data["metrics"]["vendi"]["feature_space"] == "handcrafted-v1" and data["metrics"]["vendi"]["real"] > 1
    assert any("mode L converted to RGB" in n for n in data["real"]["notes"])
    assert "at least 20 real images" in data["skipped"]["collapse"]  # too few for the verdict: skipped, not fatal
    assert main(["eval", str(fake), "--real", str(real), "--metrics", "swd", "--json", str(out_json)]) == 2  # exists


def test_only_unavailable_metrics_exit_2_naming_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(weights, "search_dirs", lambda spec, wd=None: [tmp_path / "nowhere"])
    fake = _folder(tmp_path, "f", 4)
    assert main(["eval", str(fake), "--real", str(fake), "--metrics", "fid,kid"]) == 2
    err = capsys.readouterr().err
    assert "inception-2015-12-05.pt" in err and "nvlabs-fi-cdn" in err and "--weights-dir" in err


def test_wrong_hash_is_refused_naming_expected_and_found(tmp_path, capsys):
    (tmp_path / "vgg16-397923af.pth").write_bytes(b"not the weights")
    with pytest.raises(weights.WeightsError, match=r"expected sha256 starting 397923af, found sha256 [0-9a-f]{64}"):
        weights.locate("vgg16", tmp_path)
    assert main(["weights", "list", "--weights-dir", str(tmp_path)]) == 0
    assert "WRONG HASH" in capsys.readouterr().out


def test_weights_fetch_without_internet_says_where_to_put_the_file(tmp_path, monkeypatch, capsys):
    offline = dataclasses.replace(weights.LPIPS_VGG, url="http://127.0.0.1:9/vgg.pth")
    monkeypatch.setitem(weights.KNOWN, "lpips-vgg16", offline)
    assert main(["weights", "fetch", "lpips-vgg16", "--dest", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "could not download vgg.pth" in err and str(tmp_path / "vgg.pth") in err
    assert not list(tmp_path.iterdir())  # no partial file left behind


def test_bad_inputs_exit_2(tmp_path, capsys):
    imgs = _folder(tmp_path, "imgs", 4)
    empty = tmp_path / "empty"
    empty.mkdir()
    np.savez(tmp_path / "bad.npz", mu=np.zeros(2048), sigma=np.zeros((10, 10)))
    cases = [
        ["eval", str(empty), "--real", str(imgs), "--metrics", "swd"],  # no images
        ["eval", str(tmp_path / "bad.npz"), "--real", str(imgs), "--metrics", "fid"],  # stats as FAKE
        ["eval", str(imgs), "--real", str(tmp_path / "bad.npz"), "--metrics", "fid"],  # wrong shapes
        ["eval", str(imgs), "--real", str(imgs), "--metrics", "fid,bogus"],  # unknown metric
        ["eval", str(tmp_path / "missing"), "--real", str(imgs)],  # no such path
        ["eval", str(imgs), "--metrics", "swd"],  # SWD without REAL: nothing can run
    ]
    for argv in cases:
        assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert "holds no images" in err and "sigma (10, 10)" in err and "bogus" in err and "needs a REAL" in err


def test_mixed_sizes_are_resized_and_noted(tmp_path):
    fake = _folder(tmp_path, "f", 6, sizes=[32, 48])
    real = _folder(tmp_path, "r", 6, seed=3)
    out = evaluate(fake, real, metrics="swd,msssim", swd_images=6)
    assert any("2 sizes" in n for n in out["fake"]["notes"])
    assert out["metrics"]["swd"]["resolution"] == 32


def test_full_suite_on_twemoji_with_standin_and_cache(tmp_path):
    fake, real = twemoji_folder(200, 12), twemoji_folder(300, 12)
    kw = dict(metrics="fid,kid,is,pr,dc,swd,msssim", weights_dir=str(standin_dir()), allow_unverified_weights=True,
              cache_dir=str(tmp_path / "cache"), swd_images=12, device="cpu")
    first = evaluate(fake, real, json_path=tmp_path / "a.json", **kw)
    second = evaluate(fake, real, **kw)
    assert first["cache"]["inception"] == "computed, cached" and second["cache"]["inception"] == "cache hit"
    for m in ("fid", "kid", "is", "pr", "dc"):
        assert second["metrics"][m]["value"] == pytest.approx(first["metrics"][m]["value"], rel=1e-12)
    assert first["metrics"]["kid"]["subset_size"] == 12 and any("KID subset size reduced" in n for n in first["notes"])
    assert first["metrics"]["is"]["splits"] == 10 and first["metrics"]["is"]["value"] >= 1.0
    assert first["metrics"]["fid"]["value"] > 0 and first["skipped"] == {}
    assert json.loads((tmp_path / "a.json").read_text())["metrics"]["fid"]["value"] == first["metrics"]["fid"]["value"]
    # the same set against itself: FID ~0, precision and recall 1
    same = evaluate(real, real, **{**kw, "metrics": "fid,pr"})
    assert abs(same["metrics"]["fid"]["value"]) < 1e-6 * first["metrics"]["fid"]["value"]
    assert same["metrics"]["pr"]["precision"] == 1.0 and same["metrics"]["pr"]["recall"] == 1.0


def test_checkpoint_source_records_seeds_and_stats_export(tiny_run, tmp_path):
    real = _folder(tmp_path, "r", 10, seed=5)
    stats = tmp_path / "fake_stats.npz"
    out = evaluate(tiny_run, real, metrics="swd,msssim,pr", n=10, seed=100, swd_images=10, pr_features="handcrafted")
    assert out["fake"]["kind"] == "checkpoint" and out["fake"]["seeds"] == [100, 109]
    assert out["metrics"]["msssim"]["pairs"] == 5
    out2 = evaluate(tiny_run, real, metrics="fid", n=10, weights_dir=str(standin_dir()),
                    allow_unverified_weights=True, save_stats=str(stats), use_cache=False)
    with np.load(stats) as z:
        assert z["mu"].shape == (2048,) and z["sigma"].shape == (2048, 2048)
    # FAKE's own statistics as REAL: FID of a set against its own Gaussian is ~0
    out3 = evaluate(tiny_run, stats, metrics="fid", n=10, weights_dir=str(standin_dir()),
                    allow_unverified_weights=True)
    assert out3["real"]["kind"] == "stats" and abs(out3["metrics"]["fid"]["value"]) < 1e-6 * out2["metrics"]["fid"][
        "value"] + 1e-3
