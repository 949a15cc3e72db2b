"""A generator's pass compiled with torch.compile at fixed batch sizes: `ganplug serve --compile`.

Why fixed sizes: every new input shape compiles again (tens of seconds on a CPU, docs/benchmarks.md), so
the pass pads a chunk to the smallest of a few sizes that holds it and compiles each size once, when the
model is loaded. Padding rows cost compute but change no other row: the families' eval-mode passes are
per sample.

Why truncation stays outside the graph: dynamo specialises Python floats, so a truncation inside would
compile anew for every slider value. The compiled part is what follows it: the whole network for z-only
families (they truncate by scaling z, as ops says) and the synthesis network, with constant noise, for
style-based ones (truncation happens in the mapping, which stays eager and costs little).

Every model compiles the same two small functions below, and dynamo keeps at most `recompile_limit` (8)
traces per function, whichever model they came from: a server with more models would quietly fall back to
eager. So the limit is raised (to 64: 32 model loads at two sizes) and `warm_up` checks that its pass was
traced, else the server says it serves that model eagerly.

CUDA graphs (`--cuda-graphs`, CUDA only) replay a captured pass; its outputs live in memory the next
replay overwrites, so each output is cloned before it is handed on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ganplug import tiling
from ganplug.checkpoint import LoadedModel
from ganplug.device import Runtime
from ganplug.errors import UserError
from ganplug.sampling import to_uint8, z_from_seeds

RECOMPILE_LIMIT = 64


@dataclass
class CompiledPass:
    """Latent batch (truncated z, or w for style-based models) -> [-1, 1] images, compiled per size."""

    fn: Callable[[Tensor], Tensor]
    eager: Callable[[Tensor], Tensor]  # the same pass uncompiled: for tileable images and for gradients
    sizes: tuple[int, ...]  # ascending
    cuda_graphs: bool = False

    def __call__(self, x: Tensor) -> Tensor:
        if tiling.is_active() or torch.is_grad_enabled():
            return self.eager(x)
        largest = self.sizes[-1]
        if len(x) > largest:
            return torch.cat([self(x[i : i + largest]) for i in range(0, len(x), largest)])
        n = len(x)
        size = next(s for s in self.sizes if s >= n)
        if size > n:
            x = torch.cat([x, x.new_zeros((size - n, *x.shape[1:]))])
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = self.fn(x)[:n]
        return out.clone() if self.cuda_graphs else out


def compile_pass(model: LoadedModel, sizes: Sequence[int], cuda_graphs: bool = False) -> CompiledPass:
    """The model's compiled pass (not yet run: `warm_up` compiles it). Image-to-image models are refused:
    their input is an uploaded image of any size, which no fixed shape fits."""
    if model.spec.image_to_image:
        raise UserError(f"{model.path.name} is an image-to-image ({model.spec.arch}) model; --compile covers "
                        "generators driven by a latent.")
    G = model.G
    if model.spec.style_based:
        def net(ws: Tensor) -> Tensor:
            return G.synthesis(ws, noise_mode="const")
    else:
        def net(z: Tensor) -> Tensor:
            return G(z)
    import torch._dynamo  # here, not at the top: importing dynamo costs every CLI command a second

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    fn = torch.compile(net, dynamic=False, mode="reduce-overhead" if cuda_graphs else None)
    return CompiledPass(fn, net, tuple(sorted(set(int(s) for s in sizes))), cuda_graphs)


def latents(model: LoadedModel, z: Tensor, truncation: float) -> Tensor:
    """What the compiled pass takes for these z: the truncated z, or the mapping's truncated w."""
    if model.spec.style_based:
        return model.G.mapping(z, truncation=truncation)
    return z * truncation if truncation != 1.0 else z


@dataclass
class WarmUp:
    seconds: float
    max_diff: int  # largest uint8 difference from the eager fp32 images of the same probe seeds
    traced: bool  # False: dynamo ran the pass eagerly (its trace limit was reached), nothing was compiled


def _traces() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def warm_up(model: LoadedModel, runtime: Runtime, fast: CompiledPass, probe_seeds: int = 4) -> WarmUp:
    """Compile every size now (so no request waits for it) and measure the pixels against eager fp32."""
    t0, traces = time.perf_counter(), _traces()
    z = z_from_seeds(list(range(max(fast.sizes[-1], probe_seeds))), model.spec.z_dim).to(runtime.device)
    with torch.no_grad():
        with runtime.autocast():
            for size in fast.sizes:
                fast(latents(model, z[:size], 1.0))
            compiled = to_uint8(fast(latents(model, z[:probe_seeds], 1.0))).cpu()
        seconds = time.perf_counter() - t0
        eager = to_uint8(model.G(z[:probe_seeds])).cpu()  # no autocast: the fp32 reference
    return WarmUp(seconds, int((compiled.int() - eager.int()).abs().max()), _traces() > traces)
