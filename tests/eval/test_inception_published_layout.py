"""The published inception-2015-12-05.pt layout loads into the fast twin; other layouts warn about the slow path.

The file under test is built by tests/eval/published_inception.py from its own module tree (not ganplug's twin),
with the published names, shapes and forward, at seeded random weights.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from published_inception import FILENAME, Mixed8, published_model, save_published, units
from torch import nn

from ganplug.device import make_runtime
from ganplug.eval.features.inception import InceptionExtractor
from ganplug.eval.features.inception_layout import load_twin
from ganplug.eval.features.weights import locate


@functools.cache
def published_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="ganplug-published-inception-"))
    save_published(d)
    return d


def _extractor(folder: Path, mode: str = "clean", precision: str = "fp32") -> InceptionExtractor:
    found = locate("inception", str(folder), allow_unverified=True)
    assert found is not None and found.path.name == FILENAME
    return InceptionExtractor(found, make_runtime("cpu", precision), mode, workers=0)


def _images(n: int, size: int = 299, seed: int = 0) -> list[np.ndarray]:
    """Smooth random colour images (uint8 HWC), so features differ between images."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
        out.append(np.asarray(small.resize((size, size), Image.BICUBIC)))
    return out


def _nchw(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()


def test_fixture_has_the_published_tensor_names():
    """94 conv units of weight/beta/mean/var plus the classifier, and none of torch's batch-norm names."""
    sd = torch.jit.load(str(published_dir() / FILENAME)).state_dict()
    assert len(sd) == 94 * 4 + 2
    assert sd["layers.conv.weight"].shape == (32, 3, 3, 3)
    assert sd["layers.mixed_4.tower_1.conv_4.weight"].shape == (192, 128, 1, 7)
    assert sd["layers.mixed_10.tower_1_mixed_conv_1.var"].shape == (384,)
    assert sd["output.weight"].shape == (1008, 2048) and sd["output.bias"].shape == (1008,)
    assert not any(k.endswith(("num_batches_tracked", "running_mean", ".bn.bias")) for k in sd)


def test_published_layout_gets_the_fast_path():
    ex = _extractor(published_dir())
    assert ex.layout == "published" and ex.warnings == []
    assert not isinstance(ex.trunk, torch.jit.ScriptModule)  # the folded eager twin runs
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ex.trunk.modules())  # batch norm folded


def test_twin_features_match_the_files_own_forward():
    """pool3 from the twin equals the TorchScript forward(return_features=True); IS probabilities likewise."""
    ex = _extractor(published_dir())
    images = _images(3)
    feats = ex.extract(images)
    scripted = torch.jit.load(str(published_dir() / FILENAME)).eval()
    with torch.no_grad():
        ref = scripted(_nchw(images), return_features=True).double().numpy()
        probs = scripted(_nchw(images), no_output_bias=True).double().numpy()
    assert np.abs(feats.pool - ref).max() <= 1e-4 * np.abs(ref).max()
    assert np.std(ref, axis=0).mean() > 1e-3 * np.abs(ref).max()  # features depend on the image
    ours = np.exp(feats.logits - feats.logits.max(1, keepdims=True))
    ours /= ours.sum(1, keepdims=True)
    assert np.abs(ours - probs).max() <= 1e-4


def test_legacy_mode_runs_the_files_forward_unchanged():
    ex = _extractor(published_dir(), mode="legacy")
    images = _images(2, size=128, seed=3)
    scripted = torch.jit.load(str(published_dir() / FILENAME)).eval()
    with torch.no_grad():
        ref = scripted(_nchw(images), return_features=True).double().numpy()
    np.testing.assert_allclose(ex.extract(images).pool, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_same_names_but_another_computation_is_not_trusted():
    """A file with the published names and shapes whose graph differs (last block avg- instead of max-pools)."""
    model = published_model()
    altered = Mixed8(2048, max_pool=False, gen=torch.Generator().manual_seed(0))
    altered.load_state_dict(model.layers.mixed_10.state_dict())
    original = model.layers.mixed_10
    try:
        model.layers.mixed_10 = altered
        match = load_twin(model)
    finally:
        model.layers.mixed_10 = original
    assert match.twin is None and "computes something else" in match.reason


class _Tiny(nn.Module):
    """A scripted file with the interface (`layers`, `output`) but not the published layout."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 2048, 8, stride=8), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.output = nn.Linear(2048, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = nn.functional.interpolate(img, size=(299, 299), mode="bilinear", align_corners=False)
        return self.layers((x - 128) / 128).reshape(-1, 2048)


@pytest.mark.parametrize("precision, factor", [("fp32", "1.3x"), ("bf16", "3x")])
def test_other_layout_warns_about_the_slow_path(tmp_path, precision, factor):
    torch.manual_seed(0)
    save_published(tmp_path, _Tiny().eval())
    ex = _extractor(tmp_path, precision=precision)
    assert ex.layout is None and isinstance(ex.trunk, torch.jit.ScriptModule)
    [warning] = ex.warnings
    assert "does not match the published inception-2015-12-05.pt layout" in warning
    assert f"slower TorchScript path (about {factor} slower" in warning and "layers.0.weight" in warning
    images = _images(2)
    with torch.no_grad():
        ref = ex.scripted.layers((_nchw(images) - 128) / 128).reshape(-1, 2048).double().numpy()
    np.testing.assert_allclose(ex.extract(images).pool, ref, rtol=1e-6, atol=1e-6)  # still correct, just slower


def test_the_slow_path_warning_reaches_the_json(tmp_path):
    from ganplug.eval.pipeline import evaluate

    torch.manual_seed(0)
    save_published(tmp_path / "weights", _Tiny().eval())
    folder = tmp_path / "fake"
    folder.mkdir()
    for i, im in enumerate(_images(4, size=32, seed=5)):
        Image.fromarray(im).save(folder / f"{i}.png")
    out = evaluate(folder, metrics="is", weights_dir=str(tmp_path / "weights"), allow_unverified_weights=True,
                   n=4, progress=False, workers=0)
    assert "is" in out["metrics"]
    assert any("slower TorchScript path" in w for w in out["warnings"])


def test_stand_in_layout_still_fits():
    """The seeded stand-ins (written with ganplug's own names) keep the fast path."""
    from evalkit import standin_dir

    ex = _extractor(standin_dir())
    assert ex.layout == "ganplug" and ex.warnings == []


def test_units_are_all_counted():
    assert len(units(published_model())) == 94


def test_twin_forward_scales_like_the_published_file():
    """The twin's own forward (TF resize + scaling, used by stand-ins in legacy mode) equals the published one;
    (x - 127.5) / 127.5 instead of (x - 128) / 128 shifts every input by 0.004 and fails this."""
    model = published_model()
    twin = load_twin(model).twin
    x = _nchw(_images(2, size=96, seed=7))
    with torch.no_grad():
        ref = model(x, return_features=True).double()
        ours = twin(x, return_features=True).double()
        probs_ref, probs = model(x, no_output_bias=True), twin(x, no_output_bias=True)
    assert float((ours - ref).abs().max()) <= 1e-4 * float(ref.abs().max())
    assert float((probs - probs_ref).abs().max()) <= 1e-5
