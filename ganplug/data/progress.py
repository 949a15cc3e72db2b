"""A rich progress bar for prep (images/s and ETA), on stderr so stdout stays clean."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Images per second, from rich's moving speed estimate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- img/s" if speed is None else f"{speed:,.0f} img/s", style="cyan")


@contextmanager
def prep_progress(label: str = "prep", console: Console | None = None, enabled: bool = True) -> Iterator:
    """Yields a `(done, total)` callback for prepare_dataset (or None when disabled)."""
    if not enabled:
        yield None
        return
    bar = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )
    task_id = None

    def update(done: int, total: int) -> None:
        nonlocal task_id
        if task_id is None:
            task_id = bar.add_task(label, total=total)
        bar.update(task_id, completed=done, total=total)

    with bar:
        yield update
