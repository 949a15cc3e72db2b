"""Armour textures in real Blender (background mode) against a real `ganplug serve` on loopback.

Two Blender runs: the first populates six identical plates (three by seeds with UV mapping, three by a
sweep of one latent direction with box mapping) and generates one RGBA texture, then saves the .blend; the
second opens it, edits one plate's recorded seed, regenerates, and renders the set at 120 x 120 px.
The models: a copy of the lead's 6-step `tiny_run` (RGB, 32 px) given a directions file, and an untrained
32 px RGBA DCGAN.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import shutil
import subprocess

import numpy as np
import pytest
from host_helpers import PLUGINS, host_env, keep_screenshot, require_app, start_server
from PIL import Image

from ganplug.cli.app import main
from tests.serve.serve_helpers import write_untrained_run

pytestmark = pytest.mark.host

_spec = importlib.util.spec_from_file_location("ganplug_blender_maps", PLUGINS / "blender/ganplug_blender/maps.py")
maps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(maps)

SIZE = 32
SEEDS = ("Seed.A", "Seed.B", "Seed.C")
SWEEP = ("Sweep.A", "Sweep.B", "Sweep.C")

COMMON = r'''
import array, json, os
import addon_utils, bpy

out_dir = os.environ["GANPLUG_OUT"]
addon_utils.enable("ganplug_blender", default_set=True)
s = bpy.context.scene.ganplug
s.server_url = os.environ["GANPLUG_URL"]

def select(*names):
    for o in bpy.data.objects:
        o.select_set(o.name in names)
    bpy.context.view_layer.objects.active = bpy.data.objects[names[0]] if names else None

def call(op):
    try:
        return list(op())
    except RuntimeError as e:  # an operator that reports an error raises in scripts
        return str(e)

def dump(img, name):
    buf = array.array("f", bytes(4 * len(img.pixels)))
    img.pixels.foreach_get(buf)
    buf.tofile(open(os.path.join(out_dir, name + ".f32"), "wb"))

def link(sock):
    return [sock.links[0].from_node.name, sock.links[0].from_socket.name] if sock.links else None

def describe(o):
    mat = o.active_material
    nodes = mat.node_tree.nodes
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    texs = [nodes[n] for n in ("ganplug texture", "ganplug normal", "ganplug roughness")]
    return {"material": mat.name, "blend": mat.blend_method, "shadow": mat.shadow_method,
            "images": [t.image.name for t in texs], "colorspaces": [t.image.colorspace_settings.name for t in texs],
            "packed": all(t.image.packed_file is not None for t in texs),
            "projection": sorted({t.projection for t in texs}),
            "vectors": sorted({tuple(link(t.inputs["Vector"])) for t in texs}),
            "coords": link(nodes["ganplug mapping"].inputs["Vector"]),
            "links": {k: link(bsdf.inputs[k]) for k in ("Base Color", "Roughness", "Normal", "Alpha")},
            "normal_map": [link(nodes["ganplug normal map"].inputs["Color"]), nodes["ganplug normal map"].space],
            "props": {k: o[k] for k in o.keys() if k.startswith("ganplug_")}}
'''

POPULATE = COMMON + r'''
report = {}
bpy.ops.object.select_all(action="DESELECT")
bpy.context.view_layer.objects.active = None
report["no_selection"] = call(bpy.ops.ganplug.populate)
report["no_active"] = call(bpy.ops.ganplug.generate)
for o in list(bpy.data.objects):
    if o.type == "MESH":
        bpy.data.objects.remove(o)
names = {"Seed": (1.1, "ABC"), "Sweep": (-1.1, "ABC"), "Alpha": (-3.3, "A")}
for row, (y, cols) in names.items():
    for i, c in enumerate(cols):
        bpy.ops.mesh.primitive_plane_add(size=1.6, location=((i - 1) * 2.0, y, 0))
        bpy.context.active_object.name = row + "." + c
bpy.ops.mesh.primitive_plane_add(size=1.6, location=(2.0, -3.3, 0))
bpy.context.active_object.name = "Bare"

s.model, s.size, s.truncation = "rgb32", int(os.environ["GANPLUG_SIZE"]), 1.0
s.seed, s.tileable, s.mapping, s.strength, s.invert, s.variation = 40, True, "UV", 2.0, False, "SEEDS"
select("Seed.A", "Seed.B", "Seed.C")
report["seeds"] = call(bpy.ops.ganplug.populate)
s.seed, s.tileable, s.mapping, s.strength, s.invert = 7, False, "BOX", 3.0, True
s.variation, s.direction, s.sweep = "DIRECTION", 0, 3.0
select("Sweep.A", "Sweep.B", "Sweep.C")
report["sweep"] = call(bpy.ops.ganplug.populate)
s.model, s.seed, s.tileable, s.mapping, s.strength, s.invert = "rgba32", 3, True, "UV", 1.0, False
select("Alpha.A")
report["alpha"] = call(bpy.ops.ganplug.generate)
s.variation = "DIRECTION"  # the RGBA model has no directions file: the server says how to make one
report["no_directions"] = call(bpy.ops.ganplug.populate)
report["objects"] = {o.name: describe(o) for o in bpy.data.objects if o.name.split(".")[0] in names}
for name in ("Seed.A", "Sweep.C"):
    o = bpy.data.objects[name]
    dump(o.active_material.node_tree.nodes["ganplug texture"].image, name + "-base")
    dump(o.active_material.node_tree.nodes["ganplug normal"].image, name + "-normal")
    dump(o.active_material.node_tree.nodes["ganplug roughness"].image, name + "-rough")
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(out_dir, "armour.blend"))
json.dump(report, open(os.path.join(out_dir, "populate.json"), "w"))
'''

REGENERATE = COMMON + r'''
report = {"reopened": {n: describe(bpy.data.objects[n]) for n in ("Seed.B", "Sweep.A")}}
select("Bare")
report["bare"] = call(bpy.ops.ganplug.regenerate)
bpy.ops.mesh.primitive_plane_add(size=1.6, location=(0, -6, 0))
bpy.context.active_object.name = "Blank"
bpy.context.active_object.hide_render = True
bare, seed_a = bpy.data.objects["Bare"], bpy.data.objects["Seed.A"]
for k in seed_a.keys():  # a recipe typed (here: copied) into another object's custom properties
    if k.startswith("ganplug_"):
        bare[k] = seed_a[k]
bpy.data.objects["Seed.B"]["ganplug_seed"] = 900
select("Seed.B", "Sweep.A", "Bare", "Blank")
report["regenerate"] = call(bpy.ops.ganplug.regenerate)
report["status"] = s.status
report["objects"] = {n: describe(bpy.data.objects[n]) for n in ("Seed.B", "Sweep.A", "Bare")}
dump(bpy.data.objects["Seed.B"].active_material.node_tree.nodes["ganplug texture"].image, "Seed.B-regen")
dump(bpy.data.objects["Sweep.A"].active_material.node_tree.nodes["ganplug texture"].image, "Sweep.A-regen")
s.server_url = "http://127.0.0.1:9"
report["down"] = call(bpy.ops.ganplug.regenerate)

scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", 8, False
scene.cycles.filter_width = 0.01  # each pixel sees its own texel: 20 px a unit, 32 px a plate
scene.render.film_transparent = True
scene.render.resolution_x = scene.render.resolution_y = 120
scene.render.resolution_percentage = 100
bpy.context.scene.world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0  # sun only
cam = bpy.data.objects["Camera"]
cam.data.type, cam.data.ortho_scale = "ORTHO", 6.0
cam.location, cam.rotation_euler = (0.0, -1.1, 10.0), (0.0, 0.0, 0.0)
light = bpy.data.objects["Light"]
light.data.type, light.data.energy = "SUN", 3.0
light.rotation_euler = (0.3, 0.2, 0.0)
scene.render.filepath = os.path.join(out_dir, "render.png")
bpy.ops.render.render(write_still=True)
json.dump(report, open(os.path.join(out_dir, "regenerate.json"), "w"))
'''


@pytest.fixture(scope="module")
def armour_server(tiny_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("armour-models")
    shutil.copytree(tiny_run, root / "rgb32")  # trained a little: textured enough for a visible relief
    write_untrained_run(root / "rgba32", size=SIZE, channels=4, base_channels=8, z_dim=16)
    assert main(["directions", str(root / "rgb32"), "--n", "3", "--samples", "128", "--preview-seeds", "0",
                 "--device", "cpu"]) == 0
    server = start_server([root], root / "serve.log")
    yield server
    server.stop()


def _blender(args: list[str], script: str, tmp_path, server, zip_path=None) -> dict:
    env = host_env(tmp_path / "home", GANPLUG_URL=server.url, GANPLUG_OUT=tmp_path, GANPLUG_SIZE=SIZE)
    path = tmp_path / "script.py"
    if zip_path is not None:  # install once into this HOME; the second run finds it there
        script = f"import bpy\nbpy.ops.preferences.addon_install(filepath={str(zip_path)!r}, overwrite=True)\n" + script
    path.write_text(script)
    proc = subprocess.run(["blender", "-b", *args, "--python-exit-code", "1", "--python", str(path)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"blender failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _served(server, seed: int, **opts) -> np.ndarray:
    body = {"model": "rgb32", "seeds": [seed], "size": SIZE, "truncation": 1.0, **opts}
    png = base64.b64decode(server.post("/v1/generate", body)["images"][0]["png"])
    return np.asarray(Image.open(io.BytesIO(png)))


def _pixels(tmp_path, name: str) -> np.ndarray:
    """A dumped Blender image, rows top-down like a PNG."""
    return np.fromfile(tmp_path / f"{name}.f32", dtype=np.float32).reshape(SIZE, SIZE, 4)[::-1]


def _maps_of(png: np.ndarray, **opts) -> tuple[np.ndarray, np.ndarray]:
    """maps.py on the served pixels (bottom-up, as Blender holds them), back to top-down arrays."""
    rgba = np.concatenate([png, np.full(png.shape[:2] + (1,), 255, np.uint8)], -1) if png.shape[2] == 3 else png
    flat = (rgba[::-1].astype(np.float64) / 255).ravel().tolist()
    normal, rough = maps.derive(flat, SIZE, SIZE, 4, **opts)
    return (np.asarray(normal).reshape(SIZE, SIZE, 4)[::-1], np.asarray(rough).reshape(SIZE, SIZE, 4)[::-1])


def test_populate_regenerate_and_render_armour(armour_server, plugin_zips, tmp_path):
    require_app("blender")
    _blender(["--factory-startup"], POPULATE, tmp_path, armour_server, plugin_zips["blender"])
    rep = json.loads((tmp_path / "populate.json").read_text())
    assert "select one or more mesh objects first" in rep["no_selection"]
    assert "select an object first" in rep["no_active"]
    assert rep["seeds"] == rep["sweep"] == rep["alpha"] == ["FINISHED"]
    assert "ganplug directions" in rep["no_directions"]
    objs = rep["objects"]
    assert sorted(objs) == ["Alpha.A", *SEEDS, *SWEEP]
    assert len({o["material"] for o in objs.values()}) == 7  # each object its own material
    assert len({o["images"][0] for o in objs.values()}) == 7  # ... and its own images
    for name, o in objs.items():
        mapping = "BOX" if name in SWEEP else "UV"
        assert o["links"]["Base Color"] == ["ganplug texture", "Color"], name
        assert o["links"]["Roughness"] == ["ganplug roughness", "Color"], name
        assert o["links"]["Normal"] == ["ganplug normal map", "Normal"], name
        assert o["normal_map"] == [["ganplug normal", "Color"], "TANGENT"], name
        assert o["colorspaces"] == ["sRGB", "Non-Color", "Non-Color"] and o["packed"], name
        assert o["vectors"] == [["ganplug mapping", "Vector"]], name  # all three textures, one mapping
        assert o["coords"] == ["ganplug coordinates", "Object" if mapping == "BOX" else "UV"], name
        assert o["projection"] == ["BOX" if mapping == "BOX" else "FLAT"], name
        assert o["props"]["ganplug_mapping"] == mapping, name
        alpha = name == "Alpha.A"
        assert o["links"]["Alpha"] == (["ganplug texture", "Alpha"] if alpha else None), name
        assert (o["blend"], o["shadow"]) == (("HASHED", "HASHED") if alpha else ("OPAQUE", "OPAQUE")), name
    props = {n: objs[n]["props"] for n in objs}
    assert [props[n]["ganplug_seed"] for n in SEEDS] == [40, 41, 42]
    assert {props[n]["ganplug_edits"] for n in SEEDS} == {""}
    assert [props[n]["ganplug_seed"] for n in SWEEP] == [7, 7, 7]
    assert [props[n]["ganplug_edits"] for n in SWEEP] == ["0:-3", "0:+0", "0:+3"]
    assert props["Seed.A"] == {"ganplug_model": "rgb32", "ganplug_seed": 40, "ganplug_size": SIZE,
                               "ganplug_tileable": True, "ganplug_truncation": 1.0, "ganplug_edits": "",
                               "ganplug_mapping": "UV", "ganplug_strength": 2.0, "ganplug_invert": False}
    assert (props["Sweep.C"]["ganplug_tileable"], props["Sweep.C"]["ganplug_strength"],
            props["Sweep.C"]["ganplug_invert"]) == (False, 3.0, True)
    assert props["Alpha.A"]["ganplug_model"] == "rgba32"

    # the maps in Blender are maps.py's for the served base colour (8-bit images: within one step)
    for name, seed, opts, derive in (("Seed.A", 40, {"tileable": True}, {"strength": 2.0, "wrap": True}),
                                     ("Sweep.C", 7, {"tileable": False, "edits": "0:+3"},
                                      {"strength": 3.0, "invert": True, "wrap": False})):
        served = _served(armour_server, seed, **opts)
        assert served.shape == (SIZE, SIZE, 3)
        np.testing.assert_array_equal(np.round(_pixels(tmp_path, name + "-base")[..., :3] * 255), served)
        normal, rough = _maps_of(served, **derive)
        got_normal = _pixels(tmp_path, name + "-normal")
        assert np.abs(got_normal - normal).max() <= 1 / 255 + 1e-6, name
        assert np.abs(normal[..., :2] - 0.5).max() > 0.02, name  # a relief (5 8-bit steps), not a flat map
        assert np.abs(_pixels(tmp_path, name + "-rough") - rough).max() <= 1 / 255 + 1e-6, name
    assert not np.array_equal(_served(armour_server, 7, tileable=False, edits="0:-3"),
                              _served(armour_server, 7, tileable=False, edits="0:+3"))  # the sweep varies

    # reopen the saved .blend: Regenerate reads each object's recipe from its custom properties
    _blender([str(tmp_path / "armour.blend")], REGENERATE, tmp_path, armour_server)
    rep = json.loads((tmp_path / "regenerate.json").read_text())
    assert rep["reopened"]["Seed.B"]["props"] == props["Seed.B"]
    assert "Bare has no ganplug texture to regenerate" in rep["bare"]
    assert rep["regenerate"] == ["FINISHED"]
    assert rep["status"].startswith("textured 3 object(s).") and "Blank has no ganplug texture" in rep["status"]
    after = rep["objects"]
    assert after["Seed.B"]["props"]["ganplug_seed"] == 900
    assert after["Seed.B"]["material"] == objs["Seed.B"]["material"]
    assert after["Seed.B"]["images"][0] == "ganplug rgb32 #900 tile"
    assert after["Sweep.A"]["props"] == props["Sweep.A"]
    assert after["Sweep.A"]["projection"] == ["BOX"] and after["Sweep.A"]["coords"][1] == "Object"
    assert after["Bare"]["props"] == props["Seed.A"] and after["Bare"]["images"][0] == "ganplug rgb32 #40 tile"
    assert after["Bare"]["links"] == objs["Seed.A"]["links"]
    np.testing.assert_array_equal(np.round(_pixels(tmp_path, "Seed.B-regen")[..., :3] * 255),
                                  _served(armour_server, 900, tileable=True))
    np.testing.assert_array_equal(np.round(_pixels(tmp_path, "Sweep.A-regen")[..., :3] * 255),
                                  _served(armour_server, 7, tileable=False, edits="0:-3"))
    assert "no ganplug server answers" in rep["down"]

    # the render: identical plates lit by one sun, so any difference between them is their own texture;
    # Bare wears Seed.A's recipe: how alike the same texture renders at another place (anti-aliasing)
    render = np.asarray(Image.open(tmp_path / "render.png").convert("RGBA")).astype(np.float64) / 255
    assert render.shape == (120, 120, 4)

    def crop(col: int, y: float) -> np.ndarray:  # the middle 16 x 16 px of a plate (20 px per unit)
        cx, cy = 60 + 40 * col, 60 - round(20 * (y + 1.1))
        return render[cy - 8:cy + 8, cx - 8:cx + 8]

    plates = {**{n: crop(i - 1, 1.1) for i, n in enumerate(SEEDS)},
              **{n: crop(i - 1, -1.1) for i, n in enumerate(SWEEP)}}
    for n, c in plates.items():
        assert c[..., 3].min() > 0.99 and c[..., :3].std() > 0.01, n  # opaque and textured

    def diff(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a[..., :3] - b[..., :3]).mean())

    same = diff(plates["Seed.A"], crop(1, -3.3))
    names = list(plates)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert diff(plates[a], plates[b]) > max(0.005, 3 * same), (a, b, diff(plates[a], plates[b]), same)
    texture = _served(armour_server, 3, model="rgba32", tileable=True)
    assert texture.shape == (SIZE, SIZE, 4)  # the served PNG has an alpha channel
    want = texture[8:24, 8:24, 3].mean() / 255  # the texels under the crop (UV: plate = texture, 1:1)
    alpha = crop(-1, -3.3)[..., 3]
    assert 0.05 < want < 0.95 and abs(alpha.mean() - want) < 0.05, (alpha.mean(), want)  # transparency renders
    # for the docs (GANPLUG_DOCS_SCREENSHOTS=1): the render, pixels tripled so the 120 px image can be seen
    shot = tmp_path / "armour.png"
    Image.open(tmp_path / "render.png").resize((360, 360), Image.NEAREST).save(shot, optimize=True)
    keep_screenshot(shot, "blender-armour.png")
