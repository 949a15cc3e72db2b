"""Model discovery by name and the LRU model cache with a memory budget."""

from __future__ import annotations

import shutil
import threading

from serve_helpers import write_untrained_run

from ganplug.checkpoint import load_generator
from ganplug.serve.catalog import ModelCache, ModelCatalog, module_bytes


def test_catalog_finds_runs_files_and_skips_the_rest(model_dir, tiny_run, tmp_path):
    ckpt = tmp_path / "loose.safetensors"
    shutil.copy(next((model_dir / "rgb32" / "checkpoints").glob("step-*.safetensors")), ckpt)
    (tmp_path / "broken.safetensors").write_bytes(b"garbage")
    cat = ModelCatalog((model_dir, tiny_run, tmp_path))
    entries = cat.scan()
    assert list(entries) == ["rgb32", "rgba32", "tiny", "loose"]
    assert entries["rgba32"].spec.channels == 4 and entries["tiny"].spec.size == 32
    assert any("broken.safetensors" in p for p in cat.problems)
    twice = ModelCatalog((model_dir / "rgb32", model_dir / "rgb32")).scan()
    assert list(twice) == ["rgb32", "rgb32-2"]


def test_a_run_serves_its_newest_checkpoint(tmp_path):
    run = tmp_path / "growing"
    write_untrained_run(run, step=1, size=32, base_channels=8, z_dim=16)
    cat = ModelCatalog((run,))
    assert cat.resolve("growing").step == 1
    write_untrained_run(run, step=2, size=32, base_channels=8, z_dim=16)
    assert cat.resolve("growing").step == 2


def test_cache_is_lru_within_its_memory_budget(model_dir):
    entries = ModelCatalog((model_dir,)).scan()
    a, b = entries["rgb32"], entries["rgba32"]
    size = module_bytes(load_generator(a.path).G)
    cache = ModelCache(lambda e: load_generator(e.path), budget_bytes=int(size * 1.5))
    ga = cache.get(a)
    assert cache.get(a) is ga and cache.loads == 1
    cache.get(b)  # over budget: a (least recently used) goes
    assert not cache.is_loaded(a) and cache.is_loaded(b)
    cache.get(a)
    assert cache.loads == 3
    roomy = ModelCache(lambda e: load_generator(e.path), budget_bytes=size * 10)
    roomy.get(a), roomy.get(b), roomy.get(a)
    assert roomy.loads == 2 and roomy.is_loaded(a) and roomy.is_loaded(b)


def test_concurrent_requests_load_a_model_once(model_dir):
    entry = ModelCatalog((model_dir,)).resolve("rgb32")
    calls = []
    gate = threading.Event()

    def slow_load(e):
        calls.append(e.name)
        gate.wait(2)
        return load_generator(e.path)

    cache = ModelCache(slow_load, budget_bytes=1 << 30)
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(entry))) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert calls == ["rgb32"] and len({id(g) for g in got}) == 1
