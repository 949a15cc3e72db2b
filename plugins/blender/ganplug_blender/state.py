"""Add-on logic that needs no Blender: request building, names, and the Populate plan."""

from __future__ import annotations

SEED_MAX = 2**32 - 1


def texture_request(model: str, seeds: list[int], size: int, tileable: bool, truncation: float) -> dict:
    req = {"seeds": [int(s) % (SEED_MAX + 1) for s in seeds], "size": int(size), "tileable": bool(tileable),
           "truncation": float(truncation)}
    if model:
        req["model"] = model
    return req


def image_name(model: str, seed: int, tileable: bool) -> str:
    """Names the image datablock the way the Krita plugin names layers: model and seed, findable later."""
    return f"ganplug {model or 'model'} #{seed}{' tile' if tileable else ''}"


def populate_plan(object_names: list[str], start_seed: int) -> list[tuple[str, int]]:
    """Consecutive seeds for the selected objects, in name order so a re-run gives each the same seed."""
    return [(name, (start_seed + i) % (SEED_MAX + 1)) for i, name in enumerate(sorted(object_names))]


def material_name(object_name: str) -> str:
    return f"ganplug {object_name}"
