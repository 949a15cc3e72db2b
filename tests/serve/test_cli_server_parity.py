"""Issue 13's acceptance test: for every operation and every family that has it, the server's pixels are the
CLI's for the same seeds and options (both call ganplug.ops; the server only adds transport).

The real CLI (`ganplug.cli.app.main`) writes PNGs; the real server app answers over its test client; the
decoded pixels must be equal, not close. Runs are tiny and trained for a few steps, once per module.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_helpers import make_client

from ganplug.cli.app import main
from tests.conftest import tiny_config, write_shapes

CPU = ["--device", "cpu"]


def _train(out: Path, data: Path, **overrides) -> Path:
    from ganplug.train.loop import train

    train(tiny_config(data, out, steps=2, sample_every=2, ckpt_every=2, **overrides))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shapes_dir) -> dict[str, Path]:
    """dcgan, stylegan and pix2pix runs of 32 px with tiny widths, trained for 2 steps."""
    root = tmp_path_factory.mktemp("parity")
    pairs = root / "pairs"
    write_shapes(pairs / "a", 8, size=32, seed=1)
    write_shapes(pairs / "b", 8, size=32, seed=1)
    assert main(["prep", str(pairs), str(root / "pairdata"), "--size", "32", "--pairs", "a,b"]) == 0
    return {
        "dcgan": _train(root / "dcgan", shapes_dir),
        "stylegan": _train(root / "stylegan", shapes_dir, arch="stylegan", batch=4,
                           model={"z_dim": 16, "w_dim": 16, "mapping_layers": 2, "capacity": 0.05,
                                  "channel_max": 32}),
        "pix2pix": _train(root / "pix2pix", root / "pairdata", arch="pix2pix", batch=2,
                          model={"base_channels": 8}),
    }


@pytest.fixture(scope="module")
def directions(runs) -> None:
    """RUN/directions.safetensors for the dcgan and stylegan runs (`ganplug directions`, few samples)."""
    for family in ("dcgan", "stylegan"):
        _cli("directions", runs[family], "--n", "4", "--samples", "256", "--preview-seeds", "0", *CPU)


@pytest.fixture(scope="module")
def client(runs):
    with make_client(models=tuple(runs.values())) as c:
        yield c


def _decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def _served(client, kind: str, body: dict) -> list[np.ndarray]:
    r = client.post(f"/v1/{kind}", json=body)
    assert r.status_code == 200, r.text
    return [_decode(im["png"]) for im in r.json()["images"]]


def _written(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]


def _cli(*argv) -> None:
    assert main([str(a) for a in argv]) == 0


def _same(cli_images: list[np.ndarray], served: list[np.ndarray]) -> None:
    assert len(cli_images) == len(served) > 0
    for a, b in zip(cli_images, served, strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)


# (family, CLI options, request options): each pair names the same images.
SEEDED = [
    ("dcgan", [], {}),
    ("dcgan", ["--truncation", "0.7", "--tileable"], {"truncation": 0.7, "tileable": True}),
    ("stylegan", [], {}),
    ("stylegan", ["--truncation", "0.6", "--noise", "none", "--tileable"],
     {"truncation": 0.6, "noise": "none", "tileable": True}),
]


@pytest.mark.parametrize("family,cli_opts,body", SEEDED)
def test_generate(runs, client, tmp_path, family, cli_opts, body):
    _cli("generate", runs[family], "--seeds", "3,4,5", "--outdir", tmp_path, *cli_opts, *CPU)
    _same(_written(tmp_path), _served(client, "generate", {"model": family, "seeds": [3, 4, 5], **body}))


@pytest.mark.parametrize("family,cli_opts,body", SEEDED)
def test_variations(runs, client, tmp_path, family, cli_opts, body):
    _cli("variations", runs[family], "--seed", "7", "--n", "3", "--strength", "0.4", "--outdir", tmp_path,
         *cli_opts, *CPU)
    served = _served(client, "variations", {"model": family, "seed": 7, "count": 3, "strength": 0.4, **body})
    _same(_written(tmp_path), served)


@pytest.mark.parametrize("family,cli_opts,body", SEEDED)
def test_interpolate(runs, client, tmp_path, family, cli_opts, body):
    """Lerp in w for StyleGAN, slerp in z for DCGAN: in both, and so the same morph."""
    _cli("interpolate", runs[family], "--seeds", "1,2,3", "--frames", "6", "--loop", "--outdir", tmp_path,
         *cli_opts, *CPU)
    served = _served(client, "interpolate", {"model": family, "seeds": [1, 2, 3], "frames": 6, "loop": True,
                                             **body})
    _same(_written(tmp_path), served)


def _grid_cells(path: Path, rows: int, cols: int, size: int = 32, pad: int = 2) -> list[np.ndarray]:
    """The mixed cells of `ganplug mix`'s grid (below its header row, right of its header column)."""
    grid = np.asarray(Image.open(path))
    cells = []
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            y, x = pad + r * (size + pad), pad + c * (size + pad)
            cells.append(grid[y : y + size, x : x + size])
    return cells


@pytest.mark.parametrize("cli_opts,body", [
    (["--styles", "0-2"], {"styles": "0-2"}),
    (["--styles", "0,3"], {"styles": [0, 3]}),
    (["--styles", "0-2"], {"crossover": 3}),  # the older field, an alias of styles 0..k-1
    (["--truncation", "0.7", "--tileable"], {"truncation": 0.7, "tileable": True}),  # default: the coarse half
])
def test_style_mix(runs, client, tmp_path, cli_opts, body):
    out = tmp_path / "mix.png"
    _cli("mix", runs["stylegan"], "--rows", "1,2", "--cols", "3,4,5", "--out", out, *cli_opts, *CPU)
    served = _served(client, "stylemix", {"model": "stylegan", "row_seeds": [1, 2], "col_seeds": [3, 4, 5], **body})
    _same(_grid_cells(out, 2, 3), served)


def _sketch(path: Path) -> Path:
    """A half-transparent RGBA sketch at another size: both sides composite it onto the model's background
    and resize it, the same way."""
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 256, (40, 48, 4), dtype=np.uint8)
    arr[..., 3] = np.where(arr[..., 3] > 128, 255, 64)
    Image.fromarray(arr, "RGBA").save(path)
    return path


@pytest.mark.parametrize("cli_opts,body", [([], {}), (["--tileable"], {"tileable": True})])
def test_translate(runs, client, tmp_path, cli_opts, body):
    src = _sketch(tmp_path / "sketch.png")
    out = tmp_path / "out" / "render.png"
    out.parent.mkdir()
    _cli("translate", runs["pix2pix"], src, "--out", out, *cli_opts, *CPU)
    image = base64.b64encode(src.read_bytes()).decode()
    _same([np.asarray(Image.open(out))], _served(client, "translate", {"model": "pix2pix", "image": image, **body}))


def test_project(runs, client, tmp_path, monkeypatch):
    for var in ("GANPLUG_WEIGHTS", "HOME", "TORCH_HOME"):  # no VGG16 here: both fall back to the pixel loss
        monkeypatch.setenv(var, str(tmp_path / "no-weights"))
    src = _sketch(tmp_path / "target.png")
    _cli("project", runs["stylegan"], src, "--steps", "3", "--out", tmp_path / "proj", *CPU)
    image = base64.b64encode(src.read_bytes()).decode()
    served = _served(client, "project", {"model": "stylegan", "image": image, "steps": 3, "seed": 0})
    _same([np.asarray(Image.open(tmp_path / "proj" / "projected.png"))], served)


# (family, --edit, request `edits`, other CLI options, other request options): the same edited images
EDITED = [
    ("dcgan", "0:+2.5,3:-1", "0:+2.5,3:-1", [], {}),
    ("dcgan", "1:-2", [{"direction": 1, "amount": -2}], ["--truncation", "0.7"], {"truncation": 0.7}),
    ("stylegan", "0:+2.5,3:-1", [{"direction": 0, "amount": 2.5}, {"direction": 3, "amount": -1}], [], {}),
    ("stylegan", "2:+1.5", "2:+1.5", ["--truncation", "0.6", "--noise", "none"], {"truncation": 0.6, "noise": "none"}),
]


@pytest.mark.parametrize("family,edit,edits,cli_opts,body", EDITED)
def test_generate_with_edits(runs, client, directions, tmp_path, family, edit, edits, cli_opts, body):
    """`generate --edit` and /v1/generate's `edits` (string or list) move along the run's directions file alike."""
    _cli("generate", runs[family], "--seeds", "3,4", "--edit", edit, "--outdir", tmp_path, *cli_opts, *CPU)
    r = client.post("/v1/generate", json={"model": family, "seeds": [3, 4], "edits": edits, **body})
    assert r.status_code == 200, r.text
    assert r.json()["params"]["edits"] == edit
    _same(_written(tmp_path), [_decode(im["png"]) for im in r.json()["images"]])


def test_edits_refused_with_a_reason(runs, client, directions):
    """422 naming the problem: an image-to-image model, a direction the file lacks, an unreadable edit string."""
    r = client.post("/v1/generate", json={"model": "pix2pix", "seeds": [1], "edits": "0:+1"})
    assert r.status_code == 422
    supports = {m["name"]: m["supports"]["edits"] for m in client.get("/v1/models").json()["models"]}
    assert supports == {"dcgan": True, "stylegan": True, "pix2pix": False}
    r = client.post("/v1/generate", json={"model": "stylegan", "seeds": [1], "edits": "9:+1"})
    assert r.status_code == 422 and "out of range" in r.json()["error"], r.text
    r = client.post("/v1/generate", json={"model": "stylegan", "seeds": [1], "edits": "0=1"})
    assert r.status_code == 422 and "DIRECTION:AMOUNT" in r.json()["error"], r.text


def test_edits_need_a_directions_file(tmp_path, runs):
    """A seed-driven model without RUN/directions.safetensors: 422 saying how to make one."""
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(runs["dcgan"], bare, ignore=shutil.ignore_patterns("directions.*"))
    with make_client(models=(bare,)) as c:
        assert c.get("/v1/models").json()["models"][0]["supports"]["edits"] is False
        r = c.post("/v1/generate", json={"model": "bare", "seeds": [1], "edits": "0:+1"})
        assert r.status_code == 422, r.text
        assert "ganplug directions" in r.json()["error"]
        assert c.post("/v1/generate", json={"model": "bare", "seeds": [1]}).status_code == 200


# ----------------------------------------------------------------------------------- latents


def _wire(arr: np.ndarray, space: str) -> dict:
    """A latent as the server gives and takes it: little-endian float32, base64."""
    return {"space": space, "shape": list(arr.shape), "dtype": "float32",
            "data": base64.b64encode(np.ascontiguousarray(arr, dtype="<f4").tobytes()).decode()}


def _latent_file(runs, family: str, folder: Path) -> tuple[Path, np.ndarray, str]:
    """A latent.npy of the model's latent shape (w for StyleGAN, z for DCGAN), alone in its folder (no
    noise.safetensors or projection.json beside it: the server's latent carries no noise maps either)."""
    from ganplug.checkpoint import load_generator

    model = load_generator(runs[family], device="cpu")
    rng = np.random.default_rng(11)
    space = "w" if family == "stylegan" else "z"
    shape = (model.spec.num_ws, model.G.w_dim) if space == "w" else (model.spec.z_dim,)
    arr = (rng.standard_normal(shape) * (0.5 if space == "w" else 1.0)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "latent.npy", arr)
    return folder / "latent.npy", arr, space


# (family, CLI options, request options) for a latent: truncation, edits and noise apply as for a seed
FROM_LATENT = [
    ("stylegan", [], {}),
    ("stylegan", ["--truncation", "0.6", "--edit", "0:+2.5,3:-1", "--noise", "none"],
     {"truncation": 0.6, "edits": "0:+2.5,3:-1", "noise": "none"}),
    ("dcgan", [], {}),
    ("dcgan", ["--truncation", "0.7", "--edit", "1:-2", "--tileable"],
     {"truncation": 0.7, "edits": [{"direction": 1, "amount": -2}], "tileable": True}),
]


@pytest.mark.parametrize("family,cli_opts,body", FROM_LATENT)
def test_generate_from_a_latent(runs, client, directions, tmp_path, family, cli_opts, body):
    """`generate --latent latent.npy` and /v1/generate's `latent` draw the same pixels, options included."""
    path, arr, space = _latent_file(runs, family, tmp_path / "proj")
    _cli("generate", runs[family], "--latent", path, "--out", tmp_path / "cli.png", *cli_opts, *CPU)
    served = _served(client, "generate", {"model": family, "latent": _wire(arr, space), **body})
    _same([np.asarray(Image.open(tmp_path / "cli.png"))], served)
    if body:  # the options did something: the plain latent's image differs
        plain = _served(client, "generate", {"model": family, "latent": _wire(arr, space)})
        assert not np.array_equal(plain[0], served[0])


def test_a_projection_latent_round_trips(runs, client, tmp_path, monkeypatch):
    """/v1/project's `params.latent` is the projection's w (the CLI's latent.npy, to float32 rounding of the two
    runtimes' convolutions); sent back to /v1/generate it draws exactly the projected image (noise maps not
    fitted), and `generate --latent` of it as a latent.npy draws the same pixels."""
    for var in ("GANPLUG_WEIGHTS", "HOME", "TORCH_HOME"):
        monkeypatch.setenv(var, str(tmp_path / "no-weights"))
    src = _sketch(tmp_path / "target.png")
    _cli("project", runs["stylegan"], src, "--steps", "3", "--no-noise", "--out", tmp_path / "proj", *CPU)
    image = base64.b64encode(src.read_bytes()).decode()
    r = client.post("/v1/project", json={"model": "stylegan", "image": image, "steps": 3, "optimize_noise": False})
    assert r.status_code == 200, r.text
    latent = r.json()["params"]["latent"]
    saved = np.load(tmp_path / "proj" / "latent.npy")
    assert latent["space"] == "w" and latent["dtype"] == "float32" and latent["shape"] == list(saved.shape)
    served_w = np.frombuffer(base64.b64decode(latent["data"]), "<f4").reshape(saved.shape)
    np.testing.assert_allclose(served_w, saved, atol=1e-4)
    projected = _decode(r.json()["images"][0]["png"])
    again = _served(client, "generate", {"model": "stylegan", "latent": latent})
    _same([projected], again)
    (tmp_path / "mine").mkdir()
    np.save(tmp_path / "mine" / "latent.npy", served_w)
    _cli("generate", runs["stylegan"], "--latent", tmp_path / "mine" / "latent.npy", "--out", tmp_path / "a.png",
         *CPU)
    _same([np.asarray(Image.open(tmp_path / "a.png"))], again)
    # with the noise maps fitted (the default) the latent is still returned, for steering
    r = client.post("/v1/project", json={"model": "stylegan", "image": image, "steps": 2})
    assert r.status_code == 200 and r.json()["params"]["latent"]["shape"] == list(saved.shape)


# (family, CLI options, request options): variations of an edited image
VARIED = [
    ("dcgan", ["--edit", "0:+2.5,3:-1"], {"edits": "0:+2.5,3:-1"}),
    ("stylegan", ["--edit", "2:+1.5", "--truncation", "0.6"], {"edits": [{"direction": 2, "amount": 1.5}],
                                                               "truncation": 0.6}),
]


@pytest.mark.parametrize("family,cli_opts,body", VARIED)
def test_variations_with_edits(runs, client, directions, tmp_path, family, cli_opts, body):
    """`variations --edit` and /v1/variations' `edits`: the same pixels, not those of the plain variations."""
    _cli("variations", runs[family], "--seed", "7", "--n", "3", "--strength", "0.4", "--outdir", tmp_path,
         *cli_opts, *CPU)
    req = {"model": family, "seed": 7, "count": 3, "strength": 0.4, **body}
    served = _served(client, "variations", req)
    _same(_written(tmp_path), served)
    assert client.post("/v1/variations", json=req).json()["params"]["edits"] == cli_opts[1]
    plain = _served(client, "variations", {k: v for k, v in req.items() if k != "edits"})
    assert all(not np.array_equal(a, b) for a, b in zip(plain, served, strict=True))


@pytest.mark.parametrize("family,cli_opts,body", [
    ("stylegan", ["--edit", "0:+2"], {"edits": "0:+2"}), ("dcgan", ["--truncation", "0.8"], {"truncation": 0.8})])
def test_variations_of_a_latent(runs, client, directions, tmp_path, family, cli_opts, body):
    """`variations --latent` and /v1/variations' `latent` vary the latent's image alike."""
    path, arr, space = _latent_file(runs, family, tmp_path / "proj")
    _cli("variations", runs[family], "--latent", path, "--seed", "5", "--n", "2", "--strength", "0.3",
         "--outdir", tmp_path / "out", *cli_opts, *CPU)
    req = {"model": family, "latent": _wire(arr, space), "seed": 5, "count": 2, "strength": 0.3, **body}
    _same(_written(tmp_path / "out"), _served(client, "variations", req))
    if space == "w":  # strength 0: the latent's own image, as /v1/generate draws it
        gen = _served(client, "generate", {"model": family, "latent": _wire(arr, space), **body})
        _same(gen, _served(client, "variations", {**req, "count": 1, "strength": 0.0}))
