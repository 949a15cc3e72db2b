"""pytest-benchmark for the Inception feature pipeline (resize + forward) and the Frechet distance."""

from __future__ import annotations

import numpy as np
import pytest

from ganplug.device import make_runtime
from ganplug.eval.features.inception import InceptionExtractor
from ganplug.eval.features.standin import save_standin_inception
from ganplug.eval.features.weights import locate
from ganplug.eval.metrics.fid import frechet_distance, gaussian_stats


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    save_standin_inception(d / "inception-2015-12-05.pt")
    return d


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_bench_inception_pipeline_16_images(benchmark, weights_dir, precision):
    ext = InceptionExtractor(locate("inception", weights_dir, allow_unverified=True), make_runtime("cpu", precision))
    imgs = list(np.random.default_rng(0).integers(0, 256, (16, 128, 128, 3)).astype(np.uint8))
    out = benchmark.pedantic(ext.extract, args=(imgs,), rounds=3, iterations=1)
    assert out.pool.shape == (16, 2048)


def test_bench_frechet_distance_2048(benchmark):
    rng = np.random.default_rng(0)
    mu1, s1 = gaussian_stats(rng.normal(size=(3000, 2048)))
    mu2, s2 = gaussian_stats(rng.normal(size=(3000, 2048)))
    value = benchmark.pedantic(frechet_distance, args=(mu1, s1, mu2, s2), rounds=2, iterations=1)
    assert value > 0
