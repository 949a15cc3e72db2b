"""What made a layer survives Krita: generate (an RGBA model too), steer and keep in one kritarunner, save the
.kra, quit; a second kritarunner opens it and regenerates every layer from the document alone. The same for a
layer found in the model (Find in model): its latent is in the document, so it regenerates, steers and varies
after reopening too. Real Krita, real `ganplug serve`, untrained 32 px models made for this module: DCGANs (one
RGBA, one with a directions file) and a StyleGAN with a directions file."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from host_helpers import REPO, host_env, keep_screenshot, require_app, start_server
from PIL import Image

pytestmark = pytest.mark.host
W, H = 96, 64

COMMON = r'''
import json, os, time

def _out(name):
    return os.path.join(os.environ["GANPLUG_OUT"], name)

def _dump(node, name):
    open(_out(name), "wb").write(bytes(node.pixelData(0, 0, 96, 64)))

def _wait(cond, seconds=60):
    from PyQt5.QtWidgets import QApplication
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for the Steer preview")
        QApplication.processEvents()
        time.sleep(0.002)
'''

MAKE = COMMON + r'''
def main(*args):
    from krita import Krita
    from ganplug_krita import document, provenance, state, steer
    from ganplug_krita import ganplug_client as client
    from ganplug_krita.docker import GanplugDocker

    app = Krita.instance()
    url = os.environ["GANPLUG_URL"]
    api = client.Client(url)
    report = {}
    doc = app.createDocument(96, 64, "provenance", "RGBA", "U8", "", 300.0)
    rgba = document.generate(doc, api, state.Settings(model="rgba32", seed=5, truncation=1.0))[0]
    base = document.generate(doc, api, state.Settings(model="steer32", seed=21, truncation=0.8))[0]
    var = document.variations(doc, api, state.Settings(count=2, strength=0.5), node=base)[1]
    report["names"] = {"rgba": rgba.name(), "base": base.name(), "var": var.name()}

    app.writeSetting("ganplug", "settings", state.Settings(server_url=url).to_json())
    docker = GanplugDocker()
    panel = docker.steer
    doc.setActiveNode(base)
    report["bound"] = panel.bind(doc, base)
    report["visible_sliders"] = sum(1 for _, s, _ in panel.rows if not s.isHidden())
    panel.rows[0][0].setText("brightness")
    panel.rows[0][0].editingFinished.emit()
    shown = []
    panel.shown.connect(lambda seq, t: shown.append(seq))
    # three moves before Krita runs its event loop: the first is sent, the second is replaced by the third
    panel.rows[0][1].setValue(150)
    panel.rows[2][1].setValue(-100)
    panel.rows[0][1].setValue(200)
    report["in_flight_after_moves"] = panel.sched.in_flight.seq if panel.sched.in_flight else None
    _wait(lambda: not panel.sched.busy and len(shown) >= 2)
    report["shown"] = list(shown)
    report["replaced"] = panel.sched.replaced
    report["preview_name"] = panel.session["preview"].name()
    _dump(panel.session["preview"], "preview.bgra")
    docker.grab()  # lays the docker out; then the Steer panel alone, offscreen (docs/img/krita-steer.png)
    panel.grab().save(_out("steer.png"))
    kept = panel.keep()
    report["kept_name"] = kept.name()
    report["rebound_names"] = [n.text() for n, _, _ in panel.rows[:2]]
    report["rebound_positions"] = panel.positions()
    _dump(kept, "kept.bgra")
    _dump(rgba, "rgba.bgra")
    # Discard drops the preview layer; a model without a directions file is refused with the fix to run
    panel.bind(doc, base)
    before = [n.name() for n in doc.rootNode().childNodes()]
    panel.rows[1][1].setValue(-50)
    _wait(lambda: not panel.sched.busy and panel.session["preview"] is not None)
    report["with_preview"] = len(doc.rootNode().childNodes()) - len(before)
    panel.discard()
    report["after_discard"] = [n.name() for n in doc.rootNode().childNodes()] == before
    # Variations of the steered layer are steered variations (its edits go with them)
    _dump(document.variations(doc, api, state.Settings(count=2, strength=0.5), node=kept)[1], "kept_var.bgra")
    report["rgba_bound"] = panel.bind(doc, rgba)
    report["rgba_says"] = docker.status.text()
    report["uids"] = {k: document.uid_of(n) for k, n in (("rgba", rgba), ("base", base), ("var", var),
                                                          ("kept", kept))}
    report["sidecar"] = json.loads(bytes(doc.annotation(provenance.ANNOTATION)).decode())
    doc.setBatchmode(True)
    report["saved"] = doc.saveAs(_out("steered.kra"))
    doc.close()
    json.dump(report, open(_out("make.json"), "w"))
'''

REOPEN = COMMON + r'''
def main(*args):
    from krita import Krita
    from ganplug_krita import document
    from ganplug_krita import ganplug_client as client

    app = Krita.instance()
    api = client.Client(os.environ["GANPLUG_URL"])
    uids = json.load(open(_out("make.json")))["uids"]
    doc = app.openDocument(_out("steered.kra"))
    by_uid = {document.uid_of(n): n for n in document.all_nodes(doc)}
    report = {"found": sorted(k for k, u in uids.items() if u in by_uid)}
    kept = by_uid[uids["kept"]]
    kept.setName("my favourite")  # the sidecar, not the name, says what made it
    for key in ("rgba", "base", "var", "kept"):
        node = by_uid[uids[key]]
        prov = document.provenance_of(doc, node)
        report[key] = prov.to_dict()
        again = document.regenerate(doc, api, node=node)[0]
        report[key + "_same"] = bytes(again.pixelData(0, 0, 96, 64)) == bytes(node.pixelData(0, 0, 96, 64))
        report[key + "_again_name"] = again.name()
        _dump(again, key + "_again.bgra")
    json.dump(report, open(_out("reopen.json"), "w"))
'''


def write_visible_run(run_dir, size=32, channels=3, step=1, **model):
    """An untrained DCGAN whose last layer is scaled so its images span the range (an untrained DCGAN draws
    flat grey, where neither an edit nor an alpha channel would show)."""
    import copy
    from dataclasses import asdict

    import torch

    from ganplug.checkpoint import save_training_checkpoint
    from ganplug.models import build_models, config_from_dict

    torch.manual_seed(step)
    cfg = config_from_dict("dcgan", {"size": size, "channels": channels, **model})
    G, D, _ = build_models("dcgan", cfg)
    G.eval()
    last = [m for m in G.modules() if isinstance(m, (torch.nn.ConvTranspose2d, torch.nn.Conv2d))][-1]
    with torch.no_grad():
        spread = G(torch.randn(16, cfg.z_dim)).std()
        last.weight.mul_(0.8 / float(spread))
    return save_training_checkpoint(run_dir, step=step, G=G, D=D, G_ema=copy.deepcopy(G),
                                    opt_G=torch.optim.Adam(G.parameters()), opt_D=torch.optim.Adam(D.parameters()),
                                    rng={"cpu": torch.get_rng_state()},
                                    meta={"arch": "dcgan", "model": asdict(cfg), "train": {}})


def write_directions(run_dir, n=4, samples=512):
    from ganplug import directions
    from ganplug.checkpoint import load_generator

    loaded = load_generator(run_dir)
    directions.save(directions.find(loaded, n=n, samples=samples), directions.default_path(loaded))


FIND = COMMON + r'''
def main(*args):
    from krita import Krita
    from PyQt5.QtCore import QByteArray
    from ganplug_krita import document, provenance, state
    from ganplug_krita import ganplug_client as client
    from ganplug_krita.docker import GanplugDocker

    app = Krita.instance()
    api = client.Client(os.environ["GANPLUG_URL"])
    doc = app.createDocument(96, 64, "find", "RGBA", "U8", "", 300.0)
    sketch = doc.createNode("sketch", "paintlayer")
    doc.rootNode().addChildNode(sketch, None)
    sketch.setPixelData(QByteArray(open(_out("sketch.bgra"), "rb").read()), 0, 0, 96, 64)
    report = {}
    progress = []
    found = document.find_in_model(doc, api, state.Settings(model="style32", seed=3, project_steps=30), node=sketch,
                                   on_progress=lambda f, m: progress.append(f))[0]
    report["progress"] = progress
    report["found_name"] = found.name()
    report["found"] = document.provenance_of(doc, found).to_dict()
    _dump(found, "found.bgra")
    layers = len(doc.rootNode().childNodes())
    seen = []
    try:
        document.find_in_model(doc, api, state.Settings(model="style32", project_steps=5000), node=sketch,
                               on_progress=lambda f, m: seen.append(f),
                               should_cancel=lambda: bool(seen) and seen[-1] > 0)
    except client.Cancelled as e:
        report["cancelled"] = str(e)
    report["layers_added_by_cancelled"] = len(doc.rootNode().childNodes()) - layers
    deadline = time.monotonic() + 20
    while True:
        last = [j for j in api.jobs() if j["kind"] == "project"][-1]
        if last["state"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    report["server_job"] = last["state"]
    report["server_job_progress"] = last["progress"]
    try:
        document.find_in_model(doc, api, state.Settings(model="steer32"), node=sketch)
    except client.ServerError as e:
        report["refused"] = str(e)

    # Regenerate: the found latent alone makes the found layer again
    again = document.regenerate(doc, api, node=found)[0]
    report["again_name"] = again.name()
    _dump(again, "found_again.bgra")

    # Steer: sliders around the found latent, Keep
    app.writeSetting("ganplug", "settings", state.Settings(server_url=os.environ["GANPLUG_URL"]).to_json())
    docker = GanplugDocker()
    panel = docker.steer
    doc.setActiveNode(found)
    report["steer_bound"] = panel.bind(doc, found)
    report["steer_says"] = docker.status.text()
    shown = []
    panel.shown.connect(lambda seq, t: shown.append(seq))
    panel.rows[0][1].setValue(150)
    _wait(lambda: not panel.sched.busy and shown)
    _dump(panel.session["preview"], "found_preview.bgra")
    kept = panel.keep()
    panel.discard()
    report["kept_name"] = kept.name()
    _dump(kept, "found_kept.bgra")

    # Variations around the found latent, and around the steered one (with its edits)
    var = document.variations(doc, api, state.Settings(count=2, strength=0.5), node=found)[1]
    kvar = document.variations(doc, api, state.Settings(count=2, strength=0.5), node=kept)[1]
    report["var_name"], report["kvar_name"] = var.name(), kvar.name()
    _dump(var, "found_var.bgra")
    _dump(kvar, "found_kvar.bgra")
    # a layer whose record is gone (pasted from another document: only its name) is refused, not guessed
    report["no_latent"] = provenance.resolve("{pasted}", found.name(), {}).kind

    # the docker's own job path: QTimer polling into the progress bar, then the layer; and its Cancel
    rect = (0, 0, 96, 64)
    png = document.layer_png_b64(doc, sketch, rect)
    bar = []
    docker.progress.valueChanged.connect(bar.append)
    before = {document.uid_of(n) for n in doc.rootNode().childNodes()}
    docker._start("project", state.project_request(state.Settings(model="style32", seed=3, project_steps=30),
                                                   png, 96, 64), rect, above=sketch, base_seed=3, doc=doc)
    _wait(lambda: docker.job is None)
    report["docker_bar"] = list(bar)
    report["docker_says"] = docker.status.text()
    new = [n for n in doc.rootNode().childNodes() if document.uid_of(n) not in before]
    report["docker_layers"] = [n.name() for n in new]
    report["docker_same_pixels"] = bool(new) and bytes(new[0].pixelData(0, 0, 96, 64)) == bytes(
        found.pixelData(0, 0, 96, 64))
    layers = len(doc.rootNode().childNodes())
    docker._start("project", state.project_request(state.Settings(model="style32", project_steps=5000), png, 96, 64),
                  rect, above=sketch, doc=doc)
    job_id = docker.job[0]
    _wait(lambda: docker.progress.value() > 0)
    docker.on_cancel()
    time.sleep(0.5)
    report["docker_cancel"] = [docker.job is None, docker.status.text(), api.job(job_id)["state"],
                               len(doc.rootNode().childNodes()) - layers]
    report["uids"] = {k: document.uid_of(n) for k, n in (("found", found), ("kept", kept), ("var", var),
                                                          ("kvar", kvar))}
    doc.setBatchmode(True)
    report["saved"] = doc.saveAs(_out("found.kra"))
    doc.close()
    json.dump(report, open(_out("find.json"), "w"))
'''

FIND_REOPEN = COMMON + r'''
def main(*args):
    from krita import Krita
    from ganplug_krita import document, state
    from ganplug_krita import ganplug_client as client
    from ganplug_krita.docker import GanplugDocker

    app = Krita.instance()
    api = client.Client(os.environ["GANPLUG_URL"])
    uids = json.load(open(_out("find.json")))["uids"]
    doc = app.openDocument(_out("found.kra"))
    by_uid = {document.uid_of(n): n for n in document.all_nodes(doc)}
    report = {"present": sorted(k for k, u in uids.items() if u in by_uid)}
    for key in ("found", "kept", "var", "kvar"):
        node = by_uid[uids[key]]
        report[key] = document.provenance_of(doc, node).to_dict()
        again = document.regenerate(doc, api, node=node)[0]
        report[key + "_same"] = bytes(again.pixelData(0, 0, 96, 64)) == bytes(node.pixelData(0, 0, 96, 64))
        _dump(again, key + "_reopened.bgra")
    found, kept = by_uid[uids["found"]], by_uid[uids["kept"]]
    _dump(document.variations(doc, api, state.Settings(count=2, strength=0.5), node=found)[1], "var_reopened2.bgra")

    app.writeSetting("ganplug", "settings", state.Settings(server_url=os.environ["GANPLUG_URL"]).to_json())
    panel = GanplugDocker().steer
    doc.setActiveNode(kept)
    panel.bind(doc, kept)
    report["kept_positions"] = panel.positions()  # the sliders show the kept layer's edits
    doc.setActiveNode(found)
    report["steer_bound"] = panel.bind(doc, found)
    shown = []
    panel.shown.connect(lambda seq, t: shown.append(seq))
    panel.rows[1][1].setValue(-100)
    _wait(lambda: not panel.sched.busy and shown)
    _dump(panel.session["preview"], "steer_reopened.bgra")
    panel.discard()
    json.dump(report, open(_out("find_reopen.json"), "w"))
'''


@pytest.fixture(scope="module")
def steer_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("krita-models")
    write_visible_run(root / "rgba32", channels=4, base_channels=8, z_dim=16)
    write_visible_run(root / "steer32", channels=3, base_channels=8, z_dim=16, step=2)
    write_directions(root / "steer32")
    sys.path.insert(0, str(REPO / "tests" / "serve"))
    from serve_helpers import write_untrained_run

    write_untrained_run(root / "style32", arch="stylegan", size=32, z_dim=16, w_dim=16, mapping_layers=2,
                        capacity=0.05, channel_max=32)
    write_directions(root / "style32")
    server = start_server([root / "rgba32", root / "steer32", root / "style32"], root / "serve.log")
    yield server
    server.stop()


def _run_krita(tmp_path, name, script, url):
    from ganplug.serve.plugins import install_krita

    pykrita = tmp_path / "pykrita"
    if not pykrita.exists():
        install_krita(pykrita)
    (tmp_path / f"{name}.py").write_text(script)
    env = host_env(tmp_path / "home", GANPLUG_URL=url, GANPLUG_OUT=tmp_path, PYTHONPATH=f"{tmp_path}:{pykrita}")
    proc = subprocess.run(["kritarunner", "-s", name, "-f", "main"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=180)
    out = tmp_path / f"{name}.json"
    assert out.exists(), f"kritarunner failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text())


def _rgba(path):
    return np.frombuffer(path.read_bytes(), np.uint8).reshape(H, W, 4)[..., [2, 1, 0, 3]]


def _served(server, body):
    served = server.post("/v1/generate", {"width": W, "height": H, **body})
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(served["images"][0]["png"]))).convert("RGBA"))


def test_layers_regenerate_from_the_saved_document_after_krita_restarts(steer_server, tmp_path):
    require_app("kritarunner")
    made = _run_krita(tmp_path, "make", MAKE, steer_server.url)

    # an RGBA model's layer keeps the model's alpha, pixel for pixel
    rgba = _rgba(tmp_path / "rgba.bgra")
    served_rgba = _served(steer_server, {"model": "rgba32", "seeds": [5]})
    np.testing.assert_array_equal(rgba, served_rgba)
    assert rgba[..., 3].min() < 64 and rgba[..., 3].max() > 192, "the RGBA model's alpha did not come through"

    # Steer: the first move was sent at once, the second replaced by the third before it was sent
    assert made["bound"] is True and made["visible_sliders"] == 4  # the count GET /v1/models lists
    assert made["in_flight_after_moves"] == 1 and made["replaced"] == 1 and made["shown"] == [1, 3]
    assert made["preview_name"] == "ganplug steer preview"
    shot = np.asarray(Image.open(tmp_path / "steer.png").convert("RGB"))
    assert shot.shape[0] >= 100 and shot.shape[1] >= 200 and shot.std() > 10  # the panel drew its sliders
    keep_screenshot(tmp_path / "steer.png", "krita-steer.png")
    steered = _served(steer_server, {"model": "steer32", "seeds": [21], "truncation": 0.8,
                                     "edits": [{"direction": 0, "amount": 2.0}, {"direction": 2, "amount": -1.0}]})
    plain = _served(steer_server, {"model": "steer32", "seeds": [21], "truncation": 0.8})
    assert np.abs(steered.astype(int) - plain.astype(int)).max() > 10, "the edit did not change the image"
    np.testing.assert_array_equal(_rgba(tmp_path / "preview.bgra"), steered)
    np.testing.assert_array_equal(_rgba(tmp_path / "kept.bgra"), steered)
    assert made["kept_name"] == "ganplug steer32 #21 t0.80 e0:+2,2:-1"
    assert made["rebound_names"] == ["brightness", "direction 1"] and made["rebound_positions"] == [200, 0, -100, 0]
    assert made["names"]["var"] == "ganplug steer32 #21 v2 t0.80"
    assert made["with_preview"] == 1 and made["after_discard"] is True
    assert made["rgba_bound"] is False and "has no directions: run `ganplug directions RUN`" in made["rgba_says"]
    layers = made["sidecar"]["layers"]
    assert made["sidecar"]["format"] == "ganplug-krita-provenance" and made["saved"] is True
    assert layers[made["uids"]["var"]]["strength"] == 0.5 and layers[made["uids"]["kept"]]["edits"] == [
        {"direction": 0, "amount": 2.0}, {"direction": 2, "amount": -1.0}]
    assert set(made["uids"].values()) <= set(layers) and len(layers) == 7  # rgba, base, kept, 2 + 2 variations
    with urllib.request.urlopen(steer_server.url + "/v1/models/steer32/directions") as r:
        assert json.loads(r.read())["names"] == ["brightness", None, None, None]  # saved beside the run
    kept_var = steer_server.post("/v1/variations", {
        "model": "steer32", "seed": 21, "count": 2, "strength": 0.5, "truncation": 0.8, "width": W, "height": H,
        "edits": [{"direction": 0, "amount": 2.0}, {"direction": 2, "amount": -1.0}]})["images"][1]["png"]
    np.testing.assert_array_equal(_rgba(tmp_path / "kept_var.bgra"),
                                  np.asarray(Image.open(io.BytesIO(base64.b64decode(kept_var))).convert("RGBA")))

    # a new Krita opens the .kra and makes every layer again from the document alone
    again = _run_krita(tmp_path, "reopen", REOPEN, steer_server.url)
    assert again["found"] == ["base", "kept", "rgba", "var"]
    for key in ("rgba", "base", "var", "kept"):
        assert again[key + "_same"] is True, key
    assert again["kept"]["edits"] == [{"direction": 0, "amount": 2.0}, {"direction": 2, "amount": -1.0}]
    assert again["kept_again_name"] == "ganplug steer32 #21 t0.80 e0:+2,2:-1"  # renamed, still known
    np.testing.assert_array_equal(_rgba(tmp_path / "kept_again.bgra"), steered)
    np.testing.assert_array_equal(_rgba(tmp_path / "rgba_again.bgra"), served_rgba)
    served_var = steer_server.post("/v1/variations", {"model": "steer32", "seed": 21, "count": 2, "strength": 0.5,
                                                      "truncation": 0.8, "width": W, "height": H})
    var_ref = np.asarray(Image.open(io.BytesIO(base64.b64decode(served_var["images"][1]["png"]))).convert("RGBA"))
    np.testing.assert_array_equal(_rgba(tmp_path / "var_again.bgra"), var_ref)


def _latent_body(latent):
    return {"model": "style32", "latent": latent}


def _served_variation(server, body, index=1):
    served = server.post("/v1/variations", {"count": 2, "strength": 0.5, "width": W, "height": H, **body})
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(served["images"][index]["png"]))).convert("RGBA"))


def test_find_in_model_then_regenerate_steer_and_vary_the_found_latent_after_reopening(steer_server, tmp_path):
    require_app("kritarunner")
    yy, xx = np.mgrid[0:H, 0:W]
    sketch = np.stack([xx * 255 // (W - 1), yy * 255 // (H - 1), 255 - xx * 255 // (W - 1),
                       np.full_like(xx, 255)], -1).astype(np.uint8)
    (tmp_path / "sketch.bgra").write_bytes(sketch[..., [2, 1, 0, 3]].tobytes())
    found = _run_krita(tmp_path, "find", FIND, steer_server.url)

    # Find in model: a job with progress; the layer is the server's projection (noise maps not fitted)
    assert found["found_name"] == "ganplug style32 #3 t1.00 found"  # #3: the seed the search started from
    record = found["found"]
    assert record["kind"] == "project" and record["steps"] == 30 and record["seed"] == 3
    fractions = found["progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(set(fractions)) >= 3
    buf = io.BytesIO()
    Image.fromarray(sketch).save(buf, format="PNG")
    served = steer_server.post("/v1/project", {"model": "style32", "image": base64.b64encode(buf.getvalue()).decode(),
                                               "steps": 30, "seed": 3, "optimize_noise": False, "width": W,
                                               "height": H})
    ref = np.asarray(Image.open(io.BytesIO(base64.b64decode(served["images"][0]["png"]))).convert("RGBA"))
    found_px = _rgba(tmp_path / "found.bgra")
    np.testing.assert_array_equal(found_px, ref)
    latent = record["latent"]  # the server's params.latent, kept in the document's record
    assert latent == served["params"]["latent"]
    assert latent["space"] == "w" and latent["dtype"] == "float32" and latent["shape"][1] == 16
    assert len(base64.b64decode(latent["data"])) == 4 * latent["shape"][0] * latent["shape"][1]

    assert found["cancelled"] == "cancelled." and found["layers_added_by_cancelled"] == 0
    assert found["server_job"] == "cancelled" and found["server_job_progress"] < 0.5  # stopped, not finished
    assert "projection needs a style-based" in found["refused"]

    # Regenerate: the server's pixels for that latent, which are the found layer's exactly
    from_latent = _served(steer_server, _latent_body(latent))
    np.testing.assert_array_equal(from_latent, found_px)
    np.testing.assert_array_equal(_rgba(tmp_path / "found_again.bgra"), found_px)
    assert found["again_name"] == found["found_name"]

    # Steer: the sliders move the found latent as the server's generate with latent + edits does
    assert found["steer_bound"] is True and "4 direction(s)" in found["steer_says"]
    edits = [{"direction": 0, "amount": 1.5}]
    steered = _served(steer_server, {**_latent_body(latent), "edits": edits})
    assert np.abs(steered.astype(int) - found_px.astype(int)).max() > 5, "the edit did not change the image"
    np.testing.assert_array_equal(_rgba(tmp_path / "found_preview.bgra"), steered)
    np.testing.assert_array_equal(_rgba(tmp_path / "found_kept.bgra"), steered)
    assert found["kept_name"] == "ganplug style32 #3 t1.00 found e0:+1.5"

    # Variations: around the latent, and around the steered latent with its edits
    var_ref = _served_variation(steer_server, {**_latent_body(latent), "seed": 3})
    kvar_ref = _served_variation(steer_server, {**_latent_body(latent), "seed": 3, "edits": edits})
    np.testing.assert_array_equal(_rgba(tmp_path / "found_var.bgra"), var_ref)
    np.testing.assert_array_equal(_rgba(tmp_path / "found_kvar.bgra"), kvar_ref)
    assert np.abs(var_ref.astype(int) - found_px.astype(int)).max() > 5 and not np.array_equal(var_ref, kvar_ref)
    assert found["var_name"] == "ganplug style32 #3 v2 t1.00 found"
    assert found["kvar_name"] == "ganplug style32 #3 v2 t1.00 found e0:+1.5"
    assert found["no_latent"] == "project"  # a name holds no latent: refused (test_plugin_state checks how)

    bar = found["docker_bar"]
    assert bar == sorted(bar) and bar[-1] == 1000 and len(set(bar)) >= 2  # the progress bar moved to the end
    assert "Regenerate, Variations and Steer work on the found layer" in found["docker_says"]
    assert found["docker_layers"] == [found["found_name"]] and found["docker_same_pixels"] is True
    assert found["docker_cancel"] == [True, "cancelled.", "cancelled", 0]
    assert found["saved"] is True

    # a new Krita opens the .kra: the records still hold the latent, and everything works from it
    again = _run_krita(tmp_path, "find_reopen", FIND_REOPEN, steer_server.url)
    assert again["present"] == ["found", "kept", "kvar", "var"]
    for key in ("found", "kept", "var", "kvar"):
        assert again[key]["latent"] == latent, key
        assert again[key + "_same"] is True, key
    assert again["kept"]["edits"] == edits and again["kvar"]["edits"] == edits
    np.testing.assert_array_equal(_rgba(tmp_path / "found_reopened.bgra"), from_latent)
    np.testing.assert_array_equal(_rgba(tmp_path / "kept_reopened.bgra"), steered)
    np.testing.assert_array_equal(_rgba(tmp_path / "var_reopened.bgra"), var_ref)
    np.testing.assert_array_equal(_rgba(tmp_path / "kvar_reopened.bgra"), kvar_ref)
    np.testing.assert_array_equal(_rgba(tmp_path / "var_reopened2.bgra"), var_ref)
    assert again["kept_positions"] == [150, 0, 0, 0] and again["steer_bound"] is True
    np.testing.assert_array_equal(_rgba(tmp_path / "steer_reopened.bgra"), _served(
        steer_server, {**_latent_body(latent), "edits": [{"direction": 1, "amount": -1.0}]}))
