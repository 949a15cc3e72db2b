"""The web page's Steer sliders in real headless Chromium against a real `ganplug serve`: a DCGAN run with a
directions file made by `ganplug directions RUN` (10 directions, 2 of them named through the API) beside one
without. Sliders are moved by dispatching input events, so the page's own handlers do the work."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from chromium_cdp import Browser
from host_helpers import host_env, keep_screenshot, require_app, start_server
from PIL import Image
from test_krita_provenance import write_visible_run

pytestmark = pytest.mark.host
NAMES = ["brightness", "", "armour plates"]  # directions 0 and 2 named, the rest unnamed


@pytest.fixture(scope="module")
def steer_web_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("web-steer-models")
    write_visible_run(root / "steer32", base_channels=8, z_dim=16, step=2)
    write_visible_run(root / "plain32", base_channels=8, z_dim=16, step=3)
    subprocess.run([sys.executable, "-m", "ganplug.cli.app", "directions", str(root / "steer32"), "--n", "10",
                    "--samples", "512", "--device", "cpu"], check=True, capture_output=True, timeout=300)
    server = start_server([root / "steer32", root / "plain32"], root / "serve.log")
    req = urllib.request.Request(server.url + "/v1/models/steer32/directions/names", method="PUT",
                                 data=json.dumps({"names": NAMES}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).close()
    yield server
    server.stop()


def _pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")).astype(int)


def _shown(browser) -> np.ndarray:
    """The pixels of the steered image as the page shows it (its <img>'s data URL, decoded)."""
    browser.wait_for("(() => { const i = document.getElementById('steer-img');"
                     " return i.complete && i.naturalWidth > 0; })()")
    return _pixels(browser.evaluate("document.getElementById('steer-img').src").split(",", 1)[1])


def _move(slider: int, value: int) -> str:
    return (f"(() => {{ const s = document.querySelectorAll('#steer-sliders input[type=range]')[{slider}];"
            f" s.value = {value}; s.dispatchEvent(new Event('input', {{bubbles: true}})); return true; }})()")


def test_page_steers_the_current_image_with_the_servers_directions(steer_web_server, tmp_path):
    exe = require_app("chromium")
    server = steer_web_server
    profile = tmp_path / "profile"
    profile.mkdir()
    browser = Browser(exe, profile, host_env(tmp_path / "home"))
    wait_idle = "document.body.dataset.steerBusy === '' && document.body.dataset.steerShown"
    try:
        browser.send("Page.enable")
        browser.send("Page.navigate", url=server.url + "/")
        browser.wait_for("document.body && document.body.dataset.ready === '1'")
        assert browser.evaluate("document.getElementById('model').value") == "steer32"

        # up to 8 sliders of the 10 directions, labelled with the server's names, else "direction K"
        assert browser.evaluate("document.body.dataset.steerDirections") == "8"
        assert browser.evaluate("document.getElementById('steer').hidden") is False
        labels = browser.evaluate("[...document.querySelectorAll('#steer-sliders .name')].map(n => n.textContent)")
        with urllib.request.urlopen(server.url + "/v1/models/steer32/directions", timeout=30) as r:
            served_names = json.loads(r.read())["names"]
        assert served_names[:3] == ["brightness", None, "armour plates"] and len(served_names) == 10
        assert labels == [n or f"direction {d}" for d, n in enumerate(served_names[:8])]
        ranges = browser.evaluate("[...document.querySelectorAll('#steer-sliders input')].map(s => [s.min, s.max])")
        assert ranges == [["-300", "300"]] * 8  # -3..+3 standard deviations

        browser.evaluate("document.getElementById('seed').value = 21; document.getElementById('count').value = 6;"
                         "document.getElementById('generate').click(); true")
        assert browser.wait_for("document.body.dataset.generated") == "6"
        base = {"model": "steer32", "seeds": [21], "truncation": 0.8, "tileable": False}
        plain = _pixels(server.post("/v1/generate", base)["images"][0]["png"])
        np.testing.assert_array_equal(_shown(browser), plain)  # the grid's first image is the one steered

        # three moves in one turn of the page's event loop: the first is sent, the second is replaced by the
        # third before it is sent (never queued), and the image ends as the server's for the last positions
        browser.evaluate(f"{_move(0, 150)} && {_move(2, -100)} && {_move(0, 200)}")
        assert browser.wait_for(wait_idle) == "3"
        assert browser.evaluate("document.body.dataset.steerReplaced") == "1"
        values = browser.evaluate("[...document.querySelectorAll('#steer-sliders output')].map(o => o.value)")
        assert values[:3] == ["2.00", "0.00", "-1.00"]
        edits = [{"direction": 0, "amount": 2.0}, {"direction": 2, "amount": -1.0}]
        steered = _pixels(server.post("/v1/generate", {**base, "edits": edits})["images"][0]["png"])
        assert np.abs(steered - plain).max() > 10, "the edit did not change the server's image"
        shown = _shown(browser)
        assert np.abs(shown - plain).max() > 10, "the page's image did not change"
        np.testing.assert_array_equal(shown, steered)
        assert browser.evaluate("document.getElementById('steer-caption').textContent") == "steer32 #21 0:+2,2:-1"
        shot = browser.screenshot(tmp_path / "web-steer.png")

        # a move then Reset before its answer lands: the answer is dropped, the sliders and image are reset
        dropped = int(browser.evaluate("document.body.dataset.steerDropped"))
        browser.evaluate(f"{_move(5, 300)} && (document.getElementById('steer-reset').click(), true)")
        browser.wait_for(wait_idle)
        assert int(browser.evaluate("document.body.dataset.steerDropped")) == dropped + 1
        assert browser.evaluate("[...document.querySelectorAll('#steer-sliders input')].every(s => s.value === '0')")
        np.testing.assert_array_equal(_shown(browser), plain)

        # clicking another grid image steers that one (with the settings that made the grid)
        browser.evaluate("document.querySelectorAll('#grid figure')[2].click(); true")
        browser.evaluate(_move(1, -250))
        before = int(browser.evaluate("document.body.dataset.steerShown"))
        browser.wait_for(f"document.body.dataset.steerBusy === '' && +document.body.dataset.steerShown > {before}")
        other = server.post("/v1/generate", {**base, "seeds": [23], "edits": [{"direction": 1, "amount": -2.5}]})
        np.testing.assert_array_equal(_shown(browser), _pixels(other["images"][0]["png"]))
        browser.wait_for("document.body.dataset.variations")

        # a model without a directions file has no sliders
        browser.evaluate("const m = document.getElementById('model'); m.value = 'plain32';"
                         "m.dispatchEvent(new Event('change')); true")
        assert browser.wait_for("document.body.dataset.steerDirections === '0'")
        assert browser.evaluate("document.getElementById('steer').hidden") is True
    finally:
        browser.close()

    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[1] == 1100 and img.std() > 10
    keep_screenshot(shot, "web-steer.png")
