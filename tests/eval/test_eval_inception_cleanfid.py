"""The real Inception loading code on a stand-in file, against clean-fid using the same file offline."""

from __future__ import annotations

import numpy as np
import pytest
import scipy
import torch
from evalkit import extractor, standin_dir, twemoji_folder
from PIL import Image

SCIPY_HAS_DISP = tuple(int(p) for p in scipy.__version__.split(".")[:2]) < (1, 18)


def _images(folder):
    return [np.asarray(Image.open(f).convert("RGB")) for f in sorted(folder.glob("*.png"))]


def _cleanfid_model(resize_inside=False):
    from cleanfid.inception_torchscript import InceptionV3W

    # clean-fid's own loader, pointed at the folder holding the stand-in (download=False: offline)
    return InceptionV3W(str(standin_dir()), download=False, resize_inside=resize_inside).eval()


@pytest.mark.parametrize("mode", ["clean", "legacy"])
def test_features_equal_clean_fid_features(mode):
    folder = twemoji_folder(0, 6)
    ours = extractor(mode).extract(_images(folder))
    from cleanfid.fid import get_folder_features

    ref = get_folder_features(str(folder), _cleanfid_model(mode == "legacy"), num_workers=0, batch_size=6,
                              device=torch.device("cpu"), mode="clean" if mode == "clean" else "legacy_tensorflow",
                              verbose=False)
    assert ref.shape == ours.pool.shape == (6, 2048)
    assert ref.std(axis=0).mean() > 1e-2 * np.abs(ref).mean()  # the stand-in's features depend on the image
    np.testing.assert_allclose(ours.pool, ref, rtol=1e-4, atol=1e-3 * np.abs(ref).max())


@pytest.mark.skipif(not SCIPY_HAS_DISP, reason="clean-fid 0.1.35 calls sqrtm(disp=...), gone in scipy 1.18")
def test_fid_equals_clean_fid_compute_fid_end_to_end():
    from cleanfid.fid import compute_fid

    from ganplug.eval import evaluate

    fake, real = twemoji_folder(100, 10), twemoji_folder(0, 10)
    ref = compute_fid(str(fake), str(real), mode="clean", custom_feat_extractor=_cleanfid_model(),
                      device=torch.device("cpu"), num_workers=0, batch_size=10, verbose=False)
    out = evaluate(fake, real, metrics="fid", weights_dir=str(standin_dir()), allow_unverified_weights=True,
                   device="cpu", precision="fp32", use_cache=False)
    assert out["metrics"]["fid"]["value"] == pytest.approx(ref, rel=1e-4)
    assert out["weights"]["inception"]["verified"] is False  # stand-in: flagged as not comparable


def test_bf16_features_stay_close_to_fp32():
    folder = twemoji_folder(20, 4)
    imgs = _images(folder)
    f32 = extractor("clean", "fp32").extract(imgs).pool
    b16 = extractor("clean", "bf16").extract(imgs).pool
    rel = np.linalg.norm(b16 - f32, axis=1) / np.linalg.norm(f32, axis=1)
    assert rel.max() < 0.05


def test_logits_are_unbiased_output_layer():
    """IS logits = pool features x output weights, without the bias (StyleGAN2-ADA `no_output_bias`)."""
    ext = extractor("legacy")
    img = (torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255).round()
    feats = ext.extract([a for a in img.permute(0, 2, 3, 1).numpy().astype(np.uint8)])
    with torch.no_grad():
        probs = ext.scripted(img, no_output_bias=True).double().numpy()
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(feats.logits), 1).numpy(), probs, atol=1e-5)
