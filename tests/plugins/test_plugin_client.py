"""The stdlib client both plugins ship, against a real `ganplug serve` subprocess."""

from __future__ import annotations

import importlib.util
import threading

import pytest
from host_helpers import PLUGINS, start_server

_spec = importlib.util.spec_from_file_location("ganplug_client", PLUGINS / "common" / "ganplug_client.py")
client = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(client)


def test_client_round_trip(live_server):
    api = client.Client(live_server.url)
    assert api.health()["status"] == "ok"
    assert [m["name"] for m in api.models()] == ["tiny"]
    progress = []
    result = api.run("generate", {"seeds": [3, 4]}, on_progress=lambda f, m: progress.append(f))
    assert [im["seed"] for im in result["images"]] == [3, 4]
    assert client.image_bytes(result["images"][0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert progress == sorted(progress)
    same = api.call("generate", {"seeds": [3, 4]})
    assert [im["png"] for im in same["images"]] == [im["png"] for im in result["images"]]


def test_client_errors_are_sentences(live_server):
    api = client.Client(live_server.url)
    with pytest.raises(client.ServerError) as e:
        api.run("generate", {"model": "missing", "seeds": [1]})
    assert e.value.status == 404 and "no model named 'missing'" in str(e.value)
    with pytest.raises(client.ServerError) as e:
        api.run("stylemix", {"row_seeds": [1], "col_seeds": [2]})
    assert "style mixing needs a style-based model" in str(e.value)
    with pytest.raises(client.ServerUnavailable, match="no ganplug server answers at http://127.0.0.1:9"):
        client.Client("http://127.0.0.1:9").health()


def test_client_cancel(live_server):
    api = client.Client(live_server.url)
    asked = threading.Event()

    def should_cancel():
        if asked.is_set():
            return True
        asked.set()
        return False

    with pytest.raises(client.Cancelled):
        api.run("generate", {"count": 64, "size": 512}, should_cancel=should_cancel, poll=0.01)


def test_client_sends_the_token(tiny_run, tmp_path):
    server = start_server([tiny_run], tmp_path / "serve.log", "--token", "token-for-tests")
    try:
        with pytest.raises(client.ServerError) as e:
            client.Client(server.url).models()
        assert e.value.status == 401
        assert [m["name"] for m in client.Client(server.url, token="token-for-tests").models()] == ["tiny"]
    finally:
        server.stop()
