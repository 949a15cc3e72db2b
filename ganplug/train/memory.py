"""How much memory a training step will need, estimated before anything is allocated.

A batch of a million images does not fail cleanly: the kernel kills the process at 22 GB. The estimate
runs the family's G and D on the `meta` device (shapes only, no arithmetic, no memory), sums the
activations one image produces, and scales by the batch; it is deliberately rough (within ~2-3x), which
is enough to refuse what cannot fit and name a batch that can.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganplug.errors import UserError
from ganplug.models import get_family

# Autograd keeps roughly every layer's output for backward; D runs on a real and a fake batch, and the G
# update runs D once more through the fake one.
_ACTIVATION_FACTOR = 3.0
_SAFETY = 0.8  # leave this fraction of free memory usable, the rest for the allocator and the OS


@dataclass(frozen=True)
class StepMemory:
    per_image: int  # bytes of activations for one image through G and D
    fixed: int  # weights, gradients and Adam moments of both networks

    def total(self, batch: int) -> int:
        return int(self.fixed + batch * self.per_image * _ACTIVATION_FACTOR)

    def free_needed(self, batch: int) -> int:
        """Free memory a step of `batch` images needs, with the margin the allocator and the OS keep."""
        return math.ceil(self.total(batch) / _SAFETY)

    def fits(self, batch: int, available: int) -> bool:
        return self.total(batch) <= available * _SAFETY

    def max_batch(self, available: int) -> int:
        return max(0, int((available * _SAFETY - self.fixed) / (self.per_image * _ACTIVATION_FACTOR)))


def _activation_bytes(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[int, torch.Tensor]:
    total = [0]

    def hook(_m, _inp, out) -> None:
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                total[0] += t.numel() * 4  # float32 activations (bf16 halves some; an upper estimate)

    leaves = [m for m in module.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        out = module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total[0], out


def estimate(arch: str, model_cfg: Any, spec: Any) -> StepMemory | None:
    """The step's memory on `meta` tensors; None when a family's forward cannot run there."""
    fam = get_family(arch)
    try:
        with torch.device("meta"):
            G, D = fam.build(model_cfg)
            G.eval()
            D.eval()
            if spec.image_to_image:
                g_in = torch.empty(1, model_cfg.in_channels, spec.size, spec.size)
            else:
                g_in = torch.empty(1, spec.z_dim)
            with torch.no_grad():
                g_bytes, fake = _activation_bytes(G, (g_in,))
                d_in = torch.cat([g_in, fake], dim=1) if spec.image_to_image else fake
                d_bytes, _ = _activation_bytes(D, (d_in,))
    except Exception:  # an op without a meta kernel: no estimate rather than a failure
        return None
    params = sum(p.numel() for m in (G, D) for p in m.parameters())
    return StepMemory(per_image=g_bytes + 2 * d_bytes, fixed=params * 4 * 5)  # weights, grad, 2 moments, EMA


def available_bytes(device: torch.device) -> int | None:
    """Memory free for this process: CUDA's free memory, else the smaller of RAM available and the
    cgroup's remaining limit (containers), or None where neither can be read."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            candidates.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(candidates) if candidates else None


def check_fits(arch: str, model_cfg: Any, spec: Any, batch: int, device: torch.device, *,
               may_shrink: bool = False) -> int:
    """The batch to train with: `batch` when its step fits in the memory free here. When it does not, the
    largest batch that fits if `may_shrink` (the batch is the family's default, not the user's: FastGAN's
    32 on a CPU at 512-1024 px needs 7-11 GiB); else refuse (exit 2) and name that batch."""
    need = estimate(arch, model_cfg, spec)
    free = available_bytes(device)
    if need is None or free is None or need.fits(batch, free):
        return batch
    gib = 1 << 30
    fits = need.max_batch(free)
    if may_shrink and fits >= 1:
        return fits
    hint = f"use --batch {fits} or less" if fits >= 1 else "use a smaller --size or model (--capacity, --base-channels)"
    raise UserError(
        f"--batch {batch}: one training step needs about {need.total(batch) / gib:.1f} GiB (estimated), and "
        f"{device} has {free / gib:.1f} GiB free; {hint}."
    )
