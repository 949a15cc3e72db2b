"""Plugin logic without the host applications: names, settings, requests (validated by the server's schema)."""

from __future__ import annotations

import random
import sys

import pytest
from host_helpers import PLUGINS

from ganplug.serve import schema as S

sys.path.insert(0, str(PLUGINS / "krita"))
sys.path.insert(0, str(PLUGINS / "blender"))
from ganplug_krita import state as kstate  # noqa: E402  (imports without Krita: the docker is not registered)

sys.modules.setdefault("bpy", None)  # the Blender state module must not need bpy
import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location("ganplug_blender_state", PLUGINS / "blender/ganplug_blender/state.py")
bstate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bstate)


@pytest.mark.parametrize("tag", [
    kstate.LayerTag("concept-run", 0),
    kstate.LayerTag("a.b_c+d", 4294967295, truncation=0.55, tileable=True),
    kstate.LayerTag("m", 12, truncation=1.0, variation=3),
    kstate.LayerTag("m", 12, truncation=0.7, frame=5, tileable=True),
])
def test_layer_names_round_trip(tag):
    assert kstate.parse_layer_name(kstate.layer_name(tag)) == tag


@pytest.mark.parametrize("name", ["Background", "Paint Layer 1", "ganplug", "ganplug m #x", "ganplug m #12 junk",
                                  "ganplug has space #1"])
def test_other_layers_have_no_tag(name):
    assert kstate.parse_layer_name(name) is None


def test_settings_survive_bad_saved_values():
    s = kstate.Settings.from_json('{"seed": -5, "count": 900, "truncation": "x", "frames": 1, "new_key": 1}')
    assert (s.seed, s.count, s.truncation, s.frames) == (0, 64, 0.7, 2)
    # never more morph frames than a default server accepts in one request (it would answer 422)
    from ganplug.serve.settings import ServeSettings

    assert kstate.Settings.from_json('{"frames": 500}').frames == ServeSettings().frame_limit
    assert kstate.Settings.from_json("not json") == kstate.Settings()
    custom = kstate.Settings(server_url="http://127.0.0.1:9000", model="m", seed=5, tileable=True)
    assert kstate.Settings.from_json(custom.to_json()) == custom


def test_seeds_and_placement():
    rng = random.Random(1)
    seeds = {kstate.roll_seed(rng) for _ in range(50)}
    assert len(seeds) == 50 and all(0 <= s <= 2**32 - 1 for s in seeds)
    assert kstate.placement((800, 600), None) == (0, 0, 800, 600)
    assert kstate.placement((800, 600), (10, 20, 64, 32)) == (10, 20, 64, 32)
    assert kstate.placement((800, 600), (0, 0, 0, 0)) == (0, 0, 800, 600)


def test_krita_requests_validate_against_the_server_schema():
    s = kstate.Settings(model="tiny", seed=2**32 - 1, count=3, truncation=0.6, tileable=True)
    gen = S.GenerateRequest.model_validate(kstate.generate_request(s, 300, 200))
    assert gen.seeds == [2**32 - 1, 0, 1] and (gen.width, gen.height, gen.tileable) == (300, 200, True)
    tag = kstate.LayerTag("tiny", 7, truncation=0.6, tileable=True, variation=2)
    regen = S.GenerateRequest.model_validate(kstate.regenerate_request(tag, 64, 64))
    assert regen.seeds == [7] and regen.truncation == 0.6
    var = S.VariationsRequest.model_validate(kstate.variations_request(tag, s, 64, 64))
    assert (var.seed, var.count, var.strength) == (7, 3, 0.3)
    S.InterpolateRequest.model_validate(kstate.morph_request(s, 1, 2, 64, 64))
    S.TranslateRequest.model_validate(kstate.translate_request(s, "aGk=", 64, 64))
    default_model = kstate.generate_request(kstate.Settings(), 64, 64)
    assert "model" not in default_model and S.GenerateRequest.model_validate(default_model).model is None


def test_tags_from_server_results():
    result = {"model": "tiny", "params": {"truncation": 0.5, "tileable": True},
              "images": [{"seed": 9, "variation": 2}, {"frame": 3}]}
    assert kstate.tag_of(result, result["images"][0]) == kstate.LayerTag("tiny", 9, 0.5, True, variation=2)
    assert kstate.tag_of(result, result["images"][1], base_seed=4) == kstate.LayerTag("tiny", 4, 0.5, True, frame=3)


def test_blender_requests_and_populate_plan():
    req = bstate.texture_request("tiny", [5, 6], 512, True, 0.7)
    assert S.GenerateRequest.model_validate(req).seeds == [5, 6]
    assert "model" not in bstate.texture_request("", [1], 64, False, 1.0)
    assert bstate.populate_plan(["Sphere", "Cone", "Cube"], 4294967295) == [
        ("Cone", 4294967295), ("Cube", 0), ("Sphere", 1)]
    assert bstate.image_name("tiny", 3, True) == "ganplug tiny #3 tile"
