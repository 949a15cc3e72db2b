"""Rich progress display for training (the library reports; this module draws)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

SHOWN = (("loss/G", "G"), ("loss/D", "D"), ("prob/real", "D(x)"), ("prob/fake", "D(G(z))"),
         ("scores/real", "real"), ("scores/fake", "fake"))


class RichReporter:
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.task = None

    def start(self, total: int, first: int, info: dict[str, Any]) -> None:
        self.console.print(
            f"training on [bold]{info['device']}[/] ({info['precision']}), {info['images']} images -> {info['run']}"
        )
        self.progress = Progress(
            TextColumn("[bold]step"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"), console=self.console, transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=total, completed=first, stats="")

    def update(self, step: int, stats: dict[str, float]) -> None:
        parts = [f"{stats['speed/images_per_s']:.0f} img/s"] if "speed/images_per_s" in stats else []
        parts += [f"{label} {stats[key]:.3f}" for key, label in SHOWN if key in stats]
        # D(x)/D(G(z)) are probabilities for the BCE loss; raw scores only for the others.
        if "prob/real" in stats:
            parts = [p for p in parts if not p.startswith(("real ", "fake "))]
        self.progress.update(self.task, completed=step, stats="  ".join(parts))

    def message(self, text: str) -> None:
        self.console.print(text)

    def finish(self) -> None:
        if self.progress is not None:
            self.progress.stop()
