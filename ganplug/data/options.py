"""Everything that decides what a prepared dataset contains, as one plain dataclass.

The same options are recorded in dataset.json, compared on re-runs (to make an identical re-run a
no-op and to say which options differ), and hashed into the cache key for raw-folder training.
`workers` is absent on purpose: it changes speed, never the output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ganplug.data.augment_offline import AugmentSpec
from ganplug.data.decode import DEFAULT_MAX_PIXELS, parse_color
from ganplug.data.dedup import DEFAULT_THRESHOLD
from ganplug.data.geometry import FITS, RESAMPLERS
from ganplug.data.pairs import PairSpec, parse_pairs
from ganplug.data.sheets import SplitSpec, parse_split
from ganplug.data.sources import HASH_METHODS
from ganplug.errors import UserError

MIN_SIZE, MAX_SIZE = 4, 4096


def parse_range(text: str | tuple[float, float] | None, name: str) -> tuple[float, float] | None:
    """'0.7,1.2' -> (0.7, 1.2); positive factors, low <= high."""
    if text is None:
        return None
    if isinstance(text, str):
        parts = text.replace(":", ",").split(",")
        try:
            lo, hi = (float(p) for p in parts)
        except ValueError:
            raise UserError(f"--{name} {text!r} must be two factors 'LOW,HIGH', e.g. 0.7,1.2.") from None
    else:
        lo, hi = (float(v) for v in text)
    if not (0 < lo <= hi <= 10):
        raise UserError(f"--{name} {lo},{hi}: need 0 < LOW <= HIGH <= 10 (1 means unchanged).")
    return (lo, hi)


@dataclass
class PrepOptions:
    """What `ganplug prep` does; every field is an option of the command (see docs/data.md)."""

    size: int = 128
    background: str = "white"  # white | black | gray | #rrggbb: what transparency is composited onto
    keep_alpha: bool | None = None  # store RGBA instead of compositing; None: when most images are transparent
    fit: str = "pad"  # pad | crop | stretch
    resample: str = "lanczos"  # lanczos | box | bicubic | bilinear
    split: str = "auto"  # auto | halves | none | grid RxC
    dedup: bool = True
    dedup_threshold: float = DEFAULT_THRESHOLD  # mean difference (0-255) of perceptual thumbnails
    mirror: bool = False
    brightness: tuple[float, float] | None = None
    color: tuple[float, float] | None = None
    jitter: int | None = None  # resize to this, random-crop back to size (pix2pix: 286 for 256)
    copies: int | None = None  # augmented copies per image; None: 1 if any augmentation is on, else 0
    seed: int | None = None  # None: a random seed, recorded in dataset.json
    holdout: float = 0.0  # fraction of source files held out as the evaluation reference
    pairs: str | None = None  # None | edges | A_DIR,B_DIR
    max_pixels: int = DEFAULT_MAX_PIXELS
    hash: str = "stat"  # how sources are fingerprinted: stat (path, size, mtime) | contents (bytes)

    def __post_init__(self) -> None:
        self.brightness = parse_range(self.brightness, "brightness")
        self.color = parse_range(self.color, "color")
        self.validate()

    def validate(self) -> None:
        if not (MIN_SIZE <= int(self.size) <= MAX_SIZE):
            raise UserError(f"--size {self.size} is out of range; use {MIN_SIZE}..{MAX_SIZE} (e.g. 64, 128, 256).")
        parse_color(self.background)
        if self.fit not in FITS:
            raise UserError(f"--fit {self.fit!r}: use one of {', '.join(FITS)}.")
        if self.resample not in RESAMPLERS:
            raise UserError(f"--resample {self.resample!r}: use one of {', '.join(RESAMPLERS)}.")
        self.split_spec  # noqa: B018 - parses and raises on a bad value
        if not (0 <= self.dedup_threshold <= 64):
            raise UserError(f"--dedup-threshold {self.dedup_threshold}: use 0..64 (mean difference in 0-255 levels).")
        if self.jitter is not None and self.jitter < self.size:
            raise UserError(f"--jitter {self.jitter} must be at least --size {self.size} (e.g. 286 for 256).")
        if self.copies is not None and not (0 <= self.copies <= 64):
            raise UserError(f"--copies {self.copies}: use 0..64.")
        if not (0.0 <= self.holdout < 1.0):
            raise UserError(f"--holdout {self.holdout}: use a fraction in [0, 1), e.g. 0.2.")
        if self.max_pixels < 1:
            raise UserError("--max-pixels must be positive.")
        if self.hash not in HASH_METHODS:
            raise UserError(f"--hash {self.hash!r}: use one of {', '.join(HASH_METHODS)}.")
        pairs = self.pair_spec
        if pairs is not None and self.split_spec.mode not in ("none", "auto"):
            raise UserError("--pairs cannot be combined with --split halves/grid; pairs are never split.")

    @property
    def split_spec(self) -> SplitSpec:
        return parse_split(self.split)

    @property
    def pair_spec(self) -> PairSpec | None:
        return parse_pairs(self.pairs)

    @property
    def background_rgb(self) -> tuple[int, int, int]:
        return parse_color(self.background)

    @property
    def effective_copies(self) -> int:
        if self.copies is not None:
            return self.copies
        return 1 if (self.mirror or self.brightness or self.color or self.jitter) else 0

    @property
    def augment(self) -> AugmentSpec:
        return AugmentSpec(self.mirror, self.brightness, self.color, self.jitter, self.effective_copies)

    @property
    def channels(self) -> int:
        if self.keep_alpha is None:
            raise ValueError("keep_alpha is unresolved (auto); prepare_dataset decides it from the images")
        return 4 if self.keep_alpha else 3

    def recorded(self) -> dict[str, Any]:
        """JSON-ready, normalised: what dataset.json stores and re-runs compare."""
        d = asdict(self)
        d["brightness"] = list(self.brightness) if self.brightness else None
        d["color"] = list(self.color) if self.color else None
        d["split"] = str(self.split_spec)
        d["pairs"] = str(self.pair_spec) if self.pair_spec else None
        d["copies"] = self.effective_copies
        d["background"] = "#{:02x}{:02x}{:02x}".format(*self.background_rgb)
        return d


def differing_options(old: dict[str, Any], new: dict[str, Any], *, ignore: tuple[str, ...] = ()) -> list[str]:
    """Human lines 'name: old -> new' for every option that differs."""
    lines = []
    for k in sorted(set(old) | set(new)):
        if k in ignore:
            continue
        if old.get(k) != new.get(k):
            lines.append(f"{k}: {old.get(k)!r} -> {new.get(k)!r}")
    return lines
