"""Training progress for the CLI (the library reports; this module draws, through ganplug.progress.Bar)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from ganplug.progress import Bar, stderr_console

SHOWN = (("loss/G", "G"), ("loss/D", "D"), ("prob/real", "D(x)"), ("prob/fake", "D(G(z))"),
         ("scores/real", "real"), ("scores/fake", "fake"))


def stats_text(stats: dict[str, float]) -> str:
    parts = [f"{label} {stats[key]:.3f}" for key, label in SHOWN if key in stats]
    # D(x)/D(G(z)) are probabilities for the BCE loss; raw scores only for the others.
    if "prob/real" in stats:
        parts = [p for p in parts if not p.startswith(("real ", "fake "))]
    return "  ".join(parts)


class RichReporter:
    """A live bar on a terminal, a clean line every few seconds in a pipe; the ETA honours --minutes."""

    def __init__(self, console: Console | None = None):
        self.console = console or stderr_console()
        self.bar: Bar | None = None

    def start(self, total: int, first: int, info: dict[str, Any]) -> None:
        budget = float(info.get("max_seconds") or 0.0)
        minutes = budget / 60
        limit = f", for at most {minutes:g} minute{'' if minutes == 1 else 's'}" if budget else ""
        self.console.print(f"training on [bold]{info['device']}[/] ({info['precision']}), {info['images']} images "
                           f"-> {info['run']}{limit}", highlight=False)
        self.bar = Bar("step", total, unit="img", console=self.console, budget_s=budget, first=first,
                       rate_scale=float(info.get("batch") or 1))

    def update(self, step: int, stats: dict[str, float]) -> None:
        self.bar.update(step, stats_text(stats))

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.message(text)
        else:
            self.console.print(text, highlight=False)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()


def end_message(result: Any, steps: int, minutes: float = 0.0) -> str:
    """Why a run stopped and the exact command that continues it."""
    run = result.run_dir
    if result.step >= steps:
        return (f"done: trained to step {result.step} (--steps {steps}); checkpoint {result.checkpoint}. "
                f"To train further: `ganplug train --resume {run} --steps {2 * steps}`.")
    again = f"`ganplug train --resume {run} --steps {steps}" + (f" --minutes {minutes:g}`" if minutes else "`")
    why = result.stop_reason or "it was asked to stop"
    return (f"stopped at step {result.step} of {steps}: {why}; checkpoint {result.checkpoint}. "
            f"Continue with {again}.")
