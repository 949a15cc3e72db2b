"""Blender glue: a PNG from the server becomes a packed image wired into a material's Base Color."""

from __future__ import annotations

import os
import tempfile

import bpy

TEX_NODE = "ganplug texture"


def image_from_png(png: bytes, name: str, seed: int, model: str, tileable: bool):
    """A new image datablock holding the PNG, packed into the .blend so nothing depends on a temp file."""
    fd, path = tempfile.mkstemp(suffix=".png", prefix="ganplug-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(png)
        img = bpy.data.images.load(path, check_existing=False)
        img.pack()
    finally:
        os.unlink(path)
    img.name = name
    img.filepath_raw = "//" + bpy.path.clean_name(name) + ".png"
    img["ganplug_seed"] = int(seed)
    img["ganplug_model"] = model
    img["ganplug_tileable"] = bool(tileable)
    return img


def material_for(obj, own: bool, name: str):
    """The object's active material (a private copy when `own` and others use it), created if missing."""
    mat = obj.active_material
    if mat is None:
        mat = bpy.data.materials.new(name)
        if obj.data is not None and hasattr(obj.data, "materials"):
            if len(obj.data.materials) == 0:
                obj.data.materials.append(mat)
            else:
                obj.material_slots[obj.active_material_index].material = mat
        else:
            raise ValueError(f"{obj.name} cannot hold a material (it is a {obj.type}).")
    elif own and mat.users > 1:
        mat = mat.copy()
        mat.name = name
        obj.active_material = mat
    return mat


def wire_base_color(mat, img):
    """Image Texture -> Principled BSDF Base Color, reusing the node from a previous run."""
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = nodes.new("ShaderNodeBsdfPrincipled")
        out = next((n for n in nodes if n.type == "OUTPUT_MATERIAL"), None) or nodes.new("ShaderNodeOutputMaterial")
        links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    tex = nodes.get(TEX_NODE)
    if tex is None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.name = tex.label = TEX_NODE
        tex.location = (bsdf.location.x - 320, bsdf.location.y)
    tex.image = img
    tex.extension = "REPEAT"
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return tex
