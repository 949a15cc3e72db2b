"""Krita glue: results in, pixels out. Thin on purpose; the decisions live in state.py."""

from __future__ import annotations

import base64

from krita import Krita
from PyQt5.QtCore import QBuffer, QByteArray, QIODevice
from PyQt5.QtGui import QImage

from . import ganplug_client as client
from . import state


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


def insert_result(doc, result: dict, rect, above=None, base_seed=None) -> list:
    """One new paint layer per image, named with model and seed, placed at `rect`; returns the nodes."""
    x, y, w, h = rect
    root = doc.rootNode()
    nodes = []
    for image in result["images"]:
        tag = state.tag_of(result, image, base_seed)
        node = doc.createNode(state.layer_name(tag), "paintlayer")
        root.addChildNode(node, above)
        if node.colorModel() != "RGBA" or node.colorDepth() != "U8":
            node.setColorSpace("RGBA", "U8", "")
        node.setPixelData(QByteArray(bgra_of_png(client.image_bytes(image), w, h)), x, y, w, h)
        above = node
        nodes.append(node)
    if nodes:
        doc.setActiveNode(nodes[-1])
    doc.refreshProjection()
    return nodes


def active_tag(doc, node=None):
    """The given node (else the active one) and its tag, read from its name."""
    if node is None and doc is not None:
        node = doc.activeNode()
    return (node, state.parse_layer_name(node.name())) if node is not None else (None, None)


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
    node, tag = active_tag(doc, node)
    if tag is None:
        raise client.ServerError("select a layer made by ganplug first: Variations reads its seed from its name.")
    rect = target_rect(doc)
    req = state.variations_request(tag, settings, rect[2], rect[3])
    result = api.run("variations", req, on_progress=on_progress, should_cancel=should_cancel)
    return insert_result(doc, result, rect, above=node)


def regenerate(doc, api: client.Client, node=None, on_progress=None, should_cancel=None) -> list:
    node, tag = active_tag(doc, node)
    if tag is None:
        raise client.ServerError("select a layer made by ganplug first: Regenerate reads its seed from its name.")
    rect = target_rect(doc)
    result = api.run("generate", state.regenerate_request(tag, rect[2], rect[3]),
                     on_progress=on_progress, should_cancel=should_cancel)
    return insert_result(doc, result, rect, above=node)


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
