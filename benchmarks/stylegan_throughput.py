"""StyleGAN generator throughput against issue 6's NVlabs anchor; prints a markdown table.

    python benchmarks/stylegan_throughput.py                      # CUDA if visible: the issue's figures
    python benchmarks/stylegan_throughput.py --device cpu --size 64 --batches 8,1 --iters 3

The anchor is stylegan2-ada-pytorch's generator in the paper256 configuration (24.8 M parameters) on an
H100 with torch 2.11, running its reference (non-custom-op) path: 966 images/s at batch 64, 31.7 at
batch 1, 2.95 GB at batch 64. The goal is 2x that at batch 64 and under 10 ms per image at batch 1.
ganplug's generator is pure PyTorch; the variants tried are plain fp32, bf16 autocast + channels_last,
the same under torch.compile, and (CUDA only) torch.compile's CUDA-graph mode, which removes the
per-kernel launch cost that dominates at batch 1.

`--train-memory` adds the peak memory of a full training step (D and G updates, ADA) at 256 px and
batch 16 for a few capacities: the issue asks that 256 px fit in 6 GB at batch 16.
Record the output in docs/benchmarks.md with the device name it prints.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from ganplug.device import make_runtime
from ganplug.models.stylegan import StyleGANConfig, build

ANCHOR = {64: 966.0, 1: 31.7}  # NVlabs images/s on an H100 (issue 6)
ANCHOR_MEMORY_GB = 2.95  # at batch 64


def gflop_per_image(G: torch.nn.Module, z_dim: int, device: torch.device) -> float:
    """Forward FLOPs of one image (multiply and add counted separately), from torch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        G(torch.randn(1, z_dim, device=device))
    return counter.get_total_flops() / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], torch.Tensor], device: torch.device, warmup: int, iters: int) -> float:
    """Median seconds per call after `warmup` calls (compilation and autotuning happen there)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def variants(device: torch.device) -> list[tuple[str, str, bool, str | None]]:
    """(name, precision, channels_last, torch.compile mode or None)."""
    out = [("fp32", "fp32", False, None), ("bf16+cl", "bf16", True, None), ("bf16+cl+compile", "bf16", True, "default")]
    if device.type == "cuda":
        out.append(("bf16+cl+compile+cudagraphs", "bf16", True, "reduce-overhead"))
    return out


def generator_rows(args: argparse.Namespace) -> list[dict]:
    rows = []
    for name, precision, channels_last, compile_mode in variants(torch.device(args.device)):
        if args.variants and name not in args.variants:
            continue
        rt = make_runtime(args.device, precision, channels_last)
        torch.manual_seed(0)
        G, _ = build(StyleGANConfig(size=args.size, capacity=args.capacity))
        G = rt.prepare_module(G.eval().requires_grad_(False))
        forward = torch.compile(G, mode=compile_mode) if compile_mode else G
        for batch in args.batches:
            z = torch.randn(batch, G.z_dim, device=rt.device)

            def run(forward=forward, z=z, rt=rt):
                with torch.inference_mode(), rt.autocast():
                    return forward(z)

            if rt.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(rt.device)
            try:
                sec = time_call(run, rt.device, args.warmup, args.iters)
            except Exception as e:  # a compile backend missing on this machine is a row, not a crash
                rows.append({"variant": name, "batch": batch, "error": f"{type(e).__name__}: {e}"[:120]})
                continue
            peak = torch.cuda.max_memory_allocated(rt.device) / 1e9 if rt.device.type == "cuda" else None
            rows.append({"variant": name, "batch": batch, "images_per_s": batch / sec,
                         "ms_per_image": 1000 * sec / batch, "peak_gb": peak})
    return rows


def train_memory_rows(args: argparse.Namespace) -> list[dict]:
    """Peak CUDA memory of one StyleGAN training step at 256 px, batch 16, bf16 + channels_last."""
    from ganplug.train.config import TrainConfig
    from ganplug.train.stylegan_loss import StyleGANStep

    rows = []
    for capacity in (0.5, 1.0):
        rt = make_runtime(args.device, "bf16", True)
        torch.manual_seed(0)
        G, D = (rt.prepare_module(m) for m in build(StyleGANConfig(size=256, capacity=capacity)))
        cfg = TrainConfig(data="", out="", arch="stylegan", size=256, batch=16, lr_g=0.0025, lr_d=0.0025,
                          beta1=0.0, beta2=0.99, aug="ada", precision="bf16", channels_last=True)
        opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(0.0, 0.99))
        opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(0.0, 0.99))
        step = StyleGANStep(G, D, opt_G, opt_D, cfg, rt)
        real = rt.prepare_images(torch.rand(16, 3, 256, 256) * 2 - 1)
        batch = lambda real=real: real  # noqa: E731 - the step asks for a callable that yields the batch
        if rt.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(rt.device)
        for k in range(17):  # includes one lazy R1 step (every 16th)
            step(batch, k)
        _sync(rt.device)
        peak = torch.cuda.max_memory_allocated(rt.device) / 1e9 if rt.device.type == "cuda" else None
        rows.append({"capacity": capacity, "peak_gb": peak})
        del G, D, opt_G, opt_D, step
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--capacity", type=float, default=1.0)
    p.add_argument("--batches", default="64,1", type=lambda s: [int(b) for b in s.split(",")])
    p.add_argument("--variants", default="", type=lambda s: [v for v in s.split(",") if v])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--train-memory", action="store_true")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    G, _ = build(StyleGANConfig(size=args.size, capacity=args.capacity))
    G.requires_grad_(False)
    params = sum(p.numel() for p in G.parameters()) / 1e6
    print(f"device: {name}; torch {torch.__version__}; StyleGAN G {args.size} px, capacity {args.capacity}: "
          f"{params:.1f} M parameters, {gflop_per_image(G, G.z_dim, torch.device('cpu')):.1f} GFLOP per image\n")
    print("| variant | batch | images/s | ms/image | peak GB | vs anchor |")
    print("|---|---|---|---|---|---|")
    for batch, ips in ANCHOR.items():
        if batch in args.batches and args.size == 256 and args.capacity == 1.0:
            mem = f"{ANCHOR_MEMORY_GB:.2f}" if batch == 64 else "-"
            print(f"| NVlabs stylegan2-ada (H100, issue 6) | {batch} | {ips:.1f} | {1000 / ips:.2f} | {mem} | 1.00x |")
    for r in generator_rows(args):
        if "error" in r:
            print(f"| {r['variant']} | {r['batch']} | failed: {r['error']} | | | |")
            continue
        anchor = ANCHOR.get(r["batch"]) if args.size == 256 and args.capacity == 1.0 else None
        ratio = f"{r['images_per_s'] / anchor:.2f}x" if anchor else "-"
        peak = f"{r['peak_gb']:.2f}" if r["peak_gb"] is not None else "-"
        print(f"| {r['variant']} | {r['batch']} | {r['images_per_s']:.1f} | {r['ms_per_image']:.2f} | {peak} "
              f"| {ratio} |")
    if args.train_memory:
        print("\n| training step, 256 px, batch 16, bf16 | peak GB |\n|---|---|")
        for r in train_memory_rows(args):
            peak = f"{r['peak_gb']:.2f}" if r["peak_gb"] is not None else "- (CPU)"
            print(f"| capacity {r['capacity']} | {peak} |")


if __name__ == "__main__":
    main()
