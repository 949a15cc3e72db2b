"""Seed lists as users write them ('3,7,12', '0-15'): torch-free, so the CLI can check them before it
imports anything heavy (`ganplug --help` must not import torch)."""

from __future__ import annotations

from ganplug.errors import UserError

SEED_MAX = 2**32 - 1  # numpy RandomState takes 32-bit seeds
MAX_SEEDS = 1_000_000  # most seeds one command takes (a list of seeds, or images to make)


def parse_int_list(text: str, *, what: str, example: str, noun: str = "numbers", limit: int = MAX_SEEDS) -> list[int]:
    """'3,7,12', '0-15' or a mix ('1,4-6') -> the integers in order. A range is counted before it is built,
    so '0-99999999999' is refused at once instead of filling memory. Seeds and style indices share it."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else part[1:].split("-", 1)
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise ValueError
                if len(out) + hi_i - lo_i + 1 > limit:
                    raise UserError(f"{what} {text!r} name more than {limit:,} {noun}; ask for fewer at a time.")
                out.extend(range(lo_i, hi_i + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise UserError(f"cannot read {what} {text!r}: use numbers and ranges like {example}.") from None
    return out


def parse_seeds(text: str) -> list[int]:
    """'3,7,12' or '0-15' or a mix ('1,4-6') -> list of ints."""
    seeds = parse_int_list(text, what="seeds", example="'3,7,12' or '0-15'", noun="seeds")
    if not seeds:
        raise UserError(f"no seeds in {text!r}.")
    if any(s < 0 for s in seeds):
        raise UserError(f"seeds must be non-negative: {text!r}.")
    if len(seeds) > MAX_SEEDS:
        raise UserError(f"seeds {text!r} name more than {MAX_SEEDS:,} seeds; ask for fewer at a time.")
    if max(seeds) > SEED_MAX:
        raise UserError(f"seeds {text!r}: a seed is at most {SEED_MAX}.")
    return seeds
