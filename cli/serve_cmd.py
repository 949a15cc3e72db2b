"""`ganplug serve`: the local generation server for the Krita plugin, the Blender add-on and the web page."""

from __future__ import annotations

from pathlib import Path

import typer

from ganplug.cli import validate as v


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        models: list[Path] = typer.Option([], "--models", "-m",
                                          help="Run folder, checkpoint file, or folder of runs (repeatable)."),
        host: str = typer.Option("127.0.0.1", help="Address to listen on; non-loopback needs --token."),
        port: int = typer.Option(8765, min=0, max=65535, help="TCP port."),
        token: str = typer.Option(None, envvar="GANPLUG_TOKEN",
                                  help="Secret every request must carry (or set GANPLUG_TOKEN)."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
        precision: str = typer.Option("auto", help="auto, fp32, bf16 or fp16."),
        workers: int = typer.Option(1, min=1, help="Generation threads."),
        memory_budget_mb: int = typer.Option(2048, min=1,
                                             help="Loaded models beyond this are unloaded, oldest use first."),
        max_batch: int = typer.Option(64, min=1, help="Most images per request."),
        max_side: int = typer.Option(2048, min=1, help="Largest output width/height."),
        batch_wait_ms: float = typer.Option(5.0, min=0, max=1000,
                                            help="Micro-batching: ms a generate request waits for concurrent "
                                                 "ones (same model and options) to share its forward pass; "
                                                 "0 turns batching off."),
        compile: bool = typer.Option(False, "--compile",
                                     help="torch.compile each generator when first used, for batch sizes 1 and 8: "
                                          "about a minute per size on a CPU, then up to 2x faster (fastgan); "
                                          "image-to-image models stay eager."),
        cuda_graphs: bool = typer.Option(False, "--cuda-graphs", help="With --compile on CUDA: replay CUDA graphs."),
        max_upload_mb: float = typer.Option(8.0, callback=v.upload_mb, help="Largest request body (uploads) in MiB."),
    ) -> None:
        """Serve your models over HTTP (API under /v1, a web page at /) for Krita, Blender and browsers."""
        from ganplug.extras import require

        for module in ("fastapi", "uvicorn"):
            require(module, "serve", "ganplug serve")
        from ganplug.serve import ServeSettings, run_server

        settings = ServeSettings(
            models=tuple(models), host=host, port=port, token=token, device=device, precision=precision,
            workers=workers, memory_budget_mb=memory_budget_mb, max_batch=max_batch, max_side=max_side,
            max_upload_bytes=int(max_upload_mb * (1 << 20)), batch_wait_ms=batch_wait_ms,
            compile=compile, cuda_graphs=cuda_graphs,
        )
        run_server(settings, echo=typer.echo)
