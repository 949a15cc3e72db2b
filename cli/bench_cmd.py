"""`ganplug bench`: generation throughput of a checkpoint (or an untrained family) on this device."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ganplug.errors import UserError


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"{option} {text!r}: give whole numbers separated by commas, e.g. 1,8,64.") from None
    if not values or min(values) < 1:
        raise UserError(f"{option} {text!r}: every batch must be at least 1.")
    return values


def bench(
    ckpt: Path = typer.Argument(None, help="Run folder or checkpoint (or leave out and give --arch)."),
    arch: str = typer.Option(None, help="Benchmark an untrained generator of this family instead of a checkpoint "
                             "(throughput does not depend on the weights)."),
    size: int = typer.Option(64, min=8, help="With --arch: image size in pixels."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    batch: str = typer.Option("1,8,64", help="Batch sizes, comma separated."),
    precision: str = typer.Option("fp32,bf16", help="Precisions, comma separated: fp32, bf16, fp16."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the generator (minutes on the first run)."),
    cuda_graphs: bool = typer.Option(False, "--cuda-graphs", help="torch.compile with CUDA graphs (CUDA only)."),
    warmup: int = typer.Option(3, min=0, help="Untimed calls before timing."),
    iters: int = typer.Option(10, min=1, help="Timed calls; the median is reported."),
    json_out: Path = typer.Option(None, "--json", help="Also write the rows as JSON here."),
) -> None:
    """Images/s, ms per batch, peak memory, GFLOP/image, TFLOP/s against the device's matmul rate, the rate
    to PNG bytes, and the uint8 difference from fp32, for each precision and batch."""
    import torch

    from ganplug.device import resolve_device
    from ganplug.eval.bench import bench_generator, format_table, rows_as_json

    if (ckpt is None) == (arch is None):
        raise UserError("give a checkpoint (CKPT) or --arch NAME, not both and not neither.")
    batches = _ints(batch, "--batch")
    precisions = tuple(p.strip() for p in precision.split(",") if p.strip())
    dev = resolve_device(device)
    if ckpt is not None:
        from ganplug.checkpoint import load_generator

        model = load_generator(ckpt, device=dev)
        G, spec = model.G, model.spec
        in_channels = int(model.meta["model"].get("in_channels", 3))
        label = str(model.path)
    else:
        from ganplug.models import build_models, config_from_dict

        cfg = config_from_dict(arch, {"size": size})
        G, _, spec = build_models(arch, cfg)
        in_channels = int(getattr(cfg, "in_channels", 3))
        label = f"untrained {arch} at {size} px"
    in_shape = (in_channels, spec.size, spec.size) if spec.image_to_image else (spec.z_dim,)
    rows, facts = bench_generator(G, in_shape, device=str(dev), batches=batches, precisions=precisions,
                                  compile=compile, cuda_graphs=cuda_graphs, warmup=warmup, iters=iters)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
    typer.echo(f"{label}\n" + format_table(rows, facts, name))
    if json_out is not None:
        from ganplug.atomic import atomic_write_text

        atomic_write_text(json_out, json.dumps(rows_as_json(rows, facts, name), indent=2))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
