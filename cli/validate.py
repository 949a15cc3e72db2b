"""Option validators: one per kind of value, attached where each option is declared (`callback=`).

typer's `min=`/`max=` cover integer ranges. Floats need more: nan compares false with every bound, so
`min=0` lets nan (and inf) through. Each validator passes None (an option not given) through unchanged
and raises `typer.BadParameter`, which the CLI prints as one line naming the option, with exit code 2.

    lr: float = typer.Option(0.1, callback=positive)              # finite, > 0
    beta1: float = typer.Option(None, callback=in_range(0, 1, hi_open=True))
    seed: int = typer.Option(0, callback=seed)                    # 0 .. 2**32 - 1
    seeds: str = typer.Option(None, callback=seed_list)           # '3,7,12', '0-15'
    out: Path = typer.Option(None, callback=output_file)          # not a folder, not under a file
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import typer

from ganplug.errors import UserError
from ganplug.seeds import SEED_MAX, parse_seeds


def _fmt(x: float) -> str:
    return f"{x:g}"


def in_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
             hi_open: bool = False) -> Callable[[float | None], float | None]:
    """A finite float within [lo, hi] (either end open, or absent)."""
    if lo is not None and hi is not None:
        want = f"in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
    elif lo is not None:
        want = f"greater than {_fmt(lo)}" if lo_open else f"{_fmt(lo)} or more"
    elif hi is not None:
        want = f"less than {_fmt(hi)}" if hi_open else f"{_fmt(hi)} or less"
    else:
        want = ""

    def check(value: float | None) -> float | None:
        if value is None:
            return None
        ok = math.isfinite(value)
        if ok and lo is not None:
            ok = value > lo if lo_open else value >= lo
        if ok and hi is not None:
            ok = value < hi if hi_open else value <= hi
        if not ok:
            raise typer.BadParameter(f"must be a finite number{' ' + want if want else ''}, not {value}.")
        return value

    return check


positive = in_range(0.0, lo_open=True)  # learning rates, fps, sizes in MiB
non_negative = in_range(0.0)  # weights, minutes, half-lives where 0 means "off"
unit_interval = in_range(0.0, 1.0)  # probabilities
open_unit_interval = in_range(0.0, 1.0, lo_open=True, hi_open=True)  # targets strictly between 0 and 1
adam_beta = in_range(0.0, 1.0, hi_open=True)  # Adam betas, dropout rates
dropout = adam_beta
label_fraction = in_range(0.0, 0.5, hi_open=True)  # label smoothing and noise
holdout = in_range(0.0, 1.0, hi_open=True)  # fraction of files held out
dedup_threshold = in_range(0.0, 64.0)  # mean difference of thumbnails, in 0-255 levels
upload_mb = in_range(0.0, 1 << 20, lo_open=True)  # a request body in MiB (at most 1 TiB)
truncation = in_range(0.0, 2.0)  # truncation psi: 1 = none
fps = in_range(0.1, 240.0)  # animation frame rates (a GIF frame lasts at most 655 s)


def seed(value: int | None) -> int | None:
    """One seed: 0 .. 2**32 - 1 (latents come from numpy RandomState(seed))."""
    if value is not None and not 0 <= value <= SEED_MAX:
        raise typer.BadParameter(f"a seed is a whole number from 0 to {SEED_MAX}, not {value}.")
    return value


def seed_list(value: str | None) -> str | None:
    """Seeds as '3,7,12', '0-15' or a mix: readable, in range, and not too many."""
    if value is not None:
        try:
            parse_seeds(value)
        except UserError as e:
            raise typer.BadParameter(str(e)) from None
    return value


def _nearest_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path.cwd()


def _check_writable_under(path: Path) -> None:
    """Files can be created at `path` (a folder made if needed): no file in the way, write permission."""
    base = _nearest_existing(path)
    if not base.is_dir():
        raise typer.BadParameter(f"{base} is a file, so nothing can be written under it; choose another path.")
    if not os.access(base, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"no permission to write in {base}; choose a folder you can write to.")


def output_file(value: Path | None) -> Path | None:
    """A file to write: not an existing folder, and its folder can be made and written to."""
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a folder; give the name of a file to write (in it or elsewhere).")
    _check_writable_under(path.parent)
    return value


def output_beside(value: Path | None) -> Path | None:
    """A new file or folder next to `value` may be made (ganplug demo picks a free name beside an existing one)."""
    if value is not None:
        _check_writable_under(Path(value).parent)
    return value


def output_dir(value: Path | None) -> Path | None:
    """A folder to write into: not an existing file, and it can be made and written to."""
    if value is None:
        return None
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{path} is a file; give a folder (new or existing) to write into.")
    _check_writable_under(path)
    return value
