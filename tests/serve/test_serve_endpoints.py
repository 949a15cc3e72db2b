"""Every endpoint of `ganplug serve`, checked against the library called directly."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from ganplug.checkpoint import load_generator
from ganplug.sampling import generate_all, z_from_seeds
from ganplug.tiling import seam_jumps


def decode(image: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(image["png"]))))


def test_health_version_and_models(client):
    h = client.get("/v1/health").json()
    assert h["status"] == "ok" and h["api"] == "v1" and h["models"] == 2 and h["device"] == "cpu"
    assert client.get("/v1/version").json()["version"] == h["version"]
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert set(models) == {"tiny", "style32"}
    assert (models["tiny"]["arch"], models["tiny"]["size"]) == ("dcgan", 32)
    assert models["tiny"]["supports"]["style_mix"] is False and models["tiny"]["supports"]["translate"] is False
    assert models["style32"]["supports"]["style_mix"] is True


def test_generate_matches_the_library_and_ignores_batching(client, tiny_run):
    r = client.post("/v1/generate", json={"model": "tiny", "seeds": [3, 4, 5], "truncation": 0.8})
    assert r.status_code == 200
    body = r.json()
    assert [im["seed"] for im in body["images"]] == [3, 4, 5]
    got = np.stack([decode(im) for im in body["images"]])
    G = load_generator(tiny_run).G
    ref = generate_all(G, [3, 4, 5], truncation=0.8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(got, ref)
    alone = client.post("/v1/generate", json={"model": "tiny", "seeds": [5], "truncation": 0.8}).json()
    np.testing.assert_array_equal(decode(alone["images"][0]), got[2])


def test_count_seed_size_and_png_format(client):
    body = client.post("/v1/generate", json={"count": 3, "seed": 4294967295, "width": 48, "height": 40}).json()
    assert body["model"] == "tiny"  # the first model is the default
    assert body["params"]["seeds"] == [4294967295, 0, 1]  # wraps around 2**32
    assert {(im["width"], im["height"]) for im in body["images"]} == {(48, 40)}
    assert decode(body["images"][0]).shape[:2] == (40, 48)
    randomly = client.post("/v1/generate", json={"count": 2}).json()["params"]["seeds"]
    assert randomly[1] == (randomly[0] + 1) % 2**32
    one = client.post("/v1/generate?format=png", json={"seeds": [9], "size": 64})
    assert one.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(one.content)).size == (64, 64)
    grid = client.post("/v1/generate?format=png", json={"seeds": [1, 2, 3, 4]})
    assert Image.open(io.BytesIO(grid.content)).size == (2 + 2 * 34, 2 + 2 * 34)


@pytest.mark.parametrize("model", ["tiny", "style32"])
def test_tileable_output_has_no_seam(client, model):
    seeds = list(range(16))
    tiled = client.post("/v1/generate", json={"model": model, "seeds": seeds, "tileable": True}).json()
    plain = client.post("/v1/generate", json={"model": model, "seeds": seeds}).json()
    # One seam is one pair of rows, so compare averages over the seeds, not single images.
    jumps = [seam_jumps(decode(t).astype(np.float64)) for t in tiled["images"]]
    mean = {k: np.mean([j[k] for j in jumps]) for k in jumps[0]}
    assert mean["seam_x"] <= mean["interior_x_max"] and mean["seam_y"] <= mean["interior_y_max"], mean
    if model == "style32":  # zero padding leaves an obvious seam there (the 6-step DCGAN is still noise)
        plain_jumps = [seam_jumps(decode(p).astype(np.float64)) for p in plain["images"]]
        assert np.mean([j["seam_x"] for j in plain_jumps]) > 2 * mean["seam_x"]
    for t, p in zip(tiled["images"], plain["images"], strict=True):
        assert not np.array_equal(decode(t), decode(p))  # the flag changes the generator's padding


def test_periodic_resize_keeps_the_image_a_torus():
    """Resampling a tileable image to another size must keep it tileable: shifting by a whole number of
    source pixels before resizing equals shifting the result by the matching number of output pixels."""
    from ganplug.serve.imaging import resize

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = resize(img, 80, 80, periodic=True)
    shifted = resize(np.roll(img, (6, 16), axis=(0, 1)), 80, 80, periodic=True)
    assert np.abs(shifted.astype(int) - np.roll(out, (15, 40), axis=(0, 1))).max() <= 1
    plain = resize(img, 80, 80, periodic=False)
    plain_shifted = resize(np.roll(img, (6, 16), axis=(0, 1)), 80, 80, periodic=False)
    assert np.abs(plain_shifted.astype(int) - np.roll(plain, (15, 40), axis=(0, 1))).max() > 1


def test_variations_stay_near_their_seed(client):
    base = decode(client.post("/v1/generate", json={"seeds": [21]}).json()["images"][0]).astype(float)
    zero = client.post("/v1/variations", json={"seed": 21, "count": 2, "strength": 0.0}).json()
    for im in zero["images"]:
        np.testing.assert_array_equal(decode(im), base)
    near = client.post("/v1/variations", json={"seed": 21, "count": 3, "strength": 0.2}).json()
    far = client.post("/v1/variations", json={"seed": 21, "count": 3, "strength": 1.0}).json()
    assert [im["variation"] for im in near["images"]] == [1, 2, 3]
    d_near = np.mean([np.abs(decode(im) - base).mean() for im in near["images"]])
    d_far = np.mean([np.abs(decode(im) - base).mean() for im in far["images"]])
    assert 0 < d_near < d_far
    again = client.post("/v1/variations", json={"seed": 21, "count": 3, "strength": 0.2}).json()
    assert [im["png"] for im in again["images"]] == [im["png"] for im in near["images"]]


def test_interpolate_starts_and_ends_at_the_seeds(client):
    frames = client.post("/v1/interpolate", json={"seeds": [7, 8], "frames": 5}).json()["images"]
    ends = client.post("/v1/generate", json={"seeds": [7, 8]}).json()["images"]
    assert [f["frame"] for f in frames] == [0, 1, 2, 3, 4]
    for got, want in ((frames[0], ends[0]), (frames[-1], ends[1])):
        assert np.abs(decode(got).astype(int) - decode(want)).max() <= 1
    r = client.post("/v1/interpolate", json={"seeds": [1, 2, 3], "frames": 2})
    assert r.status_code == 422 and "at least 3 frames" in r.json()["error"]


def test_style_mix_takes_coarse_styles_from_rows_and_fine_from_columns(client, style_run):
    body = client.post("/v1/stylemix", json={"model": "style32", "row_seeds": [1, 2], "col_seeds": [3],
                                             "crossover": 2}).json()
    assert [(im["row_seed"], im["col_seed"]) for im in body["images"]] == [(1, 3), (2, 3)]
    G = load_generator(style_run).G
    with torch.no_grad():
        wa, wb = G.mapping(z_from_seeds([2], 16)), G.mapping(z_from_seeds([3], 16))
        mixed = torch.cat([wa[:, :2], wb[:, 2:]], dim=1)
        ref = ((G.synthesis(mixed, noise_mode="const").clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    np.testing.assert_array_equal(decode(body["images"][1]), ref[0].permute(1, 2, 0).numpy())


@pytest.mark.parametrize("kind,body,sentence", [
    ("stylemix", {"model": "tiny", "row_seeds": [1], "col_seeds": [2]}, "style mixing needs a style-based model"),
    ("translate", {"model": "tiny", "image": "aGk="}, "does not translate"),
    ("translate", {"model": "style32", "image": "aGk="}, "none is loaded"),
    ("project", {"model": "tiny", "image": "aGk="}, "does not support projection"),
])
def test_unsupported_operations_are_clear_4xx(client, kind, body, sentence):
    r = client.post(f"/v1/{kind}", json=body)
    assert r.status_code == 422
    assert r.json()["code"] == "not_supported" and sentence in r.json()["error"]


def test_page_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and "<title>ganplug</title>" in r.text and "/v1/jobs/" in r.text


def test_project_finds_a_generated_image_again(client, style_run):
    """Project the model's own image of seed 5: the projection is closer to it than to other seeds' images."""
    import base64

    target = client.post("/v1/generate", json={"model": "style32", "seeds": [5, 6, 7]}).json()["images"]
    body = client.post("/v1/project", json={"model": "style32", "image": target[0]["png"], "steps": 60}).json()
    (img,) = body["images"]
    assert (img["width"], img["height"]) == (32, 32) and base64.b64decode(img["png"])[:4] == b"\x89PNG"
    got = decode(img).astype(float)
    d_self = np.abs(got - decode(target[0])).mean()
    d_other = min(np.abs(got - decode(t)).mean() for t in target[1:])
    assert d_self < d_other
    assert body["params"]["loss"] >= 0
