"""Micro-batching: concurrent generate requests for the same model and the same network options share one
forward pass.

A batchable request is *offered* when it is submitted (in the event loop, before its job waits for a
worker), under a key naming everything that changes the network pass: model, truncation, noise mode,
tileable, edits. The first of them to reach a worker leads: it waits until the oldest offer is
`wait_s` old (so a lone request waits at most `wait_s`; under load the queue has already gathered
them and nobody waits), takes the pending offers of its key up to `max_images`, and computes them
together; every other member's job then finds its images ready and only encodes them.

The pixels are each request's own: `ops.generate` draws each seed's z from its own generator and the
families' forward passes are per-sample in eval mode (BatchNorm uses running stats), so batch
composition changes no image (tests/serve/test_microbatch.py checks this bit for bit). Noise mode
`random` draws from the global RNG and latent requests take another path: those are never offered.

A batch that fails is retried one request at a time, so one bad request fails only itself.

Where batching is exact: the CPU in bf16 (the CPU default where it has native bf16), measured for
dcgan, fastgan and stylegan. In fp32 oneDNN picks its convolution and GEMM kernels by batch size, and
fastgan and stylegan images then differ from the lone ones by 1 in up to a few dozen channel values per million;
CUDA picks cuDNN algorithms by batch size too. There the server does not batch (`batch_exact`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from ganplug.device import Runtime
from ganplug.serve.errors import JobCancelled


def batch_exact(runtime: Runtime) -> bool:
    """Whether a batched forward pass gives every image bit for bit its lone pixels on this runtime."""
    return runtime.device.type == "cpu" and runtime.precision == "bf16"


@dataclass(eq=False)
class Offer:
    """One request waiting to be batched: its key, its size in images and, once computed, its outcome."""

    key: Hashable
    images: int
    request: Any
    cancelled: threading.Event  # the job's cancel event (set once the job exists): a cancelled offer is skipped
    offered: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    taken: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass
class BatchStats:
    batches: int = 0  # computations run (each one forward pass per `chunk` of its images)
    requests: int = 0  # offers they served
    largest: int = 0  # most requests in one batch


class MicroBatcher:
    """Gathers offers by key; `run` computes an offer, with whatever else of its key is pending."""

    def __init__(self, wait_s: float, max_images: int):
        self.wait_s = wait_s
        self.max_images = max_images
        self.stats = BatchStats()
        self._pending: dict[Hashable, list[Offer]] = {}
        self._lock = threading.Lock()

    def offer(self, key: Hashable, images: int, request: Any, cancelled: threading.Event) -> Offer:
        item = Offer(key, images, request, cancelled)
        with self._lock:
            for k in list(self._pending):  # offers of jobs cancelled before they started never run: drop them
                self._pending[k] = [o for o in self._pending[k] if not o.cancelled.is_set()]
                if not self._pending[k]:
                    del self._pending[k]
            self._pending.setdefault(key, []).append(item)
        return item

    def withdraw(self, item: Offer) -> None:
        with self._lock:
            queue = self._pending.get(item.key, [])
            if item in queue:
                queue.remove(item)
            if not queue:
                self._pending.pop(item.key, None)

    def run(self, item: Offer, compute: Callable[[list[Offer]], list[tuple[Any, BaseException | None]]]) -> Any:
        """The offer's result (or its error raised): computed here with its batch, or by the leader that took it.

        `compute(offers)` returns one (result, error) per offer, in order."""
        with self._lock:
            taken = item.taken
        if not taken:
            delay = item.offered + self.wait_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        batch = self._take(item)  # None when another request's job took this one into its batch
        if batch is not None:
            try:
                outcomes = compute(batch)
            except BaseException as e:  # noqa: BLE001 - handed to every member, then re-raised below
                outcomes = [(None, e)] * len(batch)
            with self._lock:
                self.stats.batches += 1
                self.stats.requests += len(batch)
                self.stats.largest = max(self.stats.largest, len(batch))
            for member, (result, error) in zip(batch, outcomes, strict=True):
                member.result, member.error = result, error
                member.done.set()
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result

    def _take(self, item: Offer) -> list[Offer] | None:
        """The leader's own offer first, then its key's other pending offers, oldest first, up to max_images."""
        with self._lock:
            if item.taken:
                return None
            queue = self._pending.get(item.key, [])
            if item in queue:
                queue.remove(item)
            item.taken = True
            batch, total, rest = [item], item.images, []
            for other in queue:
                if other.cancelled.is_set():
                    other.taken, other.error = True, JobCancelled()  # its job never runs, or stops here
                    other.done.set()
                elif total + other.images <= self.max_images:
                    other.taken = True
                    batch.append(other)
                    total += other.images
                else:
                    rest.append(other)
            if rest:
                self._pending[item.key] = rest
            else:
                self._pending.pop(item.key, None)
        return batch
