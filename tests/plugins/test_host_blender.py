"""The Blender add-on inside real Blender (background mode) against a real `ganplug serve`."""

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
import addon_utils, bpy

out_dir = os.environ["GANPLUG_OUT"]
bpy.ops.preferences.addon_install(filepath=os.environ["GANPLUG_ZIP"], overwrite=True)
addon_utils.enable("ganplug_blender", default_set=True)
s = bpy.context.scene.ganplug
s.server_url, s.seed, s.size, s.tileable, s.truncation = os.environ["GANPLUG_URL"], 77, 48, True, 1.0
cube = bpy.data.objects["Cube"]
bpy.context.view_layer.objects.active = cube
report = {"generate": list(bpy.ops.ganplug.generate())}
bsdf = next(n for n in cube.active_material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
links = bsdf.inputs["Base Color"].links
img = links[0].from_node.image
report["cube"] = {"linked_from": links[0].from_node.type, "image": img.name, "size": list(img.size),
                  "packed": img.packed_file is not None, "seed": img["ganplug_seed"]}
with open(os.path.join(out_dir, "cube.f32"), "wb") as f:
    import array
    array.array("f", img.pixels[:]).tofile(f)

bpy.ops.mesh.primitive_uv_sphere_add(location=(2.5, 0, 0))
bpy.ops.mesh.primitive_cone_add(location=(-2.5, 0, 0))
for o in bpy.data.objects:
    o.select_set(o.type == "MESH")
s.seed = 500
report["populate"] = list(bpy.ops.ganplug.populate())
report["objects"] = {}
for o in bpy.data.objects:
    if o.type == "MESH":
        node = o.active_material.node_tree.nodes["ganplug texture"]
        b = next(n for n in o.active_material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        report["objects"][o.name] = {"material": o.active_material.name, "seed": node.image["ganplug_seed"],
                                     "wired": b.inputs["Base Color"].links[0].from_node == node}
s.server_url = "http://127.0.0.1:9"
try:
    bpy.ops.ganplug.generate()
except RuntimeError as e:  # an operator that reports an error raises in scripts
    report["down"] = str(e)
report["down_status"] = s.status

# A small Cycles render of the textured set, for the docs.
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 16
scene.cycles.use_denoising = False
scene.cycles.device = "CPU"
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 480, 270, 100
cam = bpy.data.objects["Camera"]
cam.location = (0.0, -9.0, 4.0)
cam.rotation_euler = (1.15, 0.0, 0.0)
scene.render.filepath = os.path.join(out_dir, "render.png")
bpy.ops.render.render(write_still=True)
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(out_dir, "textured.blend"))
json.dump(report, open(os.path.join(out_dir, "report.json"), "w"))
'''


def test_blender_addon_textures_cube_and_populates(live_server, plugin_zips, tmp_path):
    require_app("blender")
    script = tmp_path / "blender_ganplug_check.py"
    script.write_text(SCRIPT)
    env = host_env(tmp_path / "home", GANPLUG_URL=live_server.url, GANPLUG_OUT=tmp_path,
                   GANPLUG_ZIP=plugin_zips["blender"])
    proc = subprocess.run(["blender", "-b", "--factory-startup", "--python-exit-code", "1", "--python", str(script)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    report_path = tmp_path / "report.json"
    assert report_path.exists(), f"blender failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(report_path.read_text())

    assert report["generate"] == ["FINISHED"]
    cube = report["cube"]
    assert cube == {"linked_from": "TEX_IMAGE", "image": "ganplug tiny #77 tile", "size": [48, 48], "packed": True,
                    "seed": 77}
    # Blender stores rows bottom-up as floats in [0, 1]; the server's PNG for the same request matches.
    got = np.fromfile(tmp_path / "cube.f32", dtype=np.float32).reshape(48, 48, 4)[::-1]
    served = live_server.post("/v1/generate", {"seeds": [77], "size": 48, "tileable": True, "truncation": 1.0})
    ref = np.asarray(Image.open(io.BytesIO(base64.b64decode(served["images"][0]["png"]))).convert("RGBA"))
    assert ref[..., :3].std() > 5
    np.testing.assert_array_equal(np.round(got * 255).astype(np.uint8), ref)

    assert report["populate"] == ["FINISHED"]
    objs = report["objects"]
    assert sorted(objs) == ["Cone", "Cube", "Sphere"]
    assert [objs[n]["seed"] for n in ("Cone", "Cube", "Sphere")] == [500, 501, 502]  # consecutive, by name
    assert all(o["wired"] for o in objs.values())
    assert len({o["material"] for o in objs.values()}) == 3  # each object its own material

    assert "no ganplug server answers" in report["down"]
    assert report["down_status"].startswith("no ganplug server answers")
    render = np.asarray(Image.open(tmp_path / "render.png").convert("RGB"))
    assert render.shape == (270, 480, 3) and render.std() > 5
    keep_screenshot(tmp_path / "render.png", "blender-populate.png")
