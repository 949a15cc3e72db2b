"""Blender glue: a PNG from the server becomes packed images (base colour, normal, roughness) wired into a
material's Principled BSDF.

The node graph this makes (nodes found again by name, so a regeneration reuses them and keeps your tweaks):

    Texture Coordinate (UV or Object) -> Mapping -> ganplug texture   --Color--> Base Color
                                              |                      --Alpha--> Alpha   (RGBA models only)
                                              -> ganplug roughness --Color--> Roughness
                                              -> ganplug normal    --Color--> Normal Map --Normal--> Normal
"""

from __future__ import annotations

import array
import os
import tempfile

import bpy

TEX_NODE = "ganplug texture"
NORMAL_TEX_NODE = "ganplug normal"
ROUGH_TEX_NODE = "ganplug roughness"
NORMAL_MAP_NODE = "ganplug normal map"
COORD_NODE = "ganplug coordinates"
MAPPING_NODE = "ganplug mapping"
ALPHA_FLAG = "ganplug_alpha"  # on the material: its blend mode was set by ganplug for an RGBA texture


def image_from_png(png: bytes, name: str, seed: int, model: str, tileable: bool):
    """A new image datablock holding the PNG, packed into the .blend so nothing depends on a temp file."""
    from .state import seed_prop

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
    img["ganplug_seed"] = seed_prop(seed)
    img["ganplug_model"] = model
    img["ganplug_tileable"] = bool(tileable)
    return img


def read_pixels(img) -> array.array:
    """The image's pixels, flat floats bottom-up (`img.channels` per pixel)."""
    buf = array.array("f", bytes(4 * len(img.pixels)))
    img.pixels.foreach_get(buf)
    return buf


def image_from_pixels(name: str, width: int, height: int, pixels) -> object:
    """A packed 8-bit non-colour image (data, not colour: normal and roughness maps) from flat RGBA floats."""
    img = bpy.data.images.new(name, width, height, alpha=False, float_buffer=False)
    img.colorspace_settings.name = "Non-Color"
    img.pixels.foreach_set(array.array("f", pixels))
    img.update()
    img.pack()
    img.filepath_raw = "//" + bpy.path.clean_name(name) + ".png"
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


def _bsdf(mat):
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = nodes.new("ShaderNodeBsdfPrincipled")
        out = next((n for n in nodes if n.type == "OUTPUT_MATERIAL"), None) or nodes.new("ShaderNodeOutputMaterial")
        links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    return bsdf


def _node(nodes, name: str, kind: str, location):
    node = nodes.get(name)
    if node is None:
        node = nodes.new(kind)
        node.name = node.label = name
        node.location = location
    return node


def _set_image(tex, img):
    """Point an Image Texture node at `img`, dropping the image it showed if nothing else uses it."""
    old = tex.image
    tex.image = img
    if old is not None and old != img and old.users == 0:
        bpy.data.images.remove(old)


def wire_base_color(mat, img):
    """Image Texture -> Principled BSDF Base Color, reusing the node from a previous run."""
    bsdf = _bsdf(mat)
    tex = _node(mat.node_tree.nodes, TEX_NODE, "ShaderNodeTexImage", (bsdf.location.x - 320, bsdf.location.y))
    _set_image(tex, img)
    tex.extension = "REPEAT"
    mat.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return tex


def wire_alpha(mat, tex, alpha: bool):
    """RGBA: the texture's Alpha drives the BSDF's and the material blends (Eevee; Cycles needs only the link).
    RGB: no alpha link and, where ganplug had made it transparent, opaque again."""
    bsdf = _bsdf(mat)
    links = mat.node_tree.links
    if alpha:
        links.new(tex.outputs["Alpha"], bsdf.inputs["Alpha"])
        mat.blend_method = "HASHED"
        mat.shadow_method = "HASHED"
        mat[ALPHA_FLAG] = True
        return
    for link in list(bsdf.inputs["Alpha"].links):
        if link.from_node == tex:
            links.remove(link)
    if mat.get(ALPHA_FLAG):
        mat.blend_method = "OPAQUE"
        mat.shadow_method = "OPAQUE"
        del mat[ALPHA_FLAG]


def wire_maps(mat, base_img, normal_img, rough_img, mapping: str = "UV", alpha: bool = False) -> dict:
    """The whole graph of the module docstring; `mapping` UV (the object's UV map) or BOX (object-space
    box projection, for meshes without good UVs). Returns the ganplug nodes by name."""
    bsdf = _bsdf(mat)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    x, y = bsdf.location.x, bsdf.location.y
    tex = wire_base_color(mat, base_img)
    rough = _node(nodes, ROUGH_TEX_NODE, "ShaderNodeTexImage", (x - 320, y - 300))
    normal = _node(nodes, NORMAL_TEX_NODE, "ShaderNodeTexImage", (x - 560, y - 600))
    nmap = _node(nodes, NORMAL_MAP_NODE, "ShaderNodeNormalMap", (x - 240, y - 600))
    coords = _node(nodes, COORD_NODE, "ShaderNodeTexCoord", (x - 1060, y - 200))
    place = _node(nodes, MAPPING_NODE, "ShaderNodeMapping", (x - 860, y - 200))
    _set_image(rough, rough_img)
    _set_image(normal, normal_img)
    nmap.space = "TANGENT"
    links.new(rough.outputs["Color"], bsdf.inputs["Roughness"])
    links.new(normal.outputs["Color"], nmap.inputs["Color"])
    links.new(nmap.outputs["Normal"], bsdf.inputs["Normal"])
    links.new(coords.outputs["Object" if mapping == "BOX" else "UV"], place.inputs["Vector"])
    for t in (tex, rough, normal):
        t.projection = "BOX" if mapping == "BOX" else "FLAT"
        t.projection_blend = 0.25 if mapping == "BOX" else 0.0
        t.extension = "REPEAT"
        t.interpolation = "Linear"
        links.new(place.outputs["Vector"], t.inputs["Vector"])
    wire_alpha(mat, tex, alpha)
    return {n.name: n for n in (tex, rough, normal, nmap, coords, place)}
