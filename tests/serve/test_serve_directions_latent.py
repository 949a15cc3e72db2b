"""The direction endpoints (count, space, names saved beside the run and tied to its directions file) and the
refusals of a bad `latent`, on untrained 32 px runs. The pixels (a latent, edited variations) are compared
with the CLI's in test_cli_server_parity.py."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest
from serve_helpers import make_client, write_untrained_run

from ganplug import directions as dirs
from ganplug.checkpoint import load_generator
from ganplug.cli.app import main
from ganplug.serve import schema as S

STYLE = {"arch": "stylegan", "size": 32, "z_dim": 16, "w_dim": 16, "mapping_layers": 2, "capacity": 0.05,
         "channel_max": 32}


def _directions(run, n=3, samples=64):
    model = load_generator(run, device="cpu")
    return dirs.save(dirs.find(model, n=n, samples=samples), dirs.default_path(model))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("steer")
    write_untrained_run(root / "sg", **STYLE)
    write_untrained_run(root / "dc", size=32, base_channels=8, z_dim=16)
    write_untrained_run(root / "bare", size=32, base_channels=8, z_dim=16)
    write_untrained_run(root / "p2p", arch="pix2pix", size=32, base_channels=8)
    _directions(root / "sg")
    _directions(root / "dc", n=4)
    return root


@pytest.fixture()
def client(runs):
    with make_client(models=(runs,)) as c:
        yield c


def _wire(arr: np.ndarray, space: str, **change) -> dict:
    arr = np.ascontiguousarray(arr, dtype="<f4")
    return {"space": space, "shape": list(arr.shape), "dtype": "float32",
            "data": base64.b64encode(arr.tobytes()).decode(), **change}


def test_models_list_the_direction_count(client):
    listed = {m["name"]: m["directions"] for m in client.get("/v1/models").json()["models"]}
    assert listed == {"sg": 3, "dc": 4, "bare": None, "p2p": None}


def test_directions_and_names_round_trip_tied_to_the_file(client, runs, capsys):
    r = client.get("/v1/models/sg/directions")
    assert r.status_code == 200 and r.json() == {"count": 3, "space": "w", "names": [None, None, None]}
    assert client.get("/v1/models/dc/directions").json()["space"] == "z"
    r = client.put("/v1/models/sg/directions/names", json={"names": ["brightness", "", "pose"]})
    assert r.status_code == 200, r.text
    assert r.json()["names"] == ["brightness", None, "pose"]
    assert client.get("/v1/models/sg/directions").json()["names"] == ["brightness", None, "pose"]
    saved = json.loads((runs / "sg" / "directions.names.json").read_text())
    assert saved["directions_sha256"] == dirs.file_sha256(runs / "sg" / dirs.DEFAULT_NAME)
    # the run's names, on the command line too
    assert main(["directions", str(runs / "sg"), "--names"]) == 0
    assert capsys.readouterr().out.splitlines() == ["0: brightness", "1: (unnamed)", "2: pose"]
    # fewer names than directions rename the first ones only
    client.put("/v1/models/sg/directions/names", json={"names": ["light"]})
    assert client.get("/v1/models/sg/directions").json()["names"] == ["light", None, None]
    # a new directions file is not named by the old file's names
    _directions(runs / "sg", n=3, samples=80)
    assert client.get("/v1/models/sg/directions").json()["names"] == [None, None, None]


@pytest.mark.parametrize("names,code,words", [
    (["a", "b", "c", "d", "e"], "bad_names", "4 directions"),
    (["x" * 41], "invalid_request", "at most 40"),
    (["two\nlines"], "bad_names", "printable"),
    (["tab\there"], "bad_names", "printable"),
])
def test_bad_names_are_refused_and_nothing_is_written(client, runs, names, code, words):
    before = (runs / "dc" / "directions.names.json").exists()
    r = client.put("/v1/models/dc/directions/names", json={"names": names})
    assert r.status_code == 422 and r.json()["code"] == code and words in r.json()["error"], r.text
    assert (runs / "dc" / "directions.names.json").exists() == before


@pytest.mark.parametrize("model,status,words", [
    ("bare", 404, "ganplug directions RUN"), ("p2p", 404, "image-to-image"), ("nosuch", 404, "nosuch")])
def test_a_model_without_directions_answers_404_with_the_fix(client, model, status, words):
    for r in (client.get(f"/v1/models/{model}/directions"),
              client.put(f"/v1/models/{model}/directions/names", json={"names": ["a"]})):
        assert r.status_code == status and words in r.json()["error"], r.text


def test_a_damaged_directions_file_is_a_422(tmp_path, runs):
    shutil.copytree(runs / "dc", tmp_path / "dc")
    (tmp_path / "dc" / dirs.DEFAULT_NAME).write_bytes(b"not safetensors")
    with make_client(models=(tmp_path / "dc",)) as c:
        assert c.get("/v1/models").json()["models"][0]["directions"] is None
        r = c.get("/v1/models/dc/directions")
        assert r.status_code == 422 and r.json()["code"] == "bad_directions", r.text
        assert str(tmp_path) not in r.json()["error"]


# ----------------------------------------------------------------------------------- latents


def _w(runs):
    model = load_generator(runs / "sg", device="cpu")
    return np.random.default_rng(3).standard_normal((model.spec.num_ws, model.G.w_dim)).astype(np.float32)


def test_a_latent_draws_one_image_and_is_echoed(client, runs):
    w = _w(runs)
    r = client.post("/v1/generate", json={"model": "sg", "latent": _wire(w, "w"), "edits": "1:+1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["images"]) == 1 and body["params"]["latent"] == _wire(w, "w")  # a layer can resend it
    assert body["params"]["edits"] == "1:+1" and body["params"]["edit_space"] == "w"
    r = client.post("/v1/generate", json={"model": "dc", "latent": _wire(np.zeros(16, np.float32), "z")})
    assert r.status_code == 200, r.text


def test_bad_latents_are_refused_with_the_reason(client, runs):
    w = _w(runs)
    nan = w.copy()
    nan[0, 0] = np.nan
    cases = [
        ({"model": "sg", "latent": _wire(w[:1], "w")}, "bad_latent", "shape [1, 16]"),
        ({"model": "sg", "latent": _wire(w.reshape(-1), "w")}, "bad_latent", "shape"),
        ({"model": "dc", "latent": _wire(w, "w")}, "bad_latent", "style-based"),
        ({"model": "dc", "latent": _wire(np.zeros(15, np.float32), "z")}, "bad_latent", "[16]"),
        ({"model": "sg", "latent": _wire(nan, "w")}, "bad_latent", "nan"),
        ({"model": "sg", "latent": _wire(w, "w", data="@@not base64@@")}, "bad_latent", "base64"),
        ({"model": "sg", "latent": _wire(w, "w", shape=[w.shape[0], 8])}, "bad_latent", "bytes"),
        ({"model": "sg", "latent": _wire(w, "w", shape=[300, 300])}, "bad_latent", "limit"),
        ({"model": "sg", "latent": _wire(w, "w", dtype="float64")}, "invalid_request", "dtype"),
        ({"model": "sg", "latent": _wire(w, "w", shape=[1, 1, 1])}, "invalid_request", "shape"),
        ({"model": "sg", "latent": _wire(w, "w"), "seeds": [1]}, "invalid_request", "not both"),
        ({"model": "sg", "latent": _wire(w, "w"), "count": 2}, "invalid_request", "not both"),
        ({"model": "sg", "latent": {**_wire(w, "w"), "extra": 1}}, "invalid_request", "extra"),
        ({"model": "p2p", "latent": _wire(w, "w")}, "not_supported", "image-to-image"),
        ({"model": "bare", "latent": _wire(np.zeros(16, np.float32), "z"), "edits": "0:+1"}, "no_directions",
         "ganplug directions"),
    ]
    for body, code, words in cases:
        for kind, extra in (("generate", {}), ("variations", {"seed": 1, "count": 1})):
            if kind == "variations" and ("seeds" in body or "count" in body):
                continue
            r = client.post(f"/v1/{kind}", json={**body, **extra})
            assert r.status_code == 422, (kind, body, r.text)
            assert r.json()["code"] == code and words in r.json()["error"], (kind, r.json())


def test_the_schema_states_the_latent_and_name_limits(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["Latent"]["properties"]["data"]["maxLength"] == S.MAX_LATENT_B64
    assert S.MAX_LATENT_B64 >= 4 * S.MAX_LATENT_VALUES * 4 // 3  # every allowed latent fits in it
    names = schemas["DirectionNames"]["properties"]["names"]
    assert names["maxItems"] == S.MAX_DIRECTIONS and names["items"]["maxLength"] == dirs.NAME_MAX == 40
    over = {"space": "w", "shape": [1], "dtype": "float32", "data": "A" * (S.MAX_LATENT_B64 + 4)}
    r = client.post("/v1/generate", json={"model": "sg", "latent": over})
    assert r.status_code == 422 and "data" in r.json()["error"], r.text
    for kind in ("generate", "variations"):
        props = schemas[f"{'Generate' if kind == 'generate' else 'Variations'}Request"]["properties"]
        assert "latent" in props and "edits" in props
