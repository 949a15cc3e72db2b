"""Add-on logic that needs no Blender: requests, names, the Populate plan and the per-object recipe."""

# No `from __future__ import annotations`: the tests load this file by path, outside sys.modules, where a
# dataclass with string annotations cannot be made.
import struct
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace

SEED_MAX = 2**32 - 1
INT_PROP_MAX = 2**31 - 1  # Blender's integer custom properties are 32-bit signed
MAX_SEEDS_PER_REQUEST = 16  # below any server's max_batch; Populate splits bigger selections
MAPPINGS = ("UV", "BOX")
VARIATIONS = ("SEEDS", "DIRECTION")
PROP_PREFIX = "ganplug_"


def texture_request(model: str, seeds: list[int], size: int, tileable: bool, truncation: float,
                    edits: str = "") -> dict:
    req = {"seeds": [int(s) % (SEED_MAX + 1) for s in seeds], "size": int(size), "tileable": bool(tileable),
           "truncation": float(truncation)}
    if model:
        req["model"] = model
    if edits:
        req["edits"] = edits
    return req


def image_name(model: str, seed: int, tileable: bool, edits: str = "") -> str:
    """Names the image datablock the way the Krita plugin names layers: model and seed, findable later."""
    return f"ganplug {model or 'model'} #{seed}{' tile' if tileable else ''}{' ' + edits if edits else ''}"


def populate_plan(object_names: list[str], start_seed: int) -> list[tuple[str, int]]:
    """Consecutive seeds for the selected objects, in name order so a re-run gives each the same seed."""
    return [(name, (start_seed + i) % (SEED_MAX + 1)) for i, name in enumerate(sorted(object_names))]


def material_name(object_name: str) -> str:
    return f"ganplug {object_name}"


def seed_prop(seed: int) -> int | str:
    """A seed as a custom property: an int where Blender's 32-bit properties hold it, else its digits."""
    seed = int(seed)
    return seed if seed <= INT_PROP_MAX else str(seed)


def sweep_amounts(count: int, amount: float) -> list[float]:
    """`count` evenly spaced amounts from -amount to +amount (one object: the seed itself, 0)."""
    if count <= 1:
        return [0.0] * count
    return [round(-amount + 2.0 * amount * i / (count - 1), 4) for i in range(count)]


def format_edit(direction: int, amount: float) -> str:
    """The wire form of one edit, as `ganplug generate --edit` writes it: '3:+1.5'."""
    return f"{int(direction)}:{float(amount):+g}"


@dataclass(frozen=True)
class Recipe:
    """Everything that made one object's texture; kept on the object as `ganplug_*` custom properties so
    Regenerate redoes it after the .blend is saved and reopened (edit them there to change one object)."""

    model: str = ""
    seed: int = 0
    size: int = 512
    tileable: bool = True
    truncation: float = 0.7
    edits: str = ""  # '3:+1.5' (see format_edit); empty = none
    mapping: str = "UV"  # UV or BOX
    strength: float = 4.0  # normal map: multiplies the per-pixel luminance slopes (see maps.py)
    invert: bool = False  # normal map: dark is raised

    def __post_init__(self):
        if not 0 <= self.seed <= SEED_MAX:
            raise ValueError(f"seed {self.seed} is outside 0-{SEED_MAX}.")
        if not 8 <= self.size <= 4096:
            raise ValueError(f"resolution {self.size} is outside 8-4096 pixels.")
        if self.mapping not in MAPPINGS:
            raise ValueError(f"mapping {self.mapping!r} is not one of {', '.join(MAPPINGS)}.")

    def request(self) -> dict:
        return texture_request(self.model, [self.seed], self.size, self.tileable, self.truncation, self.edits)

    def group_key(self) -> tuple:
        """What a server request shares: recipes equal but for the seed go in one request."""
        return (self.model, self.size, self.tileable, self.truncation, self.edits)

    def to_props(self) -> dict:
        props = asdict(self)
        props["seed"] = seed_prop(self.seed)
        return {PROP_PREFIX + k: v for k, v in props.items()}

    @classmethod
    def from_props(cls, props: Mapping, owner: str = "the object") -> "Recipe":
        """The recipe kept on an object (its custom properties); ValueError naming what is missing or wrong."""
        if PROP_PREFIX + "seed" not in props:
            raise ValueError(f"{owner} has no ganplug texture to regenerate (no ganplug_seed custom property); "
                             "use Generate or Populate first.")
        values = {}
        casts: dict[str, Callable] = {"model": str, "seed": int, "size": int, "tileable": bool, "truncation": float,
                                      "edits": str, "mapping": lambda v: str(v).upper(), "strength": float,
                                      "invert": bool}
        for f in fields(cls):
            key = PROP_PREFIX + f.name
            if key not in props:
                continue  # older recipes: the default
            try:
                values[f.name] = casts[f.name](props[key])
            except (TypeError, ValueError):
                raise ValueError(f"{owner}'s custom property {key} = {props[key]!r} is not a valid "
                                 f"{f.name}.") from None
        try:
            return cls(**values)
        except ValueError as e:
            raise ValueError(f"{owner}: {e}") from None


def populate_recipes(object_names: list[str], base: Recipe, variation: str = "SEEDS", direction: int = 0,
                     amount: float = 3.0) -> list[tuple[str, Recipe]]:
    """Each object its own variation, in name order: consecutive seeds from base.seed, or base.seed moved
    along one latent direction from -amount to +amount."""
    names = sorted(object_names)
    if variation == "SEEDS":
        return [(name, replace(base, seed=seed)) for name, seed in populate_plan(names, base.seed)]
    if variation == "DIRECTION":
        return [(name, replace(base, edits=format_edit(direction, a)))
                for name, a in zip(names, sweep_amounts(len(names), amount), strict=True)]
    raise ValueError(f"variation {variation!r} is not one of {', '.join(VARIATIONS)}.")


def batch_requests(plan: list[tuple[str, Recipe]]) -> list[tuple[dict, list[tuple[str, Recipe]]]]:
    """Server requests for a plan: recipes differing only in seed share one (at most MAX_SEEDS_PER_REQUEST
    distinct seeds each); returns (request, the plan entries it serves) in plan order."""
    groups: dict[tuple, list[tuple[str, Recipe]]] = {}
    for entry in plan:
        groups.setdefault(entry[1].group_key(), []).append(entry)
    out = []
    for entries in groups.values():
        chunk: list[tuple[str, Recipe]] = []
        seeds: list[int] = []
        for entry in entries:
            if entry[1].seed not in seeds and len(seeds) == MAX_SEEDS_PER_REQUEST:
                out.append((_request_of(chunk, seeds), chunk))
                chunk, seeds = [], []
            if entry[1].seed not in seeds:
                seeds.append(entry[1].seed)
            chunk.append(entry)
        out.append((_request_of(chunk, seeds), chunk))
    return out


def _request_of(chunk: list[tuple[str, Recipe]], seeds: list[int]) -> dict:
    r = chunk[0][1]
    return texture_request(r.model, seeds, r.size, r.tileable, r.truncation, r.edits)


def png_has_alpha(png: bytes) -> bool:
    """Whether a PNG file carries transparency: colour type 4 or 6 (grey/RGB + alpha) or a tRNS chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("the server's image is not a PNG file.")
    if png[25] in (4, 6):
        return True
    pos = 8
    while pos + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"tRNS":
            return True
        if kind in (b"IDAT", b"IEND"):
            return False
        pos += 12 + length
    return False
