"""Progress for anything that takes more than a second: a live bar on a terminal, clean lines in a pipe.

A log, CI or `make demo | tee` gets one plain line every `every` seconds (and a last one at the end)
instead of a bar squashed into the pipe's width. The ETA is the sooner of "the remaining work at the
current rate" and "what is left of a time budget", so a run with `--minutes` never promises hours.
"""

from __future__ import annotations

import time
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def stderr_console() -> Console:
    """Messages on stderr that never wrap mid-line in a pipe (a log keeps one message per line) and never
    colour digits inside paths."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "-:--:--"
    return str(timedelta(seconds=int(round(seconds))))


class Bar:
    """`update(done, text)` as work proceeds; `close()` at the end (or use it as a context manager).

    `total` may be None (unknown). `budget_s` caps the ETA at the time budget left. `unit` names what
    `done` counts in the rate ("img", "step").
    """

    def __init__(self, label: str, total: int | None, *, unit: str = "img", console: Console | None = None,
                 budget_s: float = 0.0, every: float = 5.0, first: int = 0, rate_scale: float = 1.0):
        self.label, self.total, self.unit, self.budget_s, self.every = label, total, unit, budget_s, every
        self.rate_scale = rate_scale  # `done` units -> rate units (e.g. steps -> images)
        self.console = console or stderr_console()
        self.live = self.console.is_terminal
        self.first = self.done = first
        self.text = ""
        self.t0 = time.perf_counter()
        self._last_line = -1e9
        self._printed: tuple[int, str] | None = None  # the state the last pipe line showed
        self._bar: Progress | None = None
        if self.live:
            self._bar = Progress(TextColumn(f"[bold]{label}"), MofNCompleteColumn(), BarColumn(),
                                 TimeElapsedColumn(), TextColumn("eta {task.fields[eta]}"),
                                 TextColumn("{task.fields[text]}"), console=self.console, transient=False)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, completed=first, eta="-:--:--", text="")

    def rate(self) -> float | None:
        """Units per second since the start (a steady figure for a log, not a flickering one)."""
        dt = time.perf_counter() - self.t0
        return (self.done - self.first) * self.rate_scale / dt if dt > 0 and self.done > self.first else None

    def eta(self) -> float | None:
        elapsed = time.perf_counter() - self.t0
        budget_left = self.budget_s - elapsed if self.budget_s > 0 else None
        by_work = None
        rate = self.rate()
        if self.total is not None and rate:
            by_work = (self.total - self.done) * self.rate_scale / rate
        known = [x for x in (by_work, budget_left) if x is not None]
        return max(0.0, min(known)) if known else None

    def shown_total(self) -> int | None:
        """What the count runs to: `total`, or, when the time budget will end the run first, the units
        that fit in it at the rate so far (a demo's 1,000,000 steps are never the goal; its minutes are)."""
        if self.budget_s <= 0 or self.total is None:
            return self.total
        elapsed = time.perf_counter() - self.t0
        if elapsed <= 0 or self.done <= self.first:
            return self.total
        fit = self.first + (self.done - self.first) * self.budget_s / elapsed
        return self.total if fit >= self.total else max(self.done, int(fit))

    def update(self, done: int, text: str = "") -> None:
        self.done, self.text = done, text
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=self.shown_total(), eta=fmt_duration(self.eta()),
                             text=text)
            return
        now = time.perf_counter()
        if now - self._last_line >= self.every:
            self._last_line = now
            self._print_line()

    def _print_line(self) -> None:
        total = self.shown_total()
        by_time = "~" if total is not None and total != self.total else ""  # the budget's estimate, not a goal
        count = f"{self.done}/{by_time}{total}" if total is not None else f"{self.done}"
        pct = f" ({100 * self.done / total:.0f}%)" if total else ""
        rate = self.rate()
        speed = f"  {rate:,.1f} {self.unit}/s" if rate else ""
        elapsed = fmt_duration(time.perf_counter() - self.t0)
        self.console.print(f"{self.label} {count}{pct}{speed}  elapsed {elapsed}  eta {fmt_duration(self.eta())}"
                           + (f"  {self.text}" if self.text else ""), soft_wrap=True, highlight=False)
        self._printed = (self.done, self.text)

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=not self.live)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif (self.done != self.first or self.total == 0) and self._printed != (self.done, self.text):
            self._print_line()  # the final state, whatever the cadence, once

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
