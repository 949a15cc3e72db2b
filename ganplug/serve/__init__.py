"""The local generation server (`ganplug serve`): `create_app(settings)` and `run_server(settings)`."""

from __future__ import annotations

import socket
from collections.abc import Callable

from ganplug.errors import UserError
from ganplug.serve.settings import ServeSettings


def create_app(settings: ServeSettings):
    from ganplug.serve.app import create_app as _create

    return _create(settings)


def batching_line(server) -> str:
    """What --batch-wait-ms does on this device and precision: said at start, never silently nothing."""
    rt = server.runtime
    if server.batcher is not None:
        return f"micro-batching: on (concurrent generate requests wait up to {server.settings.batch_wait_ms:g} ms)"
    if server.settings.batch_wait_ms == 0:
        return "micro-batching: off (--batch-wait-ms 0)"
    return (f"micro-batching: off on {rt.device.type} in {rt.precision}: a shared pass could change some pixels "
            "there (docs/serving.md); requests run one by one")


def run_server(settings: ServeSettings, echo: Callable[[str], None] = print) -> None:
    """Validate, check the port is free, then serve until Ctrl-C."""
    import uvicorn

    settings.validate()
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as e:
            raise UserError(f"cannot listen on {settings.host}:{settings.port} ({e.strerror}); another program "
                            "(or another ganplug serve) uses it: pick another --port.") from None
    app = create_app(settings)
    names = ", ".join(app.state.server.catalog.entries()) or "none yet"
    for problem in app.state.server.catalog.problems:
        echo(f"skipped: {problem}")
    shown = "localhost" if settings.host in ("127.0.0.1", "::1") else settings.host
    echo(f"ganplug serve: models {names}")
    echo(batching_line(app.state.server))
    if settings.compile:
        echo("compile: on; each model compiles when first used (about a minute per batch size on a CPU), "
             "then serves from the compiled pass" + (" with CUDA graphs" if settings.cuda_graphs else ""))
    echo(f"open http://{shown}:{settings.port}/ (API under /v1, schema at /docs); Ctrl-C stops.")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)


__all__ = ["ServeSettings", "create_app", "run_server"]
