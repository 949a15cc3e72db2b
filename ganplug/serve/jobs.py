"""A small job queue: worker threads run generation; the event loop only submits, polls and cancels.

A job moves queued -> running -> done | failed | cancelled. The work function receives a `JobContext`
to report progress and to learn, at each checkpoint, that it was cancelled; a cancelled job stops at
its next checkpoint (one generator call) and a queued one never starts.

The queue holds at most `max_pending` unfinished jobs: past that a submit is refused with 429 and a
Retry-After estimated from recent job times, instead of piling up work (and memory) without end.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ganplug.errors import UserError
from ganplug.serve.errors import ApiError, JobCancelled
from ganplug.serve.schema import JobState

log = logging.getLogger("ganplug.serve")

TERMINAL = (JobState.done, JobState.failed, JobState.cancelled)


@dataclass
class Job:
    id: str
    kind: str
    state: JobState = JobState.queued
    progress: float = 0.0
    message: str = "queued"
    error: str | None = None
    error_status: int = 500
    error_code: str = "internal"
    result: Any = None
    created: float = field(default_factory=time.time)
    started: float | None = None  # monotonic clock, for the Retry-After estimate
    cancel_event: threading.Event = field(default_factory=threading.Event)
    future: Future | None = None
    version: int = 0  # bumped at every change, so event streams send only news

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


class JobContext:
    """What a work function sees of its job."""

    def __init__(self, job: Job, lock: threading.Lock):
        self._job = job
        self._lock = lock

    def check(self) -> None:
        if self._job.cancel_event.is_set():
            raise JobCancelled()

    def progress(self, fraction: float, message: str = "") -> None:
        self.check()
        with self._lock:
            self._job.progress = max(0.0, min(1.0, float(fraction)))
            if message:
                self._job.message = message
            self._job.version += 1


class JobQueue:
    def __init__(self, workers: int = 1, keep: int = 64, max_pending: int = 16):
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None  # started on first use, again after a shutdown
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep
        self._max_pending = max_pending
        self._durations: deque[float] = deque(maxlen=16)  # seconds the latest jobs ran

    def submit(self, kind: str, work: Callable[[JobContext], Any]) -> Job:
        """Queue a job, or refuse with 429 when `max_pending` jobs are already queued or running."""
        job = Job(id=uuid.uuid4().hex[:16], kind=kind)
        with self._lock:
            pending = sum(1 for j in self._jobs.values() if not j.finished)
            if pending >= self._max_pending:
                raise self._full(pending)
            self._jobs[job.id] = job
            self._forget_old()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="ganplug-gen")
            pool = self._pool
        job.future = pool.submit(self._run, job, work)
        return job

    def _full(self, pending: int) -> ApiError:
        wait = self._retry_after()
        return ApiError(429, "busy", f"the server already has {pending} jobs queued or running, its limit; "
                                     f"try again in {wait} s.", headers={"Retry-After": str(wait)})

    def _retry_after(self) -> int:
        """Seconds until a slot is likely free: a recent job's time over the workers, 1 to 60 (caller holds lock)."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 1.0
        return max(1, min(60, math.ceil(mean / self._workers)))

    def _set(self, job: Job, **changes) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(job, k, v)
            job.version += 1

    def _run(self, job: Job, work: Callable[[JobContext], Any]) -> None:
        if job.cancel_event.is_set():
            self._set(job, state=JobState.cancelled, message="cancelled before it started")
            return
        self._set(job, state=JobState.running, message="running", started=time.monotonic())
        try:
            result = work(JobContext(job, self._lock))
        except JobCancelled:
            self._set(job, state=JobState.cancelled, message="cancelled")
        except ApiError as e:
            self._set(job, state=JobState.failed, error=e.message, error_status=e.status, error_code=e.code,
                      message="failed")
        except UserError as e:
            self._set(job, state=JobState.failed, error=str(e), error_status=400, error_code="bad_input",
                      message="failed")
        except Exception as e:  # a bug: logged with its traceback, reported as one sentence
            log.exception("job %s (%s) crashed", job.id, job.kind)
            self._set(job, state=JobState.failed, error=f"internal error: {type(e).__name__}: {e}",
                      error_status=500, error_code="internal", message="failed")
        else:
            self._set(job, state=JobState.done, progress=1.0, result=result, message="done")
        finally:
            with self._lock:
                self._durations.append(time.monotonic() - job.started)

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, "job_not_found", f"no job {job_id!r} (finished jobs are kept for a while only).")
        return job

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.cancel_event.set()
        with self._lock:
            if job.state == JobState.queued:
                job.state, job.message = JobState.cancelled, "cancelled before it started"
            job.version += 1
        return job

    def list(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def active(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if not j.finished)

    def _forget_old(self) -> None:
        finished = [jid for jid, j in self._jobs.items() if j.finished]
        for jid in finished[: max(0, len(self._jobs) - self._keep)]:
            del self._jobs[jid]

    def shutdown(self) -> None:
        """Cancel everything and stop the workers (the app's shutdown; a later submit starts new ones)."""
        for job in self.list():
            job.cancel_event.set()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
