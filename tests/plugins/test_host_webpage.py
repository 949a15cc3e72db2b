"""The drop-in web page in real headless Chromium against a real `ganplug serve`."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from chromium_cdp import Browser
from host_helpers import host_env, keep_screenshot, require_app
from PIL import Image

pytestmark = pytest.mark.host


def test_page_generates_a_grid_and_variations(live_server, tmp_path):
    exe = require_app("chromium")
    profile = tmp_path / "profile"
    profile.mkdir()
    browser = Browser(exe, profile, host_env(tmp_path / "home"))
    try:
        browser.send("Page.enable")
        browser.send("Page.navigate", url=live_server.url + "/")
        browser.wait_for("document.body && document.body.dataset.ready === '1'")
        assert browser.evaluate("document.getElementById('model').value") == "tiny"
        browser.evaluate("document.getElementById('seed').value = 40; document.getElementById('count').value = 8;"
                         "document.getElementById('generate').click(); true")
        assert browser.wait_for("document.body.dataset.generated") == "8"
        browser.wait_for("[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)")
        shown = browser.evaluate("[...document.querySelectorAll('#grid img')].map(i => i.src)")
        captions = browser.evaluate("[...document.querySelectorAll('#grid figcaption')].map(c => c.textContent)")
        assert captions == [f"tiny #{s}" for s in range(40, 48)]
        # The page shows exactly the server's images for those seeds.
        served = live_server.post("/v1/generate", {"seeds": list(range(40, 48)), "truncation": 0.8})
        assert [src.split(",", 1)[1] for src in shown] == [im["png"] for im in served["images"]]
        shot = browser.screenshot(tmp_path / "page.png")

        browser.evaluate("document.querySelector('#grid figure').click(); true")
        assert browser.wait_for("document.body.dataset.variations") == "6"
        var_caps = browser.evaluate("[...document.querySelectorAll('#variations figcaption')].map(c => c.textContent)")
        assert var_caps[0] == "tiny #40 v1"

        # Dropping an image on a model that cannot translate shows the server's sentence, not a crash.
        png = io.BytesIO()
        Image.new("RGB", (16, 16), (200, 30, 30)).save(png, format="PNG")
        b64 = base64.b64encode(png.getvalue()).decode()
        browser.evaluate(f"""(() => {{
            const bytes = Uint8Array.from(atob('{b64}'), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], 'sketch.png', {{type: 'image/png'}}));
            document.getElementById('drop').dispatchEvent(new DragEvent('drop', {{dataTransfer: dt}}));
            return true; }})()""")
        status = browser.wait_for("document.getElementById('status').className === 'error'"
                                  " && document.getElementById('status').textContent")
        assert "does not translate" in status
        browser.screenshot(tmp_path / "page-variations.png")
    finally:
        browser.close()

    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[1] == 1100 and img.std() > 10
    keep_screenshot(tmp_path / "page-variations.png", "web-page.png")
