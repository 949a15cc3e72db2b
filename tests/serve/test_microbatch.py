"""Micro-batching in `ganplug serve`: concurrent generate requests of one model and the same options share a
forward pass, and every client still gets, bit for bit, the pixels of its request made alone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from serve_helpers import make_client, write_untrained_run

from ganplug import ops
from ganplug.checkpoint import load_generator
from ganplug.device import make_runtime
from ganplug.sampling import z_from_seeds
from ganplug.serve import batching_line
from ganplug.serve.batching import batch_exact

WAIT_MS = 300  # long enough for every thread's request to be offered before the first job takes its batch


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mb")
    write_untrained_run(root / "fg", arch="fastgan", size=32, capacity=0.25, z_dim=32)
    write_untrained_run(root / "dc", arch="dcgan", size=32, channels=3, base_channels=8, z_dim=16)
    write_untrained_run(root / "st", arch="stylegan", size=32, z_dim=16, w_dim=16, mapping_layers=2, capacity=0.05,
                        channel_max=32)
    return root


class Passes:
    """Wraps a served model's forward: records (images, truncation) of every pass; optionally fails one seed."""

    def __init__(self, client, name: str, poison: int | None = None):
        server = client.app.state.server
        self.G = server.loaded(server.catalog.resolve(name)).G
        self.calls: list[tuple[int, float]] = []
        self.lock = threading.Lock()
        inner = type(self.G).forward.__get__(self.G)
        bad = None if poison is None else z_from_seeds([poison], self.G.z_dim)[0]

        def forward(z, *args, truncation: float = 1.0, **kwargs):
            with self.lock:
                self.calls.append((len(z), truncation))
            if bad is not None and any(torch.equal(row.cpu().float(), bad) for row in z):
                raise RuntimeError("poisoned seed")
            return inner(z, *args, truncation=truncation, **kwargs)

        self.G.forward = forward

    def remove(self) -> None:
        del self.G.forward


def _concurrently(client, bodies: list[dict]) -> list:
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda b: client.post("/v1/generate", json=b), bodies))


def _pngs(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [im["png"] for im in response.json()["images"]]


@pytest.fixture(scope="module")
def alone(runs):
    """A server that never batches (--batch-wait-ms 0): the reference pixels of each request made alone."""
    with make_client(models=(runs,), precision="bf16", batch_wait_ms=0) as c:
        assert c.app.state.server.batcher is None
        yield c


@pytest.fixture(scope="module")
def batched(runs):
    with make_client(models=(runs,), precision="bf16", batch_wait_ms=WAIT_MS) as c:
        assert c.app.state.server.batcher is not None
        yield c


@pytest.mark.parametrize("arch", ["fastgan", "dcgan", "stylegan"])
def test_bf16_cpu_forward_is_batch_invariant(runs, arch):
    """What batching rests on: a seed's image in a batch is its lone image, bit for bit (CPU, bf16)."""
    run = {"fastgan": "fg", "dcgan": "dc", "stylegan": "st"}[arch]
    rt = make_runtime("cpu", "bf16")
    assert batch_exact(rt) and not batch_exact(make_runtime("cpu", "fp32"))
    model = load_generator(runs / run)
    rt.prepare_module(model.G)
    seeds = list(range(40, 52))
    together = ops.generate(model, rt, seeds, batch_size=len(seeds), truncation=0.8).images
    for i, s in enumerate(seeds):
        assert torch.equal(ops.generate(model, rt, [s], batch_size=1, truncation=0.8).images[0], together[i])


@pytest.mark.parametrize("name", ["fg", "st"])
def test_concurrent_requests_share_a_pass_and_keep_their_pixels(batched, alone, name):
    bodies = [{"model": name, "seeds": [100 + i]} for i in range(6)] + [{"model": name, "seed": 7, "count": 2},
                                                                       {"model": name, "seeds": [5], "size": 48}]
    passes = Passes(batched, name)
    try:
        got = _concurrently(batched, bodies)
    finally:
        passes.remove()
    assert sum(n for n, _ in passes.calls) == 9  # every image computed once
    assert len(passes.calls) < len(bodies)  # ...in fewer passes than requests (1 when all met in the window)
    assert batched.app.state.server.batcher.stats.largest > 1
    for body, response in zip(bodies, got, strict=True):
        assert _pngs(response) == _pngs(alone.post("/v1/generate", json=body))
    assert [im["seed"] for im in got[6].json()["images"]] == [7, 8]
    assert got[7].json()["images"][0]["width"] == 48  # resized after the pass, per request


def test_different_options_are_not_mixed(batched, alone):
    bodies = [{"model": "fg", "seeds": [i], "truncation": t} for i in range(3) for t in (1.0, 0.6)]
    bodies += [{"model": "fg", "seeds": [9], "tileable": True}, {"model": "dc", "seeds": [9]}]
    passes = Passes(batched, "fg")
    try:
        got = _concurrently(batched, bodies)
    finally:
        passes.remove()
    per_truncation: dict[float, int] = {}
    for n, t in passes.calls:
        per_truncation[t] = per_truncation.get(t, 0) + n
        assert n <= 3  # no pass holds requests of both truncations, or the tileable one
    assert per_truncation == {1.0: 4, 0.6: 3}  # 3 + the tileable request at truncation 1
    for body, response in zip(bodies, got, strict=True):
        assert _pngs(response) == _pngs(alone.post("/v1/generate", json=body))


def test_a_failing_request_fails_alone(batched, alone):
    bodies = [{"model": "fg", "seeds": [200 + i]} for i in range(4)] + [{"model": "fg", "seeds": [666]},
                                                                       {"model": "fg", "seeds": [1], "edits": "0:2"}]
    passes = Passes(batched, "fg", poison=666)
    try:
        got = _concurrently(batched, bodies)
    finally:
        passes.remove()
    for body, response in zip(bodies[:4], got[:4], strict=True):
        assert _pngs(response) == _pngs(alone.post("/v1/generate", json=body))
    assert got[4].status_code == 500 and got[4].json()["code"] == "internal"
    assert got[5].status_code == 422 and got[5].json()["code"] == "no_directions"


def test_wait_zero_and_fp32_do_not_batch(runs, alone):
    bodies = [{"model": "dc", "seeds": [300 + i]} for i in range(4)]
    passes = Passes(alone, "dc")
    try:
        got = _concurrently(alone, bodies)
    finally:
        passes.remove()
    assert [n for n, _ in passes.calls] == [1, 1, 1, 1]
    assert all(r.status_code == 200 for r in got)
    with make_client(models=(runs,), precision="fp32", batch_wait_ms=WAIT_MS) as c:
        assert c.app.state.server.batcher is None  # fp32 kernels differ by batch size: no batching there
        assert "micro-batching: off on cpu in fp32" in batching_line(c.app.state.server)  # and the start says so
    assert batching_line(alone.app.state.server) == "micro-batching: off (--batch-wait-ms 0)"


def test_a_lone_request_waits_at_most_the_window(batched):
    r = batched.post("/v1/generate", json={"model": "dc", "seeds": [1]})
    assert r.status_code == 200 and r.json()["elapsed_s"] < WAIT_MS / 1000 + 5
