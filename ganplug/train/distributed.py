"""Data-parallel training over several processes (torchrun): one process per GPU, or several on the CPU.

A run of W processes trains the same model as one process with the same global `--batch`, within float
rounding: every rank holds the whole model and takes rows `r*B/W .. (r+1)*B/W` of each global minibatch.

- **Randomness.** Every rank seeds torch's RNG alike and makes every random draw of a training step for the
  *global* batch, keeping its own rows (`GlobalDraws`, a torch function mode active only inside the step).
  z, style mixing, augmentation parameters, noise maps, FastGAN's quadrants, dropout masks, WGAN-GP's
  interpolation weights, label noise and pix2pix's crops are then the numbers a one-process run draws, and
  the RNG state after step k is the same on every rank and in a one-process run, so a checkpoint's RNG
  state resumes at any world size.
- **Gradients.** After each backward, before each optimiser step, the gradients are averaged over ranks
  (`average_gradients`, an optimiser pre-step hook). Every loss, penalty and regulariser of the families is
  a mean over the batch with equal shards, so the average is the full batch's gradient. This is done by
  hand rather than with DistributedDataParallel because the steps call D several times per backward,
  freeze D for G's update, take R1's and path length's double backward and switch `requires_grad`: none of
  that needs care when the sync is one all-reduce per optimiser step.
- **BatchNorm.** Train-mode BatchNorm normalises with the batch's statistics, so G and D's BatchNorm layers
  become SyncBatchNorm on CUDA and `GlobalBatchNorm2d` elsewhere (gloo): the same statistics by two
  autograd-aware all-reduces (mean, then the centred sum of squares), whose backward carries each rank's
  gradient to the others' activations.
- **Samples D couples** (StyleGAN's minibatch-stddev groups) stay together: with the group size the shards
  are interleaved blocks (`World.shard`) so that each rank's groups are a one-process run's.
- **State built from batch means** (ADA's E[sign D(real)], StyleGAN's tracked w average, the path-length
  mean) is all-reduced where it is computed; EMA needs nothing, since G's weights are identical everywhere.
- **Decisions** (a non-finite loss, a time limit, the collapse watch) are rank 0's: step stats are averaged
  over ranks and time-dependent callback decisions are broadcast from rank 0, so all ranks roll back or stop
  together. Only rank 0 writes files and prints.

A rank that fails ends the run: torchrun stops the others, and a rank blocked in a collective gives up
after `GANPLUG_DIST_TIMEOUT` seconds (default 300) instead of hanging. `GANPLUG_TEST_CRASH_RANK` /
`GANPLUG_TEST_CRASH_STEP` (tests only) make one rank raise at one step.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ganplug.errors import UserError

TIMEOUT_ENV = "GANPLUG_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
CRASH_RANK_ENV = "GANPLUG_TEST_CRASH_RANK"  # test hook: this rank raises at GANPLUG_TEST_CRASH_STEP
CRASH_STEP_ENV = "GANPLUG_TEST_CRASH_STEP"


@dataclass(frozen=True)
class World:
    """This process's place in the run: rank r of `size`, `local_rank` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, n: int, group: int = 1) -> slice | Tensor:
        """This rank's rows of a global batch of n (n divisible by the world size), in the order it holds them.

        With `group` g > 1 (StyleGAN's minibatch-stddev groups: rows j, j + n/g, j + 2n/g, ... of a batch)
        and n divisible by g * W, rank r holds, for each k < g, the block k*n/g + [r, r + 1) * n/(g*W): its
        own rows then fall in the same groups as in a one-process run, at the positions the layer groups
        them by. Otherwise it holds the contiguous rows r*n/W .. (r+1)*n/W."""
        if group > 1 and n % (group * self.size) == 0:
            block = n // (group * self.size)
            starts = [k * (n // group) + self.rank * block for k in range(group)]
            return torch.cat([torch.arange(s, s + block) for s in starts])
        local = n // self.size
        return slice(self.rank * local, (self.rank + 1) * local)


def world() -> World:
    """The current process group (a world of one when torch.distributed is not initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def world_from_env() -> World:
    """The world torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK), before or after
    the process group exists."""
    env = os.environ
    return World(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher setting WORLD_SIZE) with > 1 ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def timeout() -> datetime.timedelta:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise UserError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds.") from None
    if seconds <= 0:
        raise UserError(f"{TIMEOUT_ENV}={raw!r}: must be positive.")
    return datetime.timedelta(seconds=seconds)


def setup(device: str, what: str = "train") -> tuple[World, str, bool]:
    """Join the process group torchrun describes (env://): nccl for CUDA, gloo otherwise.

    Returns the world, the device this rank trains on (`cuda:LOCAL_RANK` for a CUDA run) and whether this
    call created the group (then `teardown` should end it). `what` names the job in messages (train, eval)."""
    if not launched():
        return World(), device, False
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if wants_cuda:
        if not torch.cuda.is_available():
            raise UserError(f"--device {device} with several processes, but no CUDA GPU is visible; use --device cpu.")
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {local_rank} has no GPU: only {torch.cuda.device_count()} are visible; "
                            "start at most that many processes per machine (--nproc_per_node / --gpus).")
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    elif device == "auto":
        device = "cpu"  # mps has no collective backend
    elif device == "mps":
        raise UserError(f"--device mps cannot {what} with several processes; use --device cpu or CUDA GPUs.")
    created = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if wants_cuda else "gloo", timeout=timeout(),
                                device_id=torch.device(device) if wants_cuda else None)
        created = True
    return world(), device, created


def teardown(created: bool) -> None:
    if created and dist.is_initialized():
        import gc

        gc.collect()  # nothing left holding the group's work objects when it is destroyed
        dist.destroy_process_group()


def barrier() -> None:
    if world().distributed:
        dist.barrier()


def check_batch(batch: int, w: World) -> None:
    if batch % w.size:
        raise UserError(f"--batch {batch} does not split evenly over {w.size} processes; use a multiple of {w.size} "
                        "(the global batch is shared out in equal shards).")


def maybe_crash(step: int) -> None:
    """Test hook: raise on rank GANPLUG_TEST_CRASH_RANK when step GANPLUG_TEST_CRASH_STEP begins."""
    rank = os.environ.get(CRASH_RANK_ENV)
    if rank is not None and int(rank) == world().rank and step == int(os.environ.get(CRASH_STEP_ENV, "2")):
        raise RuntimeError(f"injected crash on rank {rank} at step {step} ({CRASH_RANK_ENV})")


# ---------------------------------------------------------------------------------------- launching


def relaunch(command: str, gpus: int, device: str, argv: list[str] | None = None) -> None:
    """`ganplug COMMAND --gpus N ...` -> `python -m torch.distributed.run --standalone --nproc_per_node N -m
    ganplug.cli.app COMMAND ...` (the same options, less --gpus), in place of this process. --standalone
    gives torchrun a rendezvous on a free local port. `argv`: the command line (default sys.argv[1:])."""
    import sys

    if launched():
        raise UserError(f"--gpus {gpus} under torchrun: torchrun already started the processes; leave out --gpus.")
    if device != "cpu":
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible < gpus:
            raise UserError(f"--gpus {gpus}, but {visible} CUDA GPU(s) are visible"
                            f"{'' if visible else f' (--device cpu runs {command} on that many CPU processes)'}.")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
           "-m", "ganplug.cli.app", command, *without_gpus(command, sys.argv[1:] if argv is None else argv)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, cmd)


def without_gpus(command: str, argv: list[str]) -> list[str]:
    """The arguments after COMMAND in `argv`, less `--gpus N` / `--gpus=N`."""
    if command not in argv:
        raise UserError(f"--gpus: run it as `ganplug {command} ... --gpus N` (or start torchrun yourself).")
    kept, skip = [], False
    for a in argv[argv.index(command) + 1 :]:
        if skip:
            skip = False
        elif a == "--gpus":
            skip = True
        elif not a.startswith("--gpus="):
            kept.append(a)
    return kept


def report_rank_failure(e: BaseException, command: str, hint: str = "") -> bool:
    """In a multi-process run, say on stderr which rank failed and why, before the exception ends it
    (torchrun then stops the other ranks and exits non-zero). Returns True when the failure was lost
    contact with the others (a symptom, not the cause: the caller may exit quietly). A user error is left
    to the CLI's usual message; a world of one says nothing."""
    import sys

    w = world_from_env()
    if not w.distributed or isinstance(e, UserError):
        return False
    if isinstance(e, dist.DistBackendError | dist.DistError) or "Connection closed by peer" in str(e):
        print(f"ganplug {command}: rank {w.rank} of {w.size} lost contact with the other processes: another rank "
              f"failed or was stopped (its own message says why), or exceeded the timeout. ({type(e).__name__}: "
              f"{str(e).splitlines()[0] if str(e) else ''})", file=sys.stderr, flush=True)
        return True
    print(f"ganplug {command}: rank {w.rank} of {w.size} failed: {type(e).__name__}: {e}. The run stops on every "
          f"rank{'; ' + hint if hint else ''}.", file=sys.stderr, flush=True)
    try:  # torchrun's end-of-run summary then shows this error as the root cause
        from torch.distributed.elastic.multiprocessing.errors import get_error_handler

        get_error_handler().record_exception(e)
    except Exception:  # the summary is a courtesy; the message above is what counts
        pass
    return False


# ---------------------------------------------------------------------------------------- collectives


@torch.no_grad()
def average_gradients(params: Iterable[Tensor]) -> None:
    """grad <- mean over ranks of grad, for every parameter that has one (one flat all-reduce per dtype)."""
    w = world()
    if not w.distributed:
        return
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for p in params:
        if p.grad is not None:
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(w.size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view(g.shape))
            offset += g.numel()


def sync_gradients(opt: torch.optim.Optimizer) -> None:
    """Average gradients over ranks before every `opt.step()` (a pre-step hook, so no step code changes)."""

    def hook(optimizer, args, kwargs):
        average_gradients(p for group in optimizer.param_groups for p in group["params"])

    opt.register_step_pre_hook(hook)


@torch.no_grad()
def broadcast_module(module: nn.Module) -> None:
    """Rank 0's parameters and buffers everywhere (they agree already when seeded alike; this makes sure)."""
    if world().distributed:
        for t in [*module.parameters(), *module.buffers()]:
            flat = t.data.contiguous()  # collectives take dense tensors; channels_last weights are not
            dist.broadcast(flat, src=0)
            if flat.data_ptr() != t.data.data_ptr():
                t.data.copy_(flat)


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum of each number over ranks (float64, on the CPU for gloo and the GPU for nccl)."""
    if not world().distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return t.tolist()


def mean_stats(stats: dict[str, float]) -> dict[str, float]:
    """Step stats averaged over ranks (keys sorted: every rank logs the same keys), NaN anywhere -> NaN."""
    w = world()
    if not w.distributed:
        return stats
    keys = sorted(stats)
    sums = all_reduce_sum([float(stats[k]) for k in keys])
    return {k: s / w.size for k, s in zip(keys, sums, strict=True)}


def mean_tensor(x: Tensor) -> Tensor:
    """Mean over ranks of a tensor (no autograd)."""
    w = world()
    if not w.distributed:
        return x
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / w.size


def from_rank0(obj: Any) -> Any:
    """Rank 0's value of a picklable object, on every rank."""
    if not world().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_collective_device())
    return box[0]


def gather_to_rank0(obj: Any) -> list[Any] | None:
    """Every rank's picklable object, in rank order, on rank 0 (None elsewhere); [obj] in a world of one."""
    w = world()
    if not w.distributed:
        return [obj]
    out = [None] * w.size if w.main else None
    dist.gather_object(obj, out, dst=0)
    return out


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ------------------------------------------------------------------------------------ global draws

_SIZED = {torch.randn, torch.rand, torch.randint}
_LIKE = {torch.randn_like, torch.rand_like}
_REFUSED = {torch.randperm, torch.multinomial, torch.normal, torch.bernoulli, torch.poisson, torch.randint_like,
            torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.random_, torch.Tensor.bernoulli_,
            torch.Tensor.exponential_, torch.Tensor.geometric_, torch.Tensor.cauchy_, torch.Tensor.log_normal_,
            F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout}


def _split_size(func, args: tuple, kwargs: dict) -> tuple[tuple[int, ...], tuple, dict]:
    """The size of a torch.randn/rand/randint call, and a function that rebuilds the call with another."""
    kwargs = dict(kwargs)
    if "size" in kwargs:
        size = tuple(kwargs.pop("size"))
        return size, args, kwargs
    if func is torch.randint:  # randint(high, size) or randint(low, high, size)
        *bounds, size = args
        return tuple(size), tuple(bounds), kwargs
    if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)):
        return tuple(args[0]), (), kwargs
    return tuple(int(a) for a in args), (), kwargs


class GlobalDraws(TorchFunctionMode):
    """Inside a training step of a W-process run: every random draw is made for the global batch and this
    rank keeps its rows, so the numbers (and the RNG state afterwards) are a one-process run's.

    Every draw a step makes is per sample along dim 0 (z, augmentation parameters, noise maps, quadrants,
    dropout masks, interpolation weights, label noise, crop offsets): torch.randn/rand/randint(_like) and
    F.dropout have dim 0 multiplied by W and are sliced. Any other kind of random call is refused, so a new
    draw is noticed instead of silently differing from a one-process run.
    """

    def __init__(self, w: World, group: int = 1):
        """`group`: D's sample groups (`World.shard`), so that each rank's draws are its batch rows'."""
        super().__init__()
        self.w, self.group = w, group
        self.active = True

    @contextlib.contextmanager
    def paused(self):
        """Draws as usual inside (the batch source draws its own global flips and slices them)."""
        self.active = False
        try:
            yield
        finally:
            self.active = True

    def _rows(self, t: Tensor) -> Tensor:
        rows = self.w.shard(t.shape[0], self.group)
        if isinstance(rows, slice):
            return t[rows]
        return t.index_select(0, rows.to(t.device)).contiguous(memory_format=_memory_format(t))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.active:
            return func(*args, **kwargs)
        if func in _SIZED:
            size, rest, kw = _split_size(func, args, kwargs)
            if not size:
                raise RuntimeError(f"GlobalDraws: {func.__name__} of a scalar inside a training step; draw per sample")
            return self._rows(func(*rest, (size[0] * self.w.size, *size[1:]), **kw))
        if func in _LIKE:
            x, *rest = args
            big = x.new_empty((x.shape[0] * self.w.size, *x.shape[1:]), dtype=kwargs.get("dtype") or x.dtype)
            big = big.contiguous(memory_format=_memory_format(x))
            return self._rows(func(big, *rest, **kwargs))
        if func is F.dropout:
            return self._dropout(*args, **kwargs)
        if func in _REFUSED:
            raise RuntimeError(f"GlobalDraws: {getattr(func, '__name__', func)} inside a training step has no global "
                               "form yet (ganplug.train.distributed): add one before training with it on several ranks")
        return func(*args, **kwargs)

    def _dropout(self, input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
        if not training or p == 0:
            return input
        ones = input.new_ones((input.shape[0] * self.w.size, *input.shape[1:]))
        mask = F.dropout(ones.contiguous(memory_format=_memory_format(input)), p, True, False)
        out = input * self._rows(mask)  # the one-process kernel: input * (bernoulli(1 - p) / (1 - p))
        return input.copy_(out) if inplace else out


def _memory_format(x: Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


# -------------------------------------------------------------------------------------- BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward is the sum over ranks of the gradient: each rank's loss reaches every
    rank's inputs through the shared statistics."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = x.contiguous().clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _AllReduceSum.apply(grad)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose train-mode statistics are the global batch's (any backend, gloo included).

    Mean, then the centred sum of squares, each by an autograd-aware all-reduce; the same parameters,
    buffers and state-dict names as BatchNorm2d, so checkpoints move between world sizes. Eval mode and a
    world of one are BatchNorm2d's own kernel."""

    def forward(self, x: Tensor) -> Tensor:
        w = world()
        if not (self.training and w.distributed):
            return super().forward(x)
        xf = x.float()
        count = xf.numel() // xf.shape[1] * w.size
        mean = _AllReduceSum.apply(xf.sum(dim=(0, 2, 3))) / count
        centred = xf - mean.view(1, -1, 1, 1)
        var = _AllReduceSum.apply(centred.square().sum(dim=(0, 2, 3))) / count
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                unbiased = var * (count / max(count - 1, 1))
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return y.to(x.dtype)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm layers -> SyncBatchNorm on CUDA, GlobalBatchNorm2d elsewhere; the same parameter objects
    (so optimisers built before or after see them) and buffers."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_global(module)


def _to_global(module: nn.Module) -> nn.Module:
    if type(module) is nn.BatchNorm2d:
        new = GlobalBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats, device=module.running_mean.device
                                if module.running_mean is not None else None)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm2d):
        raise UserError(f"{type(module).__name__} has no multi-process form on this device; train it on one process.")
    for name, child in module.named_children():
        module._modules[name] = _to_global(child)
    return module
