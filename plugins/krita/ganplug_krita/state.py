"""Plugin logic that needs no Krita: settings, seed bookkeeping in layer names, request building.

A generated layer is named like `ganplug concept-run #1234 t0.70 tile`: the short, visible record of how it
was made. The full record (edits, strength, size) is the document's sidecar (provenance.py); the name is
what a layer falls back on when the sidecar does not know it (e.g. pasted from another document).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass, fields, replace

SEED_MAX = 2**32 - 1
PREFIX = "ganplug"


@dataclass
class Settings:
    server_url: str = "http://127.0.0.1:8765"
    token: str = ""
    model: str = ""
    seed: int = 0
    count: int = 1
    truncation: float = 0.7
    tileable: bool = False
    strength: float = 0.3  # variations
    frames: int = 8  # morph
    project_steps: int = 200  # Find in model

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """Settings saved by an older or newer plugin: unknown keys dropped, bad values reset."""
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        out = cls()
        for f in fields(cls):
            if f.name in data:
                default = getattr(out, f.name)
                try:
                    value = type(default)(data[f.name])
                except (TypeError, ValueError):
                    continue
                setattr(out, f.name, value)
        return out.clamped()

    def clamped(self) -> Settings:
        return replace(
            self,
            seed=min(max(int(self.seed), 0), SEED_MAX),
            count=min(max(int(self.count), 1), 64),
            truncation=min(max(float(self.truncation), 0.0), 2.0),
            strength=min(max(float(self.strength), 0.0), 1.0),
            frames=min(max(int(self.frames), 2), 64),  # a default server's limit (--max-batch caps frames too)
            project_steps=min(max(int(self.project_steps), 1), 5000),
        )


@dataclass(frozen=True)
class LayerTag:
    """How a layer was generated, as read from its name."""

    model: str
    seed: int
    truncation: float = 1.0
    tileable: bool = False
    variation: int | None = None
    frame: int | None = None


_NAME_RE = re.compile(
    r"^ganplug (?P<model>\S+) #(?P<seed>\d+)(?: v(?P<var>\d+))?(?: f(?P<frame>\d+))?"
    r"(?: t(?P<trunc>\d+(?:\.\d+)?))?(?P<tile> tile)?$"
)


def layer_name(tag: LayerTag) -> str:
    parts = [PREFIX, tag.model, f"#{tag.seed}"]
    if tag.variation is not None:
        parts.append(f"v{tag.variation}")
    if tag.frame is not None:
        parts.append(f"f{tag.frame}")
    parts.append(f"t{tag.truncation:.2f}")
    if tag.tileable:
        parts.append("tile")
    return " ".join(parts)


def parse_layer_name(name: str) -> LayerTag | None:
    """The tag of a layer this plugin named, or None for any other layer."""
    m = _NAME_RE.match((name or "").strip())
    if not m:
        return None
    return LayerTag(
        model=m.group("model"),
        seed=int(m.group("seed")) % (SEED_MAX + 1),
        truncation=float(m.group("trunc")) if m.group("trunc") else 1.0,
        tileable=bool(m.group("tile")),
        variation=int(m.group("var")) if m.group("var") else None,
        frame=int(m.group("frame")) if m.group("frame") else None,
    )


def roll_seed(rng: random.Random | None = None) -> int:
    """The dice button."""
    return (rng or random.Random()).randint(0, SEED_MAX)


def placement(canvas: tuple[int, int], selection: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
    """(x, y, width, height) a result fills: the selection's bounds if there is one, else the canvas."""
    if selection is not None:
        x, y, w, h = selection
        if w > 0 and h > 0:
            return x, y, w, h
    return 0, 0, canvas[0], canvas[1]


def _output(settings: Settings, width: int, height: int) -> dict:
    req = {"truncation": settings.truncation, "tileable": settings.tileable, "width": width, "height": height}
    if settings.model:
        req["model"] = settings.model
    return req


def generate_request(settings: Settings, width: int, height: int) -> dict:
    s = settings.clamped()
    req = _output(s, width, height)
    req["seeds"] = [(s.seed + i) % (SEED_MAX + 1) for i in range(s.count)]
    return req


def regenerate_request(tag: LayerTag, width: int, height: int) -> dict:
    """The request that reproduces a tagged layer (a variation or frame regenerates its base seed)."""
    return {"model": tag.model, "seeds": [tag.seed], "truncation": tag.truncation, "tileable": tag.tileable,
            "width": width, "height": height}


def variations_request(tag: LayerTag, settings: Settings, width: int, height: int) -> dict:
    """Variations of a name's seed (no edits: a name does not say them; the docker uses
    provenance.variations_plan, which does)."""
    s = settings.clamped()
    return {"model": tag.model, "seed": tag.seed, "count": s.count, "strength": s.strength,
            "truncation": tag.truncation, "tileable": tag.tileable, "width": width, "height": height}


def morph_request(settings: Settings, seed_a: int, seed_b: int, width: int, height: int) -> dict:
    s = settings.clamped()
    req = _output(s, width, height)
    req.update(seeds=[seed_a, seed_b], frames=s.frames)
    return req


def translate_request(settings: Settings, png_b64: str, width: int, height: int) -> dict:
    req = _output(settings.clamped(), width, height)
    req.pop("truncation")
    req["image"] = png_b64
    return req


def project_request(settings: Settings, png_b64: str, width: int, height: int) -> dict:
    """Find in model: the image to look for, the search's length and seed. The noise maps are not fitted
    (`optimize_noise: false`): the returned latent carries w only, and only then does it make the found image
    again, exactly, so Regenerate, Steer and Variations start from the very pixels the layer shows."""
    s = settings.clamped()
    req = {"image": png_b64, "steps": s.project_steps, "seed": s.seed % (SEED_MAX + 1), "optimize_noise": False,
           "width": width, "height": height}
    if s.model:
        req["model"] = s.model
    return req


def tag_of(result: dict, image: dict, base_seed: int | None = None) -> LayerTag:
    """The tag of one image of a server result (its resolved `params` say how it was made)."""
    params = result.get("params", {})
    seed = image.get("seed")
    if seed is None:
        seed = base_seed if base_seed is not None else 0
    return LayerTag(model=result.get("model", params.get("model", "model")), seed=int(seed),
                    truncation=float(params.get("truncation", 1.0)), tileable=bool(params.get("tileable", False)),
                    variation=image.get("variation"), frame=image.get("frame"))


def model_supports(models: list, name: str, feature: str) -> bool:
    for m in models:
        if m.get("name") == name:
            return bool(m.get("supports", {}).get(feature))
    return False
