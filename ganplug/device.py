"""Device and numeric-precision choice, in one place.

`--device auto` picks cuda, then mps, then cpu. `--precision auto` picks bf16 where the hardware runs
it natively (CUDA with bf16, x86 CPUs with AVX512-BF16 or AMX) because a DCGAN step measured ~2x
faster there, and fp32 elsewhere. Mixed precision is autocast only: weights and optimiser state stay
fp32, so checkpoints do not depend on the precision a run used.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ganplug.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(name: str = "auto") -> torch.device:
    """Turn `auto|cpu|cuda|cuda:N|mps` into a usable torch.device, or explain why not."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise UserError("--device mps was asked for but this machine has no Apple GPU; use --device auto.")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name} was asked for but no CUDA GPU is visible; use --device auto.")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible "
                f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})."
            )
        return dev
    raise UserError(f"unknown --device {name!r}; use auto, cpu, cuda, cuda:N or mps.")


def device_type(name: str = "auto") -> str:
    """"cuda", "mps" or "cpu": the kind of device `name` asks for, without checking that it is there, for
    defaults that depend on it (a config written on a GPU machine must still load on a laptop)."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return resolve_device("auto").type
    return "cuda" if name.startswith("cuda") else "mps" if name == "mps" else "cpu"


def cpu_has_fast_bf16() -> bool:
    """True on x86 CPUs with native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    for fn in checks:
        probe = getattr(torch.cpu, fn, None) if hasattr(torch, "cpu") else None
        with contextlib.suppress(Exception):
            if probe is not None and probe():
                return True
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn `auto|fp32|bf16|fp16` into what this device will actually run."""
    precision = (precision or "auto").lower()
    if precision not in PRECISIONS:
        raise UserError(f"unknown --precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        if device.type == "cpu":
            return "bf16" if cpu_has_fast_bf16() else "fp32"
        return "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise UserError("--precision fp16 is not supported on the CPU; use bf16 or fp32.")
    return precision


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors are computed: passed to everything that runs a network."""

    device: torch.device
    precision: str = "fp32"  # resolved: fp32, bf16 or fp16
    channels_last: bool = True

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for forward passes (a no-op in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def prepare_module(self, module: torch.nn.Module) -> torch.nn.Module:
        module.to(self.device)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        return module

    def prepare_images(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def make_runtime(device: str = "auto", precision: str = "auto", channels_last: bool = True) -> Runtime:
    dev = resolve_device(device)
    return Runtime(device=dev, precision=resolve_precision(precision, dev), channels_last=channels_last)
