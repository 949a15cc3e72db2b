"""The Krita plugin inside real Krita (kritarunner, headless) against a real `ganplug serve`."""

from __future__ import annotations

import base64
import io
import json
import subprocess

import numpy as np
import pytest
from host_helpers import host_env, keep_screenshot, require_app
from PIL import Image

pytestmark = pytest.mark.host

SCRIPT = r'''
import json, os

def main(*args):
    from krita import Krita
    from ganplug_krita import document, state
    from ganplug_krita import ganplug_client as client

    out_dir = os.environ["GANPLUG_OUT"]
    api = client.Client(os.environ["GANPLUG_URL"])
    app = Krita.instance()
    doc = app.createDocument(96, 64, "ganplug test", "RGBA", "U8", "", 300.0)
    report = {"before": [n.name() for n in doc.rootNode().childNodes()]}
    nodes = document.generate(doc, api, state.Settings(seed=1234, count=2, truncation=1.0))
    report["generated"] = [n.name() for n in nodes]
    open(os.path.join(out_dir, "layer0.bgra"), "wb").write(bytes(nodes[0].pixelData(0, 0, 96, 64)))
    var = document.variations(doc, api, state.Settings(count=2, strength=0.5), node=nodes[0])
    report["variations"] = [n.name() for n in var]
    regen = document.regenerate(doc, api, node=nodes[1])
    report["regenerated_same"] = bytes(regen[0].pixelData(0, 0, 96, 64)) == bytes(nodes[1].pixelData(0, 0, 96, 64))
    try:
        document.translate(doc, api, state.Settings(), node=nodes[0])
    except client.ServerError as e:
        report["translate_error"] = str(e)
    try:
        document.generate(doc, client.Client("http://127.0.0.1:9"), state.Settings())
    except client.ServerError as e:
        report["down_error"] = str(e)
    report["after"] = [n.name() for n in doc.rootNode().childNodes()]
    doc.refreshProjection()
    doc.projection(0, 0, 96, 64).save(os.path.join(out_dir, "canvas.png"))

    from PyQt5.QtWidgets import QApplication
    from ganplug_krita.docker import GanplugDocker
    app.writeSetting("ganplug", "settings", state.Settings(server_url=os.environ["GANPLUG_URL"], seed=1234).to_json())
    docker = GanplugDocker()
    docker.resize(420, 380)
    docker.show()
    QApplication.processEvents()
    report["docker_models"] = [docker.model.itemText(i) for i in range(docker.model.count())]
    report["docker_status"] = docker.status.text()
    docker.grab().save(os.path.join(out_dir, "docker.png"))
    json.dump(report, open(os.path.join(out_dir, "report.json"), "w"))
'''


def test_krita_generates_layers_matching_the_server(live_server, tmp_path):
    require_app("kritarunner")
    pykrita = tmp_path / "pykrita"
    from ganplug.serve.plugins import install_krita

    install_krita(pykrita)
    (tmp_path / "krita_ganplug_check.py").write_text(SCRIPT)
    env = host_env(tmp_path / "home", GANPLUG_URL=live_server.url, GANPLUG_OUT=tmp_path,
                   PYTHONPATH=f"{tmp_path}:{pykrita}")
    proc = subprocess.run(["kritarunner", "-s", "krita_ganplug_check", "-f", "main"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    report_path = tmp_path / "report.json"
    assert report_path.exists(), f"kritarunner failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(report_path.read_text())

    model = "tiny"  # the run folder name of the lead's tiny_run
    assert report["generated"] == [f"ganplug {model} #1234 t1.00", f"ganplug {model} #1235 t1.00"]
    assert report["variations"] == [f"ganplug {model} #1234 v1 t1.00", f"ganplug {model} #1234 v2 t1.00"]
    assert set(report["generated"] + report["variations"]) <= set(report["after"])
    assert report["regenerated_same"] is True
    assert "does not translate" in report["translate_error"]
    assert report["down_error"].startswith("no ganplug server answers at http://127.0.0.1:9")

    # The first layer's pixels are exactly what the server returns for the same seed and size.
    bgra = np.frombuffer((tmp_path / "layer0.bgra").read_bytes(), np.uint8).reshape(64, 96, 4)
    rgba = bgra[..., [2, 1, 0, 3]]
    assert rgba[..., :3].std() > 5, "the layer is blank"
    served = live_server.post("/v1/generate", {"seeds": [1234], "width": 96, "height": 64, "truncation": 1.0})
    ref = np.asarray(Image.open(io.BytesIO(base64.b64decode(served["images"][0]["png"]))).convert("RGBA"))
    np.testing.assert_array_equal(rgba, ref)

    assert report["docker_models"] == ["tiny"]
    assert "1 model" in report["docker_status"]
    docker = np.asarray(Image.open(tmp_path / "docker.png").convert("RGB"))
    assert docker.shape[0] >= 300 and docker.std() > 10
    keep_screenshot(tmp_path / "docker.png", "krita-docker.png")
