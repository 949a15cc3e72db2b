"""Issue 12, the server must survive one bad file: damaged checkpoints are listed as unusable while the other
models keep working, absurd sizes are refused before anything is allocated, the job queue is bounded (429),
the schema states the limits the server enforces, and a 405 says which methods are allowed."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open
from safetensors.torch import save_file
from serve_helpers import make_client

from ganplug.checkpoint import META_KEY, load_generator, read_meta, resolve_checkpoint
from ganplug.errors import UserError
from ganplug.models import build_models, config_from_dict
from ganplug.models.registry import MAX_WEIGHTS, check_budget
from ganplug.serve import schema as S
from ganplug.serve.errors import ApiError
from ganplug.serve.jobs import JobQueue
from ganplug.serve.settings import ServeSettings

ENORMOUS = {"size": 256, "base_channels": 100_000, "max_channels": 100_000}  # ~1.6 T weights, 6 TB as fp32


def write_with_meta(src: Path, dst: Path, doc: Any) -> Path:
    """A copy of a real checkpoint, every tensor included, with its ganplug document replaced by `doc`."""
    with safe_open(str(src), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(dst), metadata={META_KEY: json.dumps(doc)})
    return dst


def _set(dotted: str, value: Any):
    """A change to the document: the value at `model.size` (say) replaced."""

    def change(doc: dict) -> dict:
        doc = copy.deepcopy(doc)
        *parents, last = dotted.split(".")
        target = doc
        for key in parents:
            target = target[key]
        target[last] = value
        return doc

    return change


def _drop(key: str):
    return lambda doc: {k: v for k, v in doc.items() if k != key}


def _points(doc: dict) -> dict:
    """A well-formed document of the 2D-point family: valid, but nothing an image server can serve."""
    return {**doc, "arch": "mlp", "model": {}}


MALFORMED = [
    pytest.param(lambda doc: [doc], r"metadata is a JSON array, not a JSON object", id="document-is-a-list"),
    pytest.param(lambda doc: "ganplug", r"metadata is a JSON string, not a JSON object", id="document-is-a-string"),
    pytest.param(_set("model", [32, 3]), r"'model' is a JSON array, not a JSON object", id="model-is-a-list"),
    pytest.param(_set("format_version", None), r"format_version is None, not an integer", id="format-version-null"),
    pytest.param(_set("format_version", "abc"), r"format_version is 'abc', not an integer", id="format-version-abc"),
    pytest.param(_set("format", "other"), r"not a ganplug checkpoint \(format 'other'\)", id="foreign-format"),
    pytest.param(_set("arch", "nope"), r"unknown architecture 'nope'", id="unknown-arch"),
    pytest.param(_set("arch", 5), r"'arch' is a JSON integer, not a JSON string", id="arch-is-a-number"),
    pytest.param(_drop("arch"), r"lacks 'arch'", id="no-arch"),
    pytest.param(_set("model.size", 7), r"size must be one of 32, 64, 128, 256 .*not 7", id="size-7"),
    pytest.param(_set("model.size", 2**20), r"size must be one of .*not 1048576", id="size-2**20"),
    pytest.param(_set("model.base_channels", "8"), r"values of the wrong type", id="width-is-a-string"),
    pytest.param(_set("model.base_channels", 8.5), r"do not make a buildable model", id="width-is-a-fraction"),
    pytest.param(_set("model.colour", 1), r"does not take option\(s\) colour", id="unknown-option"),
    pytest.param(_set("model", ENORMOUS), r"weights .* over the limit of 2,000,000,000", id="enormous-widths"),
    pytest.param(_set("step", "abc"), r"'step' is a JSON string, not a JSON integer", id="step-is-a-string"),
    pytest.param(_set("train", []), r"'train' is a JSON array, not a JSON object", id="train-is-a-list"),
    pytest.param(_points, r"2-channel samples, not images", id="points-not-images"),
]


@pytest.fixture(scope="module")
def good_ckpt(model_dir) -> Path:
    return resolve_checkpoint(model_dir / "rgb32")


@pytest.mark.parametrize("change,reason", MALFORMED)
def test_one_malformed_checkpoint_is_listed_unusable_and_the_rest_keep_working(good_ckpt, tmp_path, change, reason):
    bad = write_with_meta(good_ckpt, tmp_path / "bad.safetensors", change(read_meta(good_ckpt)))
    with pytest.raises(UserError):  # what the CLI loads with: exit 2 and a sentence, never a traceback
        load_generator(bad)
    with make_client(models=(bad, good_ckpt.parent.parent)) as c:  # the bad file first
        health = c.get("/v1/health")
        assert health.status_code == 200 and (health.json()["models"], health.json()["unusable"]) == (1, 1)
        listing = c.get("/v1/models")
        assert listing.status_code == 200 and [m["name"] for m in listing.json()["models"]] == ["rgb32"]
        [entry] = listing.json()["unusable"]
        assert entry["name"] == "bad" and re.search(reason, entry["reason"]), entry
        assert str(tmp_path) not in entry["reason"]  # clients see names, not this machine's paths
        r = c.post("/v1/generate", json={"seeds": [1]})  # the default model: the first usable one
        assert r.status_code == 200 and r.json()["model"] == "rgb32" and len(r.json()["images"]) == 1
        for path in ("/v1/generate", "/v1/jobs/generate"):
            r = c.post(path, json={"model": "bad", "seeds": [1]})
            assert r.status_code == 422 and r.json()["code"] == "model_unusable", r.text
            assert re.search(reason, r.json()["error"])
        assert c.get("/v1/jobs").status_code == 200


def test_a_checkpoint_whose_weights_do_not_load_becomes_unusable_at_the_first_try(good_ckpt, tmp_path):
    misfit = write_with_meta(good_ckpt, tmp_path / "misfit.safetensors",
                             _set("model.base_channels", 16)(read_meta(good_ckpt)))  # its weights are for 8
    with make_client(models=(misfit, good_ckpt.parent.parent)) as c:
        assert [m["name"] for m in c.get("/v1/models").json()["models"]] == ["misfit", "rgb32"]  # metadata is fine
        r = c.post("/v1/generate", json={"model": "misfit", "seeds": [1]})
        assert r.status_code == 422 and r.json()["code"] == "model_unusable" and "do not fit" in r.json()["error"]
        listing = c.get("/v1/models").json()
        assert [m["name"] for m in listing["models"]] == ["rgb32"]
        [entry] = listing["unusable"]
        assert entry["name"] == "misfit" and "do not fit" in entry["reason"]
        assert str(tmp_path) not in r.json()["error"] + entry["reason"]
        again = c.post("/v1/jobs/generate", json={"model": "misfit", "seeds": [1]})  # refused before queueing
        assert again.status_code == 422 and again.json()["code"] == "model_unusable"
        assert c.post("/v1/generate", json={"seeds": [1]}).json()["model"] == "rgb32"


def _weights(module) -> int:
    return sum(t.numel() for t in (*module.parameters(), *module.buffers()))


def test_the_size_budget_counts_exactly_allocates_nothing_and_admits_real_models():
    small = config_from_dict("dcgan", {"size": 32, "base_channels": 8, "z_dim": 16})
    G, D, _ = build_models("dcgan", small)
    assert check_budget("dcgan", small) == (_weights(G), _weights(D))  # the meta-device count is the real count
    with pytest.raises(UserError, match=r"over the limit of 2,000,000,000.*base_channels=100000"):
        check_budget("dcgan", config_from_dict("dcgan", ENORMOUS))  # would need 6 TB if it allocated
    largest = config_from_dict("stylegan", {"size": 512, "capacity": 4, "w_dim": 1024, "mapping_layers": 16})
    g, d = check_budget("stylegan", largest)  # the largest configuration ganplug trains fits, with room
    assert g + d < MAX_WEIGHTS / 2


def _ganplug_command() -> list[str]:
    script = Path(sys.executable).with_name("ganplug")  # the console script of this environment
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from ganplug.cli.app import main; sys.exit(main())"]


def test_cli_generate_on_an_enormous_checkpoint_exits_2_with_one_line(good_ckpt, tmp_path):
    bad = write_with_meta(good_ckpt, tmp_path / "huge.safetensors", _set("model", ENORMOUS)(read_meta(good_ckpt)))
    out = tmp_path / "grid.png"
    proc = subprocess.run([*_ganplug_command(), "generate", str(bad), "--n", "1", "--out", str(out), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "over the limit" in lines[0], proc.stderr
    assert not out.exists()


def test_the_job_queue_refuses_past_its_bound_and_accepts_again_when_a_slot_frees():
    q = JobQueue(workers=1, max_pending=2)
    release = threading.Event()
    blocked = q.submit("slow", lambda ctx: release.wait(10))
    queued = q.submit("next", lambda ctx: None)
    with pytest.raises(ApiError) as refused:
        q.submit("third", lambda ctx: None)
    assert (refused.value.status, refused.value.code) == (429, "busy")
    assert int(refused.value.headers["Retry-After"]) >= 1
    release.set()
    deadline = time.monotonic() + 10
    while not (blocked.finished and queued.finished):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert q.submit("fourth", lambda ctx: None).id  # finished jobs free their slots
    q.shutdown()


def test_a_full_server_answers_429_with_retry_after(tiny_run):
    assert ServeSettings().max_jobs == 16
    with make_client(models=(tiny_run,), max_jobs=2, workers=1, chunk=1, max_batch=4096) as c:
        long = c.post("/v1/jobs/generate", json={"count": 4096, "size": 96})  # seconds of work, cancelled below
        queued = c.post("/v1/jobs/generate", json={"seeds": [1]})
        assert (long.status_code, queued.status_code) == (202, 202)
        for path in ("/v1/jobs/generate", "/v1/generate"):
            r = c.post(path, json={"seeds": [2]})
            assert r.status_code == 429 and r.json()["code"] == "busy", r.text
            assert int(r.headers["Retry-After"]) >= 1
        assert c.get("/v1/health").status_code == 200  # refusing work is not being down
        for job in (queued, long):
            c.delete(f"/v1/jobs/{job.json()['id']}")
        deadline = time.monotonic() + 20
        while c.get(f"/v1/jobs/{long.json()['id']}").json()["state"] not in ("cancelled", "done", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert c.post("/v1/generate", json={"seeds": [3]}).status_code == 200
        responses = c.get("/openapi.json").json()["paths"]["/v1/generate"]["post"]["responses"]
        assert "Retry-After" in responses["429"]["headers"]


LIMITS = {"max_batch": 5, "max_frames": 3, "max_side": 100}  # distinct numbers, none of them a default
CAPPED = [  # (kind, field, schema keyword, enforced limit, request with n of it)
    ("generate", "count", "maximum", 5, lambda n: {"count": n}),
    ("generate", "seeds", "maxItems", 5, lambda n: {"seeds": list(range(n))}),
    ("generate", "size", "maximum", 100, lambda n: {"seeds": [1], "size": n}),
    ("generate", "width", "maximum", 100, lambda n: {"seeds": [1], "width": n}),
    ("generate", "height", "maximum", 100, lambda n: {"seeds": [1], "height": n}),
    ("variations", "count", "maximum", 5, lambda n: {"seed": 1, "count": n}),
    ("interpolate", "frames", "maximum", 3, lambda n: {"seeds": [1, 2], "frames": n}),
    ("interpolate", "seeds", "maxItems", 3, lambda n: {"seeds": list(range(n)), "frames": 3}),
    ("stylemix", "row_seeds", "maxItems", 5, lambda n: {"model": "style32", "row_seeds": list(range(n)),
                                                        "col_seeds": [0]}),
    ("stylemix", "col_seeds", "maxItems", 5, lambda n: {"model": "style32", "row_seeds": [0],
                                                        "col_seeds": list(range(n))}),
]


def _bound(openapi: dict, kind: str, field: str, keyword: str) -> int:
    """The bound the schema states on one request field (looked up through $ref and Optional's anyOf)."""
    body = openapi["paths"][f"/v1/{kind}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    model = openapi["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    prop = model["properties"][field]
    return next(p[keyword] for p in [prop, *prop.get("anyOf", [])] if keyword in p)


@pytest.fixture(scope="module")
def limited(tiny_run, style_run):
    with make_client(models=(tiny_run, style_run), **LIMITS) as c:
        yield c


@pytest.mark.parametrize("kind,field,keyword,limit,request_with", CAPPED,
                         ids=[f"{kind}-{field}" for kind, field, *_ in CAPPED])
def test_the_schema_states_each_enforced_limit(limited, kind, field, keyword, limit, request_with):
    assert _bound(limited.get("/openapi.json").json(), kind, field, keyword) == limit
    at = limited.post(f"/v1/{kind}", json=request_with(limit))
    assert at.status_code == 200, at.text
    over = limited.post(f"/v1/{kind}", json=request_with(limit + 1))
    assert over.status_code == 422 and str(limit) in over.json()["error"], over.text
    assert over.json()["code"] in ("batch_too_large", "too_large")


def test_a_default_server_schema_states_the_default_limits():
    d = ServeSettings()
    schema = S.GenerateRequest.model_json_schema()
    assert schema["properties"]["count"]["maximum"] == d.max_batch == 64
    assert schema["properties"]["size"]["anyOf"][0]["maximum"] == d.max_side
    frames = S.InterpolateRequest.model_json_schema()["properties"]["frames"]["maximum"]
    assert frames == min(d.max_frames, d.max_batch) == d.frame_limit


@pytest.mark.parametrize("method,path,allow", [
    ("GET", "/v1/generate", "POST"),
    ("PUT", "/v1/jobs/abc", "GET, DELETE"),  # two routes share this path: both are named
    ("POST", "/v1/health", "GET"),
    ("DELETE", "/v1/models", "GET"),
])
def test_a_405_names_the_allowed_methods(client, method, path, allow):
    r = client.request(method, path)
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    assert r.headers["Allow"] == allow and allow in r.json()["error"]


def test_a_401_names_its_scheme(tiny_run):
    with make_client(models=(tiny_run,), token="s3cret-token-123") as c:
        r = c.get("/v1/health")
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
