"""Krita glue: results in, pixels out, provenance in the document. Thin on purpose: the decisions live in
state.py, provenance.py and steer.py."""

from __future__ import annotations

import base64
from dataclasses import replace

from krita import Krita
from PyQt5.QtCore import QBuffer, QByteArray, QIODevice
from PyQt5.QtGui import QImage

from . import ganplug_client as client
from . import provenance, state


def active_or_new_document(width: int = 512, height: int = 512):
    app = Krita.instance()
    doc = app.activeDocument()
    if doc is None:
        doc = app.createDocument(width, height, "ganplug", "RGBA", "U8", "", 300.0)
        window = app.activeWindow()
        if window is not None:
            window.addView(doc)
    return doc


def target_rect(doc):
    sel = doc.selection()
    bounds = (sel.x(), sel.y(), sel.width(), sel.height()) if sel is not None else None
    return state.placement((doc.width(), doc.height()), bounds)


def bgra_of_png(png: bytes, width: int, height: int) -> bytes:
    """PNG bytes -> Krita's RGBA/U8 pixel layout (B, G, R, A in memory), scaled to width x height."""
    img = QImage.fromData(QByteArray(png), "PNG")
    if img.isNull():
        raise client.ServerError("the server sent an image Krita cannot read.")
    if (img.width(), img.height()) != (width, height):
        img = img.scaled(width, height)
    img = img.convertToFormat(QImage.Format_ARGB32)
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    return bytes(ptr)


def insert_result(doc, result: dict, rect, above=None, base_seed=None, recipes=None, pick=None) -> list:
    """One new paint layer per image, named and recorded (sidecar) with what made it, placed at `rect`;
    returns the nodes. `recipes` overrides the recorded provenance per image (what the plugin asked for,
    e.g. exact edits); `pick` keeps only that image index."""
    x, y, w, h = rect
    root = doc.rootNode()
    images = result["images"] if pick is None else [result["images"][pick]]
    records = read_records(doc)
    nodes = []
    for i, image in enumerate(images):
        prov = recipes[i] if recipes is not None else provenance.of_result(result, image, w, h, base_seed)
        prov = replace(prov, width=w, height=h)
        node = doc.createNode(prov.layer_name(), "paintlayer")
        root.addChildNode(node, above)
        set_pixels(node, bgra_of_png(client.image_bytes(image), w, h), rect)
        records[uid_of(node)] = prov
        above = node
        nodes.append(node)
    if nodes:
        write_records(doc, records)
        doc.setActiveNode(nodes[-1])
    doc.refreshProjection()
    return nodes


def set_pixels(node, bgra: bytes, rect) -> None:
    """Krita's RGBA/U8 layout (B, G, R, A), straight alpha: a transparent model's alpha is kept as it is."""
    x, y, w, h = rect
    if node.colorModel() != "RGBA" or node.colorDepth() != "U8":
        node.setColorSpace("RGBA", "U8", "")
    node.setPixelData(QByteArray(bgra), x, y, w, h)


# ---------------------------------------------------------------------- provenance (the sidecar)
def uid_of(node) -> str:
    return node.uniqueId().toString()


def all_nodes(doc) -> list:
    out, todo = [], list(doc.rootNode().childNodes())
    while todo:
        node = todo.pop()
        out.append(node)
        todo.extend(node.childNodes())
    return out


def read_records(doc) -> dict:
    """uniqueId -> Provenance from the document's ganplug annotation (saved inside the .kra)."""
    if provenance.ANNOTATION not in doc.annotationTypes():
        return {}
    return provenance.parse_sidecar(bytes(doc.annotation(provenance.ANNOTATION)))


def write_records(doc, records: dict) -> None:
    keep = {uid_of(n) for n in all_nodes(doc)}
    doc.setAnnotation(provenance.ANNOTATION, provenance.ANNOTATION_DESCRIPTION,
                      QByteArray(provenance.dump_sidecar(records, keep)))


def record(doc, node, prov) -> None:
    records = read_records(doc)
    records[uid_of(node)] = prov
    write_records(doc, records)


def provenance_of(doc, node):
    """What made `node`: its sidecar record, else its name, else None."""
    return provenance.resolve(uid_of(node), node.name(), read_records(doc))


def active_tag(doc, node=None):
    """The given node (else the active one) and its tag, read from its name."""
    if node is None and doc is not None:
        node = doc.activeNode()
    return (node, state.parse_layer_name(node.name())) if node is not None else (None, None)


def active_provenance(doc, node=None):
    """The given node (else the active one) and its Provenance (None for a layer ganplug did not make)."""
    if node is None and doc is not None:
        node = doc.activeNode()
    return (node, provenance_of(doc, node)) if node is not None else (None, None)


def layer_png_b64(doc, node, rect) -> str:
    """The node's pixels inside rect as a base64 PNG (what Translate uploads)."""
    x, y, w, h = rect
    data = bytes(node.pixelData(x, y, w, h))
    img = QImage(data, w, h, 4 * w, QImage.Format_ARGB32).copy()
    buf = QBuffer()
    buf.open(QIODevice.WriteOnly)
    img.save(buf, "PNG")
    return base64.b64encode(bytes(buf.data())).decode("ascii")


# ---------------------------------------------------------------------- blocking actions (scripts, tests)
def generate(doc, api: client.Client, settings: state.Settings, on_progress=None, should_cancel=None) -> list:
    rect = target_rect(doc)
    req = state.generate_request(settings, rect[2], rect[3])
    result = api.run("generate", req, on_progress=on_progress, should_cancel=should_cancel)
    return insert_result(doc, result, rect, above=doc.activeNode())


def variations(doc, api: client.Client, settings: state.Settings, node=None, on_progress=None,
               should_cancel=None) -> list:
    """Images near the layer: its seed or latent, moved by its edits (provenance.variations_plan)."""
    node, prov = active_provenance(doc, node)
    if prov is None:
        raise client.ServerError("select a layer made by ganplug first: Variations reads its seed from the document.")
    rect = target_rect(doc)
    s = settings.clamped()
    try:
        req = provenance.variations_plan(prov, s.count, s.strength, rect[2], rect[3])
    except ValueError as e:
        raise client.ServerError(str(e)) from None
    result = api.run("variations", req, on_progress=on_progress, should_cancel=should_cancel)
    return insert_result(doc, result, rect, above=node)


# ---------------------------------------------------------------------- Steer
PREVIEW_NAME = "ganplug steer preview"


def make_preview(doc, source):
    """An empty layer right above `source` that the Steer preview paints into."""
    node = doc.createNode(PREVIEW_NAME, "paintlayer")
    (source.parentNode() or doc.rootNode()).addChildNode(node, source)
    return node


def keep_preview(doc, node, prov) -> None:
    """The preview becomes a generated layer like any other: named and recorded with its edits."""
    node.setName(prov.layer_name())
    record(doc, node, prov)
    doc.setActiveNode(node)


def show_preview(doc, node, bgra: bytes, rect) -> None:
    set_pixels(node, bgra, rect)
    doc.refreshProjection()


def regenerate(doc, api: client.Client, node=None, on_progress=None, should_cancel=None) -> list:
    """The layer made again from what made it (sidecar, else name), at the selection or canvas."""
    node, prov = active_provenance(doc, node)
    if prov is None:
        raise client.ServerError("select a layer made by ganplug first: Regenerate reads what made it from the "
                                 "document.")
    rect = target_rect(doc)
    try:
        kind, req, pick = provenance.regenerate_plan(prov, rect[2], rect[3])
    except ValueError as e:
        raise client.ServerError(str(e)) from None
    result = api.run(kind, req, on_progress=on_progress, should_cancel=should_cancel)
    return insert_result(doc, result, rect, above=node, recipes=[prov], pick=pick)


def morph(doc, api: client.Client, settings: state.Settings, seed_b: int, on_progress=None,
          should_cancel=None) -> list:
    rect = target_rect(doc)
    req = state.morph_request(settings, settings.seed, seed_b, rect[2], rect[3])
    result = api.run("interpolate", req, on_progress=on_progress, should_cancel=should_cancel)
    return insert_result(doc, result, rect, above=doc.activeNode(), base_seed=settings.seed)


def translate(doc, api: client.Client, settings: state.Settings, node=None, on_progress=None,
              should_cancel=None) -> list:
    node = node or doc.activeNode()
    if node is None:
        raise client.ServerError("select the layer to translate first.")
    rect = target_rect(doc)
    req = state.translate_request(settings, layer_png_b64(doc, node, rect), rect[2], rect[3])
    result = api.run("translate", req, on_progress=on_progress, should_cancel=should_cancel)
    return insert_result(doc, result, rect, above=node)


# ---------------------------------------------------------------------- Find in model
def projection_refusal(models: list, name: str) -> str | None:
    """Why `name` cannot be searched (None when it can): the server projects into style-based models only."""
    if not state.model_supports(models, name, "project"):
        return (f"model {name!r} cannot find images in its latent space; projection needs a style-based "
                "(stylegan) model.")
    return None


def find_in_model(doc, api: client.Client, settings: state.Settings, node=None, on_progress=None,
                  should_cancel=None) -> list:
    """Project the node's pixels (inside the selection, if any) into the model: the found image as a layer."""
    node = node or doc.activeNode()
    if node is None:
        raise client.ServerError("select the layer (a sketch or a photo) to find in the model first.")
    models = api.models()
    name = settings.model or (models[0]["name"] if models else "")
    refusal = projection_refusal(models, name)
    if refusal:
        raise client.ServerError(refusal)
    rect = target_rect(doc)
    req = state.project_request(replace(settings, model=name), layer_png_b64(doc, node, rect), rect[2], rect[3])
    result = api.run("project", req, on_progress=on_progress, should_cancel=should_cancel)
    return insert_result(doc, result, rect, above=node, base_seed=settings.seed)
