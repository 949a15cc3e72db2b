"""What made a generated layer, kept in the document so a layer made yesterday can be regenerated today.

Two records, both saved inside the .kra:

- the layer name (`ganplug tiny #1234 v2 t0.70`, see state.layer_name): short, visible, survives copy and
  paste into another document, but holds no edits;
- the sidecar: one document annotation (`Document.setAnnotation(ANNOTATION, ...)`, saved in the .kra by
  Krita 5) holding JSON `{"format": FORMAT, "version": VERSION, "layers": {uniqueId: record}}`, a record
  being `Provenance.to_dict()`. Layer uniqueIds survive saving and reopening.

A layer is read from the sidecar first; a layer the sidecar does not know (a duplicate gets a new
uniqueId, a layer pasted from another document) falls back to its name. Everything here is pure Python:
no Krita, so the unit tests run it directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from . import state

ANNOTATION = "ganplug"  # the annotation type (key) in the document
ANNOTATION_DESCRIPTION = "ganplug: what made each generated layer (model, seed, truncation, edits)"
FORMAT = "ganplug-krita-provenance"
VERSION = 1
KINDS = ("generate", "variation", "frame", "project")
EDIT_MAX = 100.0  # standard deviations (the server's EDIT_AMOUNT_MAX)


@dataclass(frozen=True)
class Provenance:
    """One layer's recipe. `kind` says which fields matter:

    generate  : model, seed, truncation, tileable, edits, noise
    variation : the same plus variation (1-based index) and strength (variation k of seed is a pure function
                of seed, k and strength on the server, so it regenerates exactly)
    frame     : a morph frame: seed (first key seed), frame, seeds, frames (regenerates the base seed)
    project   : found by projection ("Find in model"): steps, seed of the search and `latent`, the w the
                server found (its `params.latent`, {space, shape, dtype, data}). Regenerate, Steer and Variations
                send it back as `latent`; the plugin projects with `optimize_noise: false`, so the latent alone
                regenerates the found image exactly.

    `latent` is also kept by the layers made from a found one (its variations, its steered copies): they vary
    or move that latent, not a seed's.
    """

    model: str
    seed: int = 0
    kind: str = "generate"
    truncation: float = 1.0
    tileable: bool = False
    edits: tuple[tuple[int, float], ...] = ()
    noise: str | None = None
    variation: int | None = None
    strength: float | None = None
    frame: int | None = None
    latent: str | dict | None = None  # opaque: the server's `params.latent`, sent back as is
    steps: int | None = None
    width: int | None = None
    height: int | None = None
    extra: dict = field(default_factory=dict, compare=False)  # fields of a newer plugin, kept as they were

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        out: dict = {"kind": self.kind, "model": self.model, "seed": self.seed, "truncation": self.truncation,
                     "tileable": self.tileable}
        if self.edits:
            out["edits"] = [{"direction": d, "amount": a} for d, a in self.edits]
        for name in ("noise", "variation", "strength", "frame", "latent", "steps", "width", "height"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, data) -> Provenance | None:
        """A record written by this or another plugin version; None when it cannot name a model."""
        if not isinstance(data, dict):
            return None
        model = data.get("model")
        if not isinstance(model, str) or not model:
            return None
        kind = data.get("kind") if data.get("kind") in KINDS else "generate"
        known = {"kind", "model", "seed", "truncation", "tileable", "edits", "noise", "variation", "strength",
                 "frame", "latent", "steps", "width", "height"}
        try:
            return cls(
                model=model, kind=kind, seed=_int(data.get("seed"), 0) % (state.SEED_MAX + 1),
                truncation=min(max(float(data.get("truncation", 1.0)), 0.0), 2.0),
                tileable=bool(data.get("tileable", False)), edits=edits_of(data.get("edits")),
                noise=data.get("noise") if data.get("noise") in ("const", "random", "none") else None,
                variation=_int(data.get("variation"), None), strength=_float(data.get("strength")),
                frame=_int(data.get("frame"), None),
                latent=data.get("latent") if isinstance(data.get("latent"), (str, dict)) else None,
                steps=_int(data.get("steps"), None), width=_int(data.get("width"), None),
                height=_int(data.get("height"), None),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (TypeError, ValueError):
            return None

    # ------------------------------------------------------------------ names
    def tag(self) -> state.LayerTag:
        return state.LayerTag(model=self.model, seed=self.seed, truncation=self.truncation, tileable=self.tileable,
                              variation=self.variation, frame=self.frame)

    def layer_name(self) -> str:
        """The visible name: the tag, plus `found` for a projection (or a layer made from its latent) and
        `e0:+1.5,...` when it carries edits."""
        name = state.layer_name(self.tag())
        if self.kind == "project" or self.latent is not None:
            name += " found"
        if self.edits:
            name += " e" + format_edits(self.edits)
        return name

    @classmethod
    def from_tag(cls, tag: state.LayerTag) -> Provenance:
        kind = "variation" if tag.variation is not None else "frame" if tag.frame is not None else "generate"
        return cls(model=tag.model, seed=tag.seed, kind=kind, truncation=tag.truncation, tileable=tag.tileable,
                   variation=tag.variation, frame=tag.frame)

    def with_edits(self, edits) -> Provenance:
        """The recipe of this layer steered to `edits` (a variation or frame steers its base seed)."""
        kind = self.kind if self.kind == "project" else "generate"
        return replace(self, kind=kind, edits=edits_of(edits), variation=None, strength=None, frame=None)


def _int(value, default):
    if value is None or isinstance(value, bool):
        return default
    return int(value)


def _float(value):
    return None if value is None or isinstance(value, bool) else float(value)


def edits_of(value) -> tuple[tuple[int, float], ...]:
    """Edits as a sorted tuple of (direction, amount), zero amounts dropped; from a list of dicts or pairs."""
    out: dict[int, float] = {}
    for item in value or ():
        if isinstance(item, dict):
            d, a = item.get("direction"), item.get("amount")
        else:
            d, a = item
        d, a = int(d), float(a)
        if d < 0 or not -EDIT_MAX <= a <= EDIT_MAX:
            raise ValueError(f"edit {d}:{a} is out of range")
        out[d] = round(out.get(d, 0.0) + a, 4)
    return tuple((d, a) for d, a in sorted(out.items()) if a != 0.0)


def format_edits(edits) -> str:
    return ",".join(f"{d}:{a:+g}" for d, a in edits)


# ---------------------------------------------------------------------- the sidecar
def parse_sidecar(raw: bytes | str | None) -> dict[str, Provenance]:
    """uniqueId -> Provenance from the annotation's bytes; anything unreadable reads as empty (never raises)."""
    if not raw:
        return {}
    try:
        data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("layers"), dict):
        return {}
    out = {}
    for uid, record in data["layers"].items():
        prov = Provenance.from_dict(record)
        if prov is not None:
            out[str(uid)] = prov
    return out


def dump_sidecar(records: dict[str, Provenance], keep: set[str] | None = None) -> bytes:
    """The annotation's bytes; with `keep`, records of layers no longer in the document are dropped."""
    layers = {uid: p.to_dict() for uid, p in sorted(records.items()) if keep is None or uid in keep}
    return json.dumps({"format": FORMAT, "version": VERSION, "layers": layers}, sort_keys=True).encode("utf-8")


def resolve(uid: str, name: str, records: dict[str, Provenance]) -> Provenance | None:
    """A layer's recipe: the sidecar's record, else what its name says, else None (not a ganplug layer)."""
    if uid in records:
        return records[uid]
    tag = state.parse_layer_name(_base_name(name))
    if tag is None:
        return None
    prov = Provenance.from_tag(tag)
    words = (name or "").split()
    if "found" in words[-2:]:
        prov = replace(prov, kind="project")  # a latent is never in a name: Regenerate and Steer say so
    if words and words[-1].startswith("e") and ":" in words[-1]:
        try:
            prov = replace(prov, edits=edits_of(_parse_edit_string(words[-1][1:])))
        except (TypeError, ValueError):
            pass
    return prov


def _base_name(name: str) -> str:
    """The tag part of a name this module wrote (edits and `found` are appended after it)."""
    parts = (name or "").strip().split(" ")
    while parts and (parts[-1] == "found" or (parts[-1].startswith("e") and ":" in parts[-1])):
        parts.pop()
    return " ".join(parts)


# ---------------------------------------------------------------------- requests
def regenerate_plan(prov: Provenance, width: int, height: int) -> tuple[str, dict, int]:
    """(kind, request, index of the image to keep) that reproduce the layer at width x height."""
    out = {"model": prov.model, "truncation": prov.truncation, "tileable": prov.tileable,
           "width": width, "height": height}
    if prov.noise is not None:
        out["noise"] = prov.noise
    if prov.kind == "project" and prov.latent is None:
        raise ValueError(NO_LATENT)
    if prov.latent is not None:
        out["latent"] = prov.latent
    if prov.edits:
        out["edits"] = [{"direction": d, "amount": a} for d, a in prov.edits]
    if prov.kind == "variation" and prov.variation and prov.strength is not None:
        # variation k is a pure function of (seed or latent, k, strength, edits): ask for the first k, keep the last
        out.update(seed=prov.seed, count=prov.variation, strength=prov.strength)
        return "variations", out, prov.variation - 1
    if prov.latent is None:
        out["seeds"] = [prov.seed]
    return "generate", out, 0


def variations_plan(prov: Provenance, count: int, strength: float, width: int, height: int) -> dict:
    """The /v1/variations request for images near a layer: its seed (or the latent it was found or made from),
    moved by its edits as the layer is, so variations of a steered layer are steered variations. A variation
    or a morph frame is varied around its base seed."""
    if prov.kind == "project" and prov.latent is None:
        raise ValueError(NO_LATENT)
    out = {"model": prov.model, "seed": prov.seed, "count": min(max(int(count), 1), 64),
           "strength": min(max(float(strength), 0.0), 1.0), "truncation": prov.truncation,
           "tileable": prov.tileable, "width": width, "height": height}
    if prov.noise is not None:
        out["noise"] = prov.noise
    if prov.latent is not None:
        out["latent"] = prov.latent
    if prov.edits:
        out["edits"] = [{"direction": d, "amount": a} for d, a in prov.edits]
    return out


NO_LATENT = ("this layer was found by projection, but the document holds no latent for it (a layer pasted from "
             "another document keeps only its name); select the original layer, or run Find in model again.")


def of_result(result: dict, image: dict, width: int, height: int, base_seed: int | None = None) -> Provenance:
    """The recipe of one image of a server result (its `params` are the request as the server resolved it)."""
    params = result.get("params", {})
    tag = state.tag_of(result, image, base_seed)
    kind = result.get("kind", "generate")
    kinds = {"variations": "variation", "interpolate": "frame", "project": "project"}
    try:
        edits = edits_of(_parse_edit_string(params.get("edits")))
    except (TypeError, ValueError):
        edits = ()
    return Provenance(
        model=tag.model, seed=tag.seed, kind=kinds.get(kind, "generate"), truncation=tag.truncation,
        tileable=tag.tileable, edits=edits,
        noise=params.get("noise") if params.get("noise") in ("const", "random", "none") else None,
        variation=tag.variation, strength=_float(params.get("strength")) if kind == "variations" else None,
        frame=tag.frame, latent=params.get("latent") if isinstance(params.get("latent"), (str, dict)) else None,
        steps=_int(params.get("steps"), None) if kind == "project" else None, width=width, height=height)


def _parse_edit_string(text) -> list:
    """The server's resolved `edits` ('0:+2.5,3:-1', ganplug.directions.format_edits)."""
    if not text:
        return []
    if not isinstance(text, str):
        return list(text)
    return [tuple(part.split(":", 1)) for part in text.split(",") if part.strip()]
