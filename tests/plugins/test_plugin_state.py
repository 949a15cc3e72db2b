"""Plugin logic without the host applications: names, settings, requests (validated by the server's schema)."""

from __future__ import annotations

import json
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
sys.modules[_spec.name] = bstate  # dataclasses look their module up while the class is made
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


# ---------------------------------------------------------------------- provenance (the .kra sidecar)
from ganplug_krita import provenance as kprov  # noqa: E402
from ganplug_krita import steer as ksteer  # noqa: E402


def test_sidecar_round_trips_every_kind_and_keeps_a_newer_plugins_fields():
    records = {
        "{a}": kprov.Provenance("tiny", 7, truncation=0.55, tileable=True, edits=((0, 1.5), (3, -0.25)),
                                width=96, height=64),
        "{b}": kprov.Provenance("tiny", 2**32 - 1, kind="variation", variation=3, strength=0.4, noise="random"),
        "{c}": kprov.Provenance("style32", 5, kind="frame", frame=2),
        "{d}": kprov.Provenance("style32", 0, kind="project", steps=50, latent="latents/abc"),
        "{e}": kprov.Provenance("tiny", 1, extra={"future_field": [1, 2]}),
    }
    raw = kprov.dump_sidecar(records)
    back = kprov.parse_sidecar(raw)
    assert back == records
    assert back["{e}"].extra == {"future_field": [1, 2]}  # written back as it came
    assert json.loads(kprov.dump_sidecar(back))["layers"]["{e}"]["future_field"] == [1, 2]
    assert json.loads(raw)["format"] == kprov.FORMAT and json.loads(raw)["version"] == kprov.VERSION
    # layers deleted from the document lose their records when it is written again
    assert set(kprov.parse_sidecar(kprov.dump_sidecar(records, keep={"{a}", "{zzz}"}))) == {"{a}"}


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"[1]", b'{"format": "other", "layers": {}}',
                                 b'{"format": "ganplug-krita-provenance", "layers": []}', b"\xff\xfe"])
def test_unreadable_sidecars_read_as_empty(raw):
    assert kprov.parse_sidecar(raw) == {}


def test_bad_records_are_skipped_not_fatal():
    raw = json.dumps({"format": kprov.FORMAT, "version": 9, "layers": {
        "{ok}": {"model": "tiny", "seed": 3, "kind": "new-kind-of-later-plugin"},
        "{no-model}": {"seed": 3}, "{bad-edit}": {"model": "tiny", "edits": [{"direction": -1, "amount": 1}]},
        "{bad-seed}": {"model": "tiny", "seed": "x"}}})
    got = kprov.parse_sidecar(raw)
    assert got == {"{ok}": kprov.Provenance("tiny", 3)}  # unknown kind read as a plain generate


def test_sidecar_record_wins_over_the_name_and_names_are_the_fallback():
    records = {"{a}": kprov.Provenance("tiny", 9, edits=((1, 2.0),))}
    assert kprov.resolve("{a}", "renamed by the user", records).edits == ((1, 2.0),)
    steered = kprov.Provenance("tiny", 4, truncation=0.7, edits=((0, -1.25), (2, 0.5)))
    assert steered.layer_name() == "ganplug tiny #4 t0.70 e0:-1.25,2:+0.5"
    assert kprov.resolve("{pasted}", steered.layer_name(), {}) == steered  # a layer pasted from elsewhere
    found = kprov.resolve("{x}", "ganplug style32 #0 t1.00 found", {})
    assert found.kind == "project" and found.latent is None
    assert kprov.resolve("{x}", "Paint Layer 2", records) is None
    assert kprov.resolve("{x}", "ganplug tiny #1 v2 t1.00", {}).kind == "variation"


def test_regenerate_plans_validate_against_the_server_schema():
    prov = kprov.Provenance("tiny", 7, truncation=0.6, edits=((0, 1.5), (2, -0.5)), noise="const")
    kind, req, pick = kprov.regenerate_plan(prov, 96, 64)
    gen = S.GenerateRequest.model_validate(req)
    assert (kind, pick, gen.seeds, gen.width, gen.height) == ("generate", 0, [7], 96, 64)
    assert [(e.direction, e.amount) for e in gen.edits] == [(0, 1.5), (2, -0.5)]
    var = kprov.Provenance("tiny", 7, kind="variation", variation=3, strength=0.4)
    kind, req, pick = kprov.regenerate_plan(var, 64, 64)
    v = S.VariationsRequest.model_validate(req)
    assert (kind, pick, v.seed, v.count, v.strength) == ("variations", 2, 7, 3, 0.4)  # the third variation
    # a variation whose strength the name did not record regenerates its base seed
    assert kprov.regenerate_plan(kprov.Provenance.from_tag(var.tag()), 64, 64)[1]["seeds"] == [7]
    with pytest.raises(ValueError, match="projection"):
        kprov.regenerate_plan(kprov.Provenance("style32", 0, kind="project"), 64, 64)
    # a found layer's latent (the server's params.latent) is sent back instead of a seed, edits applied to it
    latent = {"space": "w", "shape": [2, 4], "dtype": "float32", "data": "A" * 44}
    found = kprov.Provenance("style32", 0, kind="project", latent=latent).with_edits([(0, 1.0)])
    kind, req, _ = kprov.regenerate_plan(found, 64, 64)
    assert S.GenerateRequest.model_validate(req).latent.shape == [2, 4]
    assert req["latent"] == latent and "seeds" not in req and req["edits"] == [{"direction": 0, "amount": 1.0}]
    assert kprov.parse_sidecar(kprov.dump_sidecar({"{f}": found}))["{f}"].latent == latent
    assert found.layer_name() == "ganplug style32 #0 t1.00 found e0:+1"
    # a variation of a steered found layer regenerates from the latent, its edits and its index
    var_found = kprov.Provenance("style32", 4, kind="variation", variation=2, strength=0.5, latent=latent,
                                 edits=((1, -0.5),))
    kind, req, pick = kprov.regenerate_plan(var_found, 64, 64)
    v = S.VariationsRequest.model_validate(req)
    assert (kind, pick, v.seed, v.count, v.latent.data, [(e.direction, e.amount) for e in v.edits]) == (
        "variations", 1, 4, 2, latent["data"], [(1, -0.5)])
    assert var_found.layer_name() == "ganplug style32 #4 v2 t1.00 found e1:-0.5"
    # its name alone (pasted elsewhere) holds no latent: refused, never regenerated from the seed
    with pytest.raises(ValueError, match="no latent"):
        kprov.regenerate_plan(kprov.resolve("{p}", var_found.layer_name(), {}), 64, 64)
    steered = var.with_edits([(1, 0.75)])
    assert (steered.kind, steered.variation, steered.edits) == ("generate", None, ((1, 0.75),))


def test_variations_plans_carry_the_layers_edits_and_latent():
    steered = kprov.Provenance("tiny", 7, truncation=0.6, edits=((0, 1.5), (2, -0.5)), noise="const")
    v = S.VariationsRequest.model_validate(kprov.variations_plan(steered, 3, 0.4, 96, 64))
    assert (v.seed, v.count, v.strength, v.truncation, v.noise, v.latent) == (7, 3, 0.4, 0.6, "const", None)
    assert [(e.direction, e.amount) for e in v.edits] == [(0, 1.5), (2, -0.5)]  # steered variations
    latent = {"space": "w", "shape": [2, 4], "dtype": "float32", "data": "A" * 44}
    found = kprov.Provenance("style32", 3, kind="project", latent=latent, steps=30)
    v = S.VariationsRequest.model_validate(kprov.variations_plan(found, 2, 0.5, 64, 64))
    assert (v.seed, v.latent.space, v.edits) == (3, "w", None)
    with pytest.raises(ValueError, match="no latent"):
        kprov.variations_plan(kprov.Provenance("style32", 0, kind="project"), 2, 0.5, 64, 64)


def test_provenance_of_a_server_result_reads_its_resolved_params():
    result = {"model": "tiny", "kind": "generate", "images": [{"seed": 11}],
              "params": {"truncation": 0.8, "tileable": False, "edits": "0:+1.5,3:-0.25", "noise": None}}
    prov = kprov.of_result(result, result["images"][0], 96, 64)
    assert prov == kprov.Provenance("tiny", 11, truncation=0.8, edits=((0, 1.5), (3, -0.25)), width=96, height=64)
    var = {"model": "tiny", "kind": "variations", "images": [{"seed": 5, "variation": 2}],
           "params": {"truncation": 1.0, "strength": 0.3}}
    p = kprov.of_result(var, var["images"][0], 8, 8)
    assert (p.kind, p.variation, p.strength) == ("variation", 2, 0.3)
    latent = {"space": "w", "shape": [2, 4], "dtype": "float32", "data": "A" * 44}
    found = {"model": "style32", "kind": "project", "images": [{}],
             "params": {"truncation": 1.0, "steps": 30, "seed": 3, "optimize_noise": False, "latent": latent}}
    p = kprov.of_result(found, found["images"][0], 8, 8, base_seed=3)
    assert (p.kind, p.seed, p.steps, p.latent) == ("project", 3, 30, latent)
    var["params"].update(latent=latent, edits="1:-0.5")  # variations of a steered found layer
    p = kprov.of_result(var, var["images"][0], 8, 8)
    assert (p.kind, p.latent, p.edits) == ("variation", latent, ((1, -0.5),))


# ---------------------------------------------------------------------- Steer: latest request wins
def test_latest_wins_sends_one_at_a_time_and_replaces_what_waits():
    lw = ksteer.LatestWins()
    first = lw.submit("p1")
    assert first.seq == 1 and lw.in_flight == first
    assert lw.submit("p2") is None and lw.submit("p3") is None and lw.submit("p4") is None
    assert lw.pending.payload == "p4" and lw.replaced == 2  # p2 and p3 are never sent
    show, nxt = lw.done(first.seq)
    assert show is True and nxt.payload == "p4" and lw.in_flight == nxt
    show, nxt = lw.done(nxt.seq)
    assert show is True and nxt is None and not lw.busy and lw.shown == 4


def test_latest_wins_drops_stale_answers():
    lw = ksteer.LatestWins()
    a = lw.submit("a")
    lw.submit("b")
    lw.reset()  # Keep or Discard while "a" is in flight and "b" waits
    assert lw.pending is None
    show, nxt = lw.done(a.seq)
    assert (show, nxt) == (False, None) and lw.dropped == 1
    c = lw.submit("c")
    assert c is not None and c.seq == 3
    assert lw.done(c.seq) == (True, None)
    assert lw.done(2)[0] is False  # an answer older than the one on the canvas never replaces it


def test_sliders_become_edits_the_server_accepts():
    positions = [150, 0, -275, 300]
    edits = ksteer.edits_from_sliders(positions)
    assert edits == [{"direction": 0, "amount": 1.5}, {"direction": 2, "amount": -2.75},
                     {"direction": 3, "amount": 3.0}]
    assert S.GenerateRequest.model_validate({"seeds": [1], "edits": edits}).edits[1].amount == -2.75
    assert ksteer.edits_from_sliders([0, 0]) == []
    assert ksteer.sliders_from_edits([(0, 1.5), (2, -2.75), (9, 1.0), (1, 50.0)], 4) == [150, 300, -275, 0]


def test_direction_count_comes_from_the_model_list():
    info = S.ModelInfo(name="m", arch="dcgan", size=32, channels=3, z_dim=16, supports=S.Supports(edits=True),
                       directions=12).model_dump()
    assert ksteer.direction_count(info) == 12 and ksteer.server_lists_directions(info)
    bare = S.ModelInfo(name="m", arch="dcgan", size=32, channels=3, z_dim=16, supports=S.Supports()).model_dump()
    assert ksteer.direction_count(bare) is None and ksteer.server_lists_directions(bare)  # null: no file
    older = {k: v for k, v in info.items() if k != "directions"}  # a server from before ModelInfo.directions
    assert ksteer.direction_count(older) is None and not ksteer.server_lists_directions(older)


def test_direction_names_sent_to_the_server_keep_the_others():
    server = ["hair", None, "pose", None, None]
    names = ksteer.names_to_save(server, 5, 1, "  light  ")
    assert names == ["hair", "light", "pose"]  # the endpoint replaces every name: the others are sent back
    assert S.DirectionNames.model_validate({"names": names}).names == names
    assert ksteer.names_to_save(server, 5, 2, "direction 2") == ["hair"]  # the default name is no name
    assert ksteer.names_to_save(None, 3, 0, "x") == ["x"]
    local = ksteer.names_for(ksteer.set_name("", "m", 3, "kept by Krita"), "m", 4)
    assert ksteer.merged_names(["hair", None, "", None], local, 4) == ["hair", "direction 1", "direction 2",
                                                                       "kept by Krita"]


def test_direction_names_store():
    store = ksteer.set_name("", "tiny", 0, "  hair   length ")
    store = ksteer.set_name(store, "tiny", 2, "x" * 100)
    store = ksteer.set_name(store, "other", 1, "pose")
    assert ksteer.names_for(store, "tiny", 4) == ["hair length", "direction 1", "x" * ksteer.NAME_MAX,
                                                  "direction 3"]
    store = ksteer.set_name(store, "other", 1, "")
    assert "other" not in json.loads(store)
    assert ksteer.names_for("garbage", "tiny", 2) == ["direction 0", "direction 1"]


def test_find_in_model_request_validates():
    s = kstate.Settings(model="style32", seed=3, project_steps=9000)
    req = S.ProjectRequest.model_validate(kstate.project_request(s, "aGk=", 64, 48))
    assert (req.steps, req.seed, req.width, req.height, req.model) == (5000, 3, 64, 48, "style32")
    assert req.optimize_noise is False  # the latent alone then makes the found image again, exactly
