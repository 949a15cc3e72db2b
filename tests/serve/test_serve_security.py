"""Refusals: bind, token, Host, model names, limits, malformed requests -> 4xx JSON, never a 500."""

from __future__ import annotations

import base64
import io
import os

import pytest
from PIL import Image
from serve_helpers import make_client

from ganplug.errors import UserError
from ganplug.serve import ServeSettings, create_app
from ganplug.serve.errors import ApiError
from ganplug.serve.imaging import decode_upload

TOKEN = "s3cret-token-123"


def test_non_loopback_bind_needs_a_token(tiny_run):
    with pytest.raises(UserError, match="refusing to listen on 0.0.0.0"):
        create_app(ServeSettings(models=(tiny_run,), host="0.0.0.0", device="cpu"))
    with pytest.raises(UserError, match="at least 8"):
        create_app(ServeSettings(host="0.0.0.0", token="short", device="cpu"))
    create_app(ServeSettings(models=(tiny_run,), host="0.0.0.0", token=TOKEN, device="cpu"))
    create_app(ServeSettings(models=(tiny_run,), host="::1", device="cpu"))


def test_every_request_needs_the_token(tiny_run):
    with make_client(models=(tiny_run,), token=TOKEN) as c:
        for path in ("/v1/health", "/v1/models", "/", "/openapi.json", "/v1/jobs"):
            r = c.get(path)
            assert r.status_code == 401 and r.json()["code"] == "unauthorized", path
        assert c.post("/v1/generate", json={"seeds": [1]}).status_code == 401
        assert c.get("/v1/health", headers={"Authorization": "Bearer wrong-token-1"}).status_code == 401
        assert c.get("/v1/health", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/v1/health", headers={"X-Ganplug-Token": TOKEN}).status_code == 200
        assert c.get(f"/?token={TOKEN}").status_code == 200


def test_loopback_server_refuses_foreign_host_headers(client):
    assert client.get("/v1/health", headers={"Host": "localhost:8765"}).status_code == 200
    assert client.get("/v1/health", headers={"Host": "[::1]:8765"}).status_code == 200
    r = client.get("/v1/health", headers={"Host": "attacker.example:8765"})
    assert r.status_code == 421 and r.json()["code"] == "bad_host"


@pytest.mark.parametrize("name", ["../tiny", "tiny/../../etc", "/etc/passwd", "..", "tiny\\..", "%2e%2e"])
def test_model_names_cannot_reach_paths(client, name):
    r = client.post("/v1/generate", json={"model": name, "seeds": [1]})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"


def test_unknown_model_lists_the_available_ones(client):
    r = client.post("/v1/generate", json={"model": "nope", "seeds": [1]})
    assert r.status_code == 404
    assert r.json() == {"error": "no model named 'nope'; available: tiny, style32.", "code": "model_not_found"}


def test_symlinks_out_of_a_model_folder_are_not_served(tmp_path, tiny_run):
    models = tmp_path / "models"
    models.mkdir()
    os.symlink(tiny_run, models / "escape")
    with make_client(models=(models,)) as c:
        assert c.get("/v1/models").json()["models"] == []
        r = c.post("/v1/generate", json={"model": "escape", "seeds": [1]})
        assert r.status_code == 404


def test_batch_size_and_output_limits(tiny_run):
    with make_client(models=(tiny_run,), max_batch=4, max_side=64, max_frames=6) as c:
        r = c.post("/v1/generate", json={"count": 5})
        assert r.status_code == 422 and r.json()["code"] == "batch_too_large"
        assert c.post("/v1/generate", json={"count": 4}).status_code == 200
        assert c.post("/v1/variations", json={"seed": 1, "count": 5}).status_code == 422
        assert c.post("/v1/interpolate", json={"seeds": [1, 2], "frames": 7}).status_code == 422
        r = c.post("/v1/generate", json={"seeds": [1], "size": 65})
        assert r.status_code == 422 and "64 px" in r.json()["error"]


def test_request_body_limit(tiny_run):
    with make_client(models=(tiny_run,), max_upload_bytes=1000) as c:
        r = c.post("/v1/translate", json={"image": "A" * 2000})
        assert r.status_code == 413 and r.json()["code"] == "upload_too_large"

        def chunks():  # no Content-Length: counted while streaming
            for _ in range(4):
                yield b'{"image": "' + b"A" * 400

        r = c.post("/v1/translate", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413


def _png(w, h, fmt="PNG") -> str:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (1, 2, 3)).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("data,status,code", [
    (_png(64, 64), None, None),
    ("data:image/png;base64," + _png(8, 8), None, None),
    (_png(200, 200), 413, "image_too_large"),
    ("not base64!!", 400, "bad_image"),
    (base64.b64encode(b"just text, not an image").decode(), 400, "bad_image"),
    (_png(8, 8, "GIF"), 415, "bad_image"),
    ("A" * 10_000, 413, "upload_too_large"),
])
def test_upload_decoding_limits(data, status, code):
    if status is None:
        assert decode_upload(data, max_bytes=4096, max_pixels=100 * 100).size[0] in (8, 64)
        return
    with pytest.raises(ApiError) as e:
        decode_upload(data, max_bytes=4096, max_pixels=100 * 100)
    assert (e.value.status, e.value.code) == (status, code)


@pytest.mark.parametrize("body", [
    b"{not json", b"[]", b'{"seeds": "1,2"}', b'{"seeds": [-1]}', b'{"seeds": [4294967296]}',
    b'{"truncation": NaN}', b'{"truncation": Infinity}', b'{"count": 0}', b'{"seeds": []}',
    b'{"unknown_option": 1}', b'{"size": 4}', b'{"tileable": "maybe"}', b'{"model": 5}',
])
def test_malformed_requests_get_a_json_422(client, body):
    r = client.post("/v1/generate", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_request" and r.json()["error"].startswith("invalid request:")


def test_unknown_routes_and_methods_are_json(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = client.put("/v1/generate", json={})
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    r = client.get("/v1/jobs/doesnotexist")
    assert r.status_code == 404 and r.json()["code"] == "job_not_found"


def test_missing_model_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        create_app(ServeSettings(models=(tmp_path / "missing",), device="cpu"))
