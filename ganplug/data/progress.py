"""Progress for prep (images/s and ETA) on stderr, so stdout stays clean: a live bar on a terminal, a
clean line every few seconds in a pipe (ganplug.progress.Bar)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

from ganplug.progress import Bar


@contextmanager
def prep_progress(label: str = "prep", console: Console | None = None, enabled: bool = True) -> Iterator:
    """Yields a `(done, total)` callback for prepare_dataset (or None when disabled)."""
    if not enabled:
        yield None
        return
    bar: Bar | None = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = Bar(label, total, unit="img", console=console)
        bar.total = total
        bar.update(done)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()
