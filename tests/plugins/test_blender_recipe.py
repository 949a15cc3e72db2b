"""The Blender add-on's recipes and Populate plans (state.py), without Blender: what goes on an object,
what comes back from its custom properties, and the requests (validated by the server's schema)."""

from __future__ import annotations

import importlib.util

import pytest
from host_helpers import PLUGINS

from ganplug.serve import schema as S

_spec = importlib.util.spec_from_file_location("ganplug_blender_state", PLUGINS / "blender/ganplug_blender/state.py")
bstate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bstate)
Recipe = bstate.Recipe


def test_recipe_survives_custom_properties_even_for_seeds_over_32_bits():
    r = Recipe(model="rgb32", seed=2**32 - 1, size=64, tileable=False, truncation=0.5, edits="2:-1.5",
               mapping="BOX", strength=3.0, invert=True)
    props = r.to_props()
    assert props["ganplug_seed"] == "4294967295"  # Blender's int properties are 32-bit signed
    assert Recipe(seed=7).to_props()["ganplug_seed"] == 7
    assert Recipe.from_props(props) == r
    # as Blender may hand them back: ints for bools, a lower-case mapping typed in the UI
    props.update(ganplug_tileable=0, ganplug_invert=1, ganplug_mapping="box")
    assert Recipe.from_props(props) == r
    # a recipe from before a field existed takes its default
    assert Recipe.from_props({"ganplug_seed": 3, "ganplug_model": "m"}) == Recipe(model="m", seed=3)


@pytest.mark.parametrize("props, message", [
    ({}, "Cube has no ganplug texture to regenerate"),
    ({"ganplug_seed": "x"}, "Cube's custom property ganplug_seed = 'x' is not a valid seed"),
    ({"ganplug_seed": 1, "ganplug_mapping": "SPHERE"}, "Cube: mapping 'SPHERE' is not one of UV, BOX"),
    ({"ganplug_seed": -1}, "Cube: seed -1 is outside"),
    ({"ganplug_seed": 1, "ganplug_size": 5}, "Cube: resolution 5 is outside"),
])
def test_bad_recipes_are_refused_with_a_sentence(props, message):
    with pytest.raises(ValueError, match=message):
        Recipe.from_props(props, owner="Cube")


def test_populate_by_seeds_and_by_a_direction_sweep():
    base = Recipe(model="m", seed=2**32 - 2, mapping="BOX", strength=2.0)
    seeds = bstate.populate_recipes(["c", "a", "b"], base, "SEEDS")
    assert [(n, r.seed, r.edits) for n, r in seeds] == [("a", 2**32 - 2, ""), ("b", 2**32 - 1, ""), ("c", 0, "")]
    assert all(r.mapping == "BOX" and r.strength == 2.0 for _, r in seeds)
    sweep = bstate.populate_recipes(["c", "a", "b"], base, "DIRECTION", direction=4, amount=2.5)
    assert [(n, r.seed, r.edits) for n, r in sweep] == [("a", base.seed, "4:-2.5"), ("b", base.seed, "4:+0"),
                                                        ("c", base.seed, "4:+2.5")]
    assert bstate.sweep_amounts(1, 3.0) == [0.0] and bstate.sweep_amounts(5, 1.0) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="variation 'GRID'"):
        bstate.populate_recipes(["a"], base, "GRID")


def test_requests_group_seeds_and_validate_against_the_server_schema():
    base = Recipe(model="m", seed=10, size=64, truncation=0.6)
    many = bstate.populate_recipes([f"o{i:02d}" for i in range(20)], base, "SEEDS")
    tasks = bstate.batch_requests(many)
    assert [len(t[0]["seeds"]) for t in tasks] == [16, 4]  # one request per 16 seeds
    assert [e for t in tasks for e in t[1]] == many
    sweep = bstate.populate_recipes(["a", "b", "c"], base, "DIRECTION", direction=1, amount=2.0)
    tasks = bstate.batch_requests(sweep)
    assert [t[0]["edits"] for t in tasks] == ["1:-2", "1:+0", "1:+2"]  # one request per edit
    for request, _ in bstate.batch_requests(many + sweep):
        req = S.GenerateRequest.model_validate(request)
        assert (req.model, req.size, req.truncation) == ("m", 64, 0.6)
    same_seed = [("a", Recipe(seed=5)), ("b", Recipe(seed=5))]
    assert [t[0]["seeds"] for t in bstate.batch_requests(same_seed)] == [[5]]
    assert "edits" not in Recipe(seed=1).request() and "model" not in Recipe(seed=1).request()
    assert bstate.image_name("m", 3, True, "1:+2") == "ganplug m #3 tile 1:+2"
