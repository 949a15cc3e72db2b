"""`ganplug bench`: how fast a generator turns latents into images, and how close that is to the device.

For each (precision, batch) it reports images/s and the median milliseconds per batch after warm-up
(CUDA events on CUDA), peak memory, the generator's GFLOP per image (counted by torch's flop counter,
a multiply-add = 2), the achieved TFLOP/s and its ratio to the device's own measured matmul rate (the
roofline this code can be held to), the end-to-end rate to PNG bytes beside the forward-only rate, and
how far the outputs are from fp32's in uint8 levels (a few levels is fine, another image is not).
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from PIL import Image

from ganplug.device import make_runtime
from ganplug.errors import UserError
from ganplug.sampling import to_uint8

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class BenchRow:
    precision: str
    batch: int
    compiled: str  # "", "compile" or "compile+cudagraphs"
    ms_per_batch: float | None = None
    images_per_s: float | None = None
    end_to_end_images_per_s: float | None = None  # forward + uint8 on the host + PNG bytes
    peak_memory_mb: float | None = None
    gflop_per_image: float | None = None
    tflops: float | None = None
    roofline: float | None = None  # achieved / measured matmul rate at this precision
    max_abs_diff_uint8: int | None = None  # against fp32, same latents
    error: str = ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Median wall time of `fn` after `warmup` calls; CUDA events on CUDA (no host-side jitter)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def gflop_per_image(G: torch.nn.Module, in_shape: tuple[int, ...], device: torch.device) -> float:
    """Forward GFLOP of one image, counted (multiply and add separately) on `device` in fp32."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        G(torch.randn(1, *in_shape, device=device))
    return counter.get_total_flops() / 1e9


def matmul_flops(device: torch.device, precision: str, n: int | None = None, iters: int = 5) -> float:
    """The device's measured dense matmul rate (FLOP/s) at a precision: the ceiling for a generator."""
    n = n or (8192 if device.type == "cuda" else 1024)
    dtype = _DTYPES[precision]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sec = median_seconds(lambda: a @ b, device, warmup=2, iters=iters)
    return 2 * n**3 / sec


def _peak_memory_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:  # the process's resident high-water mark: an upper bound on CPU, where torch keeps no tally
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def _png_bytes(images: torch.Tensor) -> int:
    total = 0
    for img in images.permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(buf, format="PNG", compress_level=1)
        total += buf.tell()
    return total


def bench_generator(G: torch.nn.Module, in_shape: tuple[int, ...], *, device: str = "cpu",
                    batches: tuple[int, ...] = (1, 8, 64), precisions: tuple[str, ...] = ("fp32", "bf16"),
                    compile: bool = False, cuda_graphs: bool = False, warmup: int = 3,
                    iters: int = 10) -> tuple[list[BenchRow], dict[str, float]]:
    """One row per (precision, batch), and the device facts (matmul rate per precision, GFLOP/image).
    `in_shape` is one input's shape: (z_dim,) for a latent-driven generator, (C, H, W) for a translator."""
    dev = torch.device(device)
    if cuda_graphs and dev.type != "cuda":
        raise UserError("--cuda-graphs needs --device cuda: CUDA graphs replay recorded GPU kernels.")
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise UserError(f"--precision {','.join(bad)}: choose from {', '.join(PRECISIONS)}.")
    G = G.to(dev).eval().requires_grad_(False)
    gflop = gflop_per_image(G, in_shape, dev)
    facts: dict[str, float] = {"gflop_per_image": gflop}
    mode = "compile+cudagraphs" if cuda_graphs else ("compile" if compile else "")
    reference: dict[int, torch.Tensor] = {}
    rows = []
    for precision in precisions:
        try:
            rate = matmul_flops(dev, precision)
            facts[f"matmul_tflops_{precision}"] = rate / 1e12
        except RuntimeError as e:
            rows += [BenchRow(precision, b, mode, error=f"{type(e).__name__}: {e}"[:160]) for b in batches]
            continue
        for batch in batches:
            rows.append(_bench_one(G, in_shape, dev, precision, batch, mode, rate, gflop, reference, warmup, iters))
    return rows, facts


def _bench_one(G, in_shape, dev, precision, batch, mode, rate, gflop, reference, warmup, iters) -> BenchRow:
    row = BenchRow(precision, batch, mode, gflop_per_image=gflop)
    try:
        rt = make_runtime(str(dev), precision, channels_last=True)
        model = rt.prepare_module(G)
        forward = torch.compile(model, mode="reduce-overhead" if "cudagraphs" in mode else "default") if mode else model
        z = torch.randn(batch, *in_shape, generator=torch.Generator().manual_seed(batch)).to(dev)

        def run() -> torch.Tensor:
            with torch.inference_mode(), rt.autocast():
                return forward(z)

        def to_png() -> int:
            return _png_bytes(to_uint8(run()).cpu())

        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        sec = median_seconds(run, dev, warmup, iters)
        row.peak_memory_mb = _peak_memory_mb(dev)
        e2e = median_seconds(to_png, dev, 1, max(1, iters // 2))
    except (RuntimeError, UserError, ValueError) as e:  # a precision or compiler this machine lacks: a row
        row.error = f"{type(e).__name__}: {e}"[:160]
        return row
    row.ms_per_batch, row.images_per_s, row.end_to_end_images_per_s = 1000 * sec, batch / sec, batch / e2e
    row.tflops = gflop * row.images_per_s / 1000
    row.roofline = row.tflops * 1e12 / rate
    out = to_uint8(run()).cpu().to(torch.int16)
    if precision == "fp32" and batch not in reference:
        reference[batch] = out
    if batch in reference:
        row.max_abs_diff_uint8 = int((out - reference[batch]).abs().max())
    return row


def format_table(rows: list[BenchRow], facts: dict[str, float], device_name: str) -> str:
    """A markdown table, as docs/benchmarks.md records it."""
    rates = ", ".join(f"{k.removeprefix('matmul_tflops_')} {v:.2f}" for k, v in facts.items()
                      if k.startswith("matmul_tflops_"))
    lines = [f"device: {device_name}; torch {torch.__version__}; generator {facts['gflop_per_image']:.3f} GFLOP/image; "
             f"measured matmul TFLOP/s: {rates}", "",
             "| precision | mode | batch | ms/batch | images/s | to PNG images/s | peak MB | TFLOP/s | of matmul "
             "| max diff vs fp32 |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def f(x: float | None, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    for r in rows:
        if r.error:
            lines.append(f"| {r.precision} | {r.compiled or 'eager'} | {r.batch} | failed: {r.error} | | | | | | |")
            continue
        lines.append(f"| {r.precision} | {r.compiled or 'eager'} | {r.batch} | {f(r.ms_per_batch, '.2f')} | "
                     f"{f(r.images_per_s, ',.1f')} | {f(r.end_to_end_images_per_s, ',.1f')} | "
                     f"{f(r.peak_memory_mb, ',.0f')} | {f(r.tflops, '.3f')} | {f(r.roofline, '.1%')} | "
                     f"{'-' if r.max_abs_diff_uint8 is None else r.max_abs_diff_uint8} |")
    return "\n".join(lines)


def rows_as_json(rows: list[BenchRow], facts: dict[str, float], device_name: str) -> dict:
    return {"schema": "ganplug-bench/1", "device": device_name, "torch": torch.__version__, "facts": facts,
            "rows": [asdict(r) for r in rows]}
