"""What torch.compile would cost and give a CPU server: first-call compile time, the recompile a new
truncation value triggers, and the steady-state forward against eager, per family (docs/benchmarks.md).

    OMP_NUM_THREADS=2 .venv/bin/python scripts/compile_cost.py --arch fastgan,dcgan --size 64 --batch 1,16

Why a script and not a server option: on a CPU the answer decides whether `ganplug serve` compiles at all.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ganplug.device import make_runtime
from ganplug.models import build_models, config_from_dict
from ganplug.sampling import to_uint8

WIDTHS = {"fastgan": {"capacity": 0.25}, "dcgan": {}, "stylegan": {"capacity": 0.25, "mapping_layers": 2}}


def _timed(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def measure(arch: str, size: int, batches: list[int], precision: str, iters: int) -> list[str]:
    rt = make_runtime("cpu", precision, True)
    torch.manual_seed(0)
    G, _, _ = build_models(arch, config_from_dict(arch, {"size": size, "channels": 3, **WIDTHS[arch]}))
    rt.prepare_module(G)
    G.eval().requires_grad_(False)
    compiled = torch.compile(G, dynamic=False)
    rows = []
    for batch in batches:
        z = torch.randn(batch, G.spec.z_dim, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode(), rt.autocast():
            first = _timed(compiled, z, truncation=1.0)
            new_psi = _timed(compiled, z, truncation=0.7)
            eager = statistics.median(_timed(G, z, truncation=0.7) for _ in range(iters))
            fast = statistics.median(_timed(compiled, z, truncation=0.7) for _ in range(iters))
            diff = (to_uint8(G(z, truncation=0.7)).int() - to_uint8(compiled(z, truncation=0.7)).int()).abs().max()
        rows.append(f"| {arch} | {size} | {rt.precision} | {batch} | {first:.1f} s | {new_psi:.1f} s | "
                    f"{eager * 1e3:.1f} ms | {fast * 1e3:.1f} ms | {eager / fast:.2f}x | {int(diff)} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="fastgan,dcgan")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", default="1,16")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    print("| family | size | precision | batch | first call (compile) | new truncation (recompile) | eager | "
          "compiled | speed-up | max uint8 diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for arch in a.arch.split(","):
        for row in measure(arch, a.size, [int(b) for b in a.batch.split(",")], a.precision, a.iters):
            print(row, flush=True)


if __name__ == "__main__":
    main()
