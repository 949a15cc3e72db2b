"""`ganplug serve --compile`: the compiled pass gives a seed's image within a few levels of the eager one, at
any truncation without compiling again, reports its difference from fp32, and leaves what it does not cover
(tileable images, image-to-image models, gradients) to the eager pass.

Compiling costs seconds per model and batch size even at these tiny widths, so this file compiles each
model once (module-scoped server) and checks everything through it.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image
from serve_helpers import make_client, write_untrained_run

from ganplug import fastpath, ops
from ganplug.checkpoint import load_generator
from ganplug.cli.app import main
from ganplug.device import make_runtime

CHUNK = 4
LEVELS = 2  # a few uint8 levels: the same image (issue 15)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compile")
    write_untrained_run(root / "dc", size=32, channels=3, base_channels=8, z_dim=16)
    write_untrained_run(root / "st", arch="stylegan", size=32, z_dim=16, w_dim=16, mapping_layers=2,
                        capacity=0.05, channel_max=32)
    return root


@pytest.fixture(scope="module")
def compiled(runs):
    with make_client(models=(runs,), compile=True, chunk=CHUNK, batch_wait_ms=0) as c:
        yield c


def _eager(runs, name: str, seeds: list[int], **opts) -> np.ndarray:
    rt = make_runtime("cpu", "fp32")
    model = load_generator(runs / name)
    rt.prepare_module(model.G)
    return ops.generate(model, rt, seeds, batch_size=CHUNK, **opts).images.permute(0, 2, 3, 1).numpy()


def _images(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(im["png"])))) for im in
                     response.json()["images"]])


def _diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.mark.parametrize("name", ["dc", "st"])
def test_compiled_server_draws_each_seed_within_a_few_levels_and_says_how_far(compiled, runs, name):
    seeds = [0, 1, 2, 3, 4, 5, 6]  # a full chunk of 4 and a padded one of 3
    server = compiled.app.state.server
    got = _images(compiled.post("/v1/generate", json={"model": name, "seeds": seeds, "truncation": 0.7}))
    model = server.cache.get(server.catalog.resolve(name))
    assert model.fast is not None and model.fast.sizes == (1, CHUNK)
    assert _diff(got, _eager(runs, name, seeds, truncation=0.7)) <= LEVELS
    one = _images(compiled.post("/v1/generate", json={"model": name, "seeds": [3], "truncation": 0.7}))
    assert _diff(one[0], got[3]) <= LEVELS  # the size-1 pass draws the same seed
    info = next(m for m in compiled.get("/v1/models").json()["models"] if m["name"] == name)
    assert info["compiled"]["batch_sizes"] == [1, CHUNK] and not info["compiled"]["cuda_graphs"]
    assert 0 <= info["compiled"]["max_diff_vs_fp32"] <= LEVELS


def test_new_truncation_values_do_not_compile_again(compiled, runs):
    server = compiled.app.state.server
    compiled.post("/v1/generate", json={"model": "dc", "seeds": [1, 2]})  # loaded and compiled
    model = server.cache.get(server.catalog.resolve("dc"))
    calls = []
    inner = model.fast.fn
    model.fast.fn = lambda x: calls.append(len(x)) or inner(x)
    before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert before > 0  # the counter counts this process's traces, the load's among them
    try:
        for psi in (0.31, 0.55, 0.9, 1.0):
            got = _images(compiled.post("/v1/generate", json={"model": "dc", "seeds": [8, 9], "truncation": psi}))
            assert _diff(got, _eager(runs, "dc", [8, 9], truncation=psi)) <= LEVELS
    finally:
        model.fast.fn = inner
    assert calls == [CHUNK] * 4  # the compiled pass ran, padded to its size...
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == before  # ...and traced nothing new


def test_tileable_and_gradient_passes_stay_eager(compiled, runs):
    server = compiled.app.state.server
    compiled.post("/v1/generate", json={"model": "dc", "seeds": [1]})
    model = server.cache.get(server.catalog.resolve("dc"))
    calls = []
    inner = model.fast.fn
    model.fast.fn = lambda x: calls.append(len(x)) or inner(x)
    try:
        got = _images(compiled.post("/v1/generate", json={"model": "dc", "seeds": [4, 5], "tileable": True}))
        z = torch.randn(2, model.spec.z_dim, requires_grad=True)
        model.fast(z).sum().backward()  # a projection's pass: gradients reach z through the eager network
    finally:
        model.fast.fn = inner
    assert calls == [] and z.grad is not None and z.grad.abs().sum() > 0
    assert np.array_equal(got, _eager(runs, "dc", [4, 5], tileable=True))  # eager: bit for bit


def test_a_pass_dynamo_would_not_trace_is_reported_not_assumed(runs, monkeypatch):
    """Past dynamo's trace limit the "compiled" pass silently runs eagerly; warm_up must say so."""
    model = load_generator(runs / "dc")
    rt = make_runtime("cpu", "fp32")
    fast = fastpath.compile_pass(model, (1, 2))
    assert torch._dynamo.config.recompile_limit >= fastpath.RECOMPILE_LIMIT  # room for many models
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 0)
    done = fastpath.warm_up(model, rt, fast)
    assert not done.traced and done.max_diff == 0  # eager against eager


def test_image_to_image_models_are_refused_by_the_compiler(tmp_path):
    write_untrained_run(tmp_path / "p2p", arch="pix2pix", size=32, base_channels=4)
    model = load_generator(tmp_path / "p2p")
    with pytest.raises(Exception, match="image-to-image"):
        fastpath.compile_pass(model, (1,))


def test_cuda_graphs_without_cuda_or_without_compile_exit_2(tmp_path, capsys, tiny_run):
    for args, said in ((["--compile", "--cuda-graphs", "--device", "cpu"], "--cuda-graphs needs a CUDA device"),
                       (["--cuda-graphs", "--device", "cpu"], "--cuda-graphs replays compiled passes")):
        assert main(["serve", "--models", str(tiny_run), "--port", "0", *args]) == 2
        captured = capsys.readouterr()
        assert said in captured.out + captured.err
