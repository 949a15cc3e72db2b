"""Evaluation in one pass: each input opened once, the registry as the extension point, order-free MS-SSIM."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from evalkit import standin_dir
from PIL import Image

from ganplug.cli.app import main
from ganplug.eval import evaluate, registry, sources
from ganplug.eval.metrics.msssim import ms_ssim
from ganplug.eval.options import DEFAULT_METRICS
from tests.conftest import shape_image, write_shapes


def _ordered_repeats(root, k: int = 8, r: int = 8):
    """k distinct images, each repeated r times in file order; and a shuffled copy of the same folder."""
    ordered, shuffled = root / "ordered", root / "shuffled"
    ordered.mkdir()
    shuffled.mkdir()
    rng = np.random.default_rng(0)
    distinct = [shape_image(rng, 64) for _ in range(k)]
    for i, img in enumerate(distinct):
        for j in range(r):
            img.save(ordered / f"img_{i * r + j:03d}.png")
    for new, old in enumerate(np.random.default_rng(1).permutation(k * r)):
        shutil.copy(ordered / f"img_{old:03d}.png", shuffled / f"x_{new:03d}.png")
    return ordered, shuffled, distinct


def _random_pairs_expectation(distinct, r: int) -> float:
    """Exact mean MS-SSIM over all distinct pairs of the repeated set (copies of one image score 1)."""
    x = torch.from_numpy(np.stack([np.asarray(im) for im in distinct])).permute(0, 3, 1, 2).double()
    i, j = np.triu_indices(len(x), 1)
    cross = ms_ssim(x[i], x[j]).numpy().sum() * 2  # ordered pairs of different images, per copy pair
    n = len(x) * r
    return float((n * (r - 1) + r * r * cross) / (n * (n - 1)))


def test_msssim_is_independent_of_file_order_and_uses_random_pairs(tmp_path):
    ordered, shuffled, distinct = _ordered_repeats(tmp_path)
    expected = _random_pairs_expectation(distinct, 8)
    values = []
    for seed in range(3):
        a = evaluate(ordered, metrics="msssim", seed=seed)["metrics"]["msssim"]
        b = evaluate(shuffled, metrics="msssim", seed=seed)["metrics"]["msssim"]
        assert a["value"] == b["value"] and a["pairs"] == b["pairs"] == 32  # the same set: the same number
        values.append(a["value"])
    assert expected < 0.5  # consecutive pairs of the ordered folder all were copies: 1.0
    assert np.mean(values) == pytest.approx(expected, abs=0.1)


def test_eval_opens_each_input_once(tiny_run, shapes_dir, tmp_path, monkeypatch):
    """Metrics, the collapse verdict, the report and the JSON all come from one decode/sample per input."""
    from ganplug import sampling

    decoded, seeds = Counter(), []
    real_open, real_generate = sources.open_image, sampling.generate

    def counting_open(path, *a, **kw):
        decoded[path.name] += 1
        return real_open(path, *a, **kw)

    def counting_generate(G, batch_seeds, *a, **kw):
        seeds.extend(batch_seeds)
        return real_generate(G, batch_seeds, *a, **kw)

    monkeypatch.setattr(sources, "open_image", counting_open)
    monkeypatch.setattr(sampling, "generate", counting_generate)
    out, page = tmp_path / "e.json", tmp_path / "e.html"
    rc = main(["eval", str(tiny_run), "--real", str(shapes_dir), "--metrics", "fid,kid,pr,swd,msssim", "--n", "32",
               "--collapse-n", "20", "--weights-dir", str(standin_dir()), "--allow-unverified-weights",
               "--device", "cpu", "--json", str(out), "--report", str(page)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert set(data["metrics"]) == {"fid", "kid", "pr", "swd", "msssim"} and data["skipped"] == {}
    assert data["collapse"]["stats"]["n"] == 20 and data["memorisation"]["samples"] == 20 and page.is_file()
    assert decoded == Counter({f.name: 1 for f in shapes_dir.glob("*.png")})  # every real file decoded once
    assert sorted(seeds) == list(range(32))  # every seed sampled once; the verdict reuses the first 20


def test_library_call_gives_what_the_cli_writes(shapes_dir, tmp_path):
    fake = write_shapes(tmp_path / "fake", 24, seed=7)
    out = tmp_path / "cli.json"
    args = dict(metrics="pr,swd,msssim", pr_features="handcrafted", use_cache=False)
    assert main(["eval", str(fake), "--real", str(shapes_dir), "--metrics", args["metrics"], "--pr-features",
                 "handcrafted", "--no-cache", "--json", str(out)]) == 0
    cli = json.loads(out.read_text())
    lib = json.loads(json.dumps(evaluate(fake, shapes_dir, collapse=True, **args), default=str))
    for key in ("metrics", "skipped", "collapse", "memorisation", "fake", "real", "notes"):
        assert lib[key] == cli[key], key


def test_a_new_metric_is_one_registry_entry(tmp_path, monkeypatch):
    """The extension point: an entry declaring its needs gets them from the same pass as the others."""
    seen = {}

    def mean_norm(m: registry.MetricInput) -> dict:
        seen["hand"] = m.fake.hand.shape
        return {"value": float(np.linalg.norm(m.fake.hand, axis=1).mean())}

    monkeypatch.setitem(registry.METRICS, "handnorm", registry.Metric(
        "handnorm", mean_norm, frozenset({registry.HANDCRAFTED}), real="unused"))
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = evaluate(folder, metrics="handnorm,msssim")
    assert seen["hand"] == (5, 384) and out["metrics"]["handnorm"]["value"] == pytest.approx(np.sqrt(3))
    assert out["metrics"]["msssim"]["pairs"] == 2


def test_registry_declarations():
    assert DEFAULT_METRICS == tuple(n for n, m in registry.METRICS.items() if m.default)
    for m in registry.METRICS.values():
        assert m.needs <= set(registry.NEEDS) and m.help, m.name
        assert (registry.IMAGES in m.needs) == (m.stream is not None), m.name
    with pytest.raises(ValueError, match="bad declaration"):
        registry.register("bogus", needs={"telepathy"})
