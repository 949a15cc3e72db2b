"""Server settings: one frozen dataclass, checked before anything binds a socket."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from ganplug.errors import UserError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeSettings:
    models: tuple[Path, ...] = ()  # run folders, checkpoint files, or folders holding either
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None  # when set, every request must carry it
    device: str = "auto"
    precision: str = "auto"
    workers: int = 1  # generation threads; the event loop stays free for health, polling and cancel
    memory_budget_mb: int = 2048  # loaded models beyond this are evicted, least recently used first
    max_batch: int = 64  # images per request
    max_frames: int = 120  # interpolation frames per request
    max_side: int = 2048  # output width/height
    max_upload_bytes: int = 8 << 20  # request body size
    max_upload_pixels: int = 4096 * 4096  # decoded pixels of an uploaded image
    chunk: int = 8  # images per generator call: the granularity of progress and cancel
    batch_wait_ms: float = 5.0  # micro-batching: how long a generate request waits for others to share its pass
    compile: bool = False  # torch.compile each latent-driven generator at load, for batch sizes 1 and `chunk`
    cuda_graphs: bool = False  # with compile, replay captured CUDA graphs (CUDA only)
    jobs_kept: int = 64  # finished jobs remembered for polling
    max_jobs: int = 16  # jobs queued or running at once; more are answered 429 with Retry-After
    allowed_hosts: tuple[str, ...] = field(default=())  # Host headers accepted; () = derived from `host`

    def validate(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise UserError(
                f"refusing to listen on {self.host}: it is reachable from other machines and no --token is set. "
                "Bind to 127.0.0.1 (the default) or pass --token SECRET (every request then needs it)."
            )
        if self.token is not None and len(self.token) < 8:
            raise UserError("--token must be at least 8 characters long.")
        if not 0 <= self.port <= 65535:
            raise UserError(f"--port {self.port} is not a TCP port (0-65535).")
        for name in ("workers", "memory_budget_mb", "max_batch", "max_frames", "max_side", "max_upload_bytes",
                     "max_upload_pixels", "chunk", "jobs_kept", "max_jobs"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, not {getattr(self, name)}.")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise UserError(f"--batch-wait-ms must be between 0 (no batching) and 1000, not {self.batch_wait_ms}.")
        if self.cuda_graphs and not self.compile:
            raise UserError("--cuda-graphs replays compiled passes: it needs --compile too.")
        for p in self.models:
            if not Path(p).exists():
                raise UserError(f"--models {p}: no such file or folder; give a run folder, a checkpoint, "
                                "or a folder of runs.")

    @property
    def frame_limit(self) -> int:
        """Interpolation frames per request: frames are images, so --max-batch bounds them too."""
        return min(self.max_frames, self.max_batch)

    def host_allowed(self, host_header: str) -> bool:
        """Loopback servers answer only to loopback Host names (defeats DNS rebinding from web pages)."""
        if self.allowed_hosts:
            allowed = self.allowed_hosts
        elif is_loopback(self.host):
            allowed = LOOPBACK_NAMES
        else:
            return True
        name = host_header.strip()
        if name.startswith("["):
            name = name[1 : name.find("]")] if "]" in name else name
        elif name.count(":") == 1:
            name = name.split(":", 1)[0]
        return name.lower() in allowed or "*" in allowed
