"""One pass over one input: every array the metrics, the collapse battery and the report need.

A `Plan` says what to compute from each decoded batch (Inception features, handcrafted features, the
metrics' image accumulators, which images to keep); `scan` reads the source exactly once to do it all.
Real-set features come from the cache when they can (`cached_scan`), and are stored to it otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ganplug.errors import UserError
from ganplug.eval.features import handcrafted
from ganplug.eval.features.cache import FeatureCache, cache_key
from ganplug.eval.registry import Accumulator, Side
from ganplug.eval.sources import Source
from ganplug.progress import Bar
from ganplug.train import distributed

INCEPTION_NAME = "inception-2015-12-05"


@dataclass
class Plan:
    size: int  # the common size images are resized to for everything but Inception
    inception: object | None = None  # an InceptionExtractor: pool3 features and logits of every image
    hand: bool = False  # handcrafted features of every image
    streams: dict[str, Accumulator] = field(default_factory=dict)  # metric name -> accumulator fed every batch
    keep: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted rows whose images are kept
    # feature space name -> extractor (DINOv2, CLIP): `extract(list of HWC uint8 arrays) -> [N, D] array`
    networks: dict[str, object] = field(default_factory=dict)

    def reads_images(self) -> bool:
        return (self.inception is not None or self.hand or bool(self.streams) or len(self.keep) > 0
                or bool(self.networks))


@dataclass
class Scanned:
    side: Side
    kept: torch.Tensor | None = None  # uint8 NCHW images at plan.keep, in that order
    seconds: float = 0.0
    cache: dict = field(default_factory=lambda: {"inception": None, "handcrafted": None})


def _concat(parts: list[np.ndarray]) -> np.ndarray | None:
    return np.concatenate(parts) if parts else None


def _bar(label: str | None, source: Source) -> Bar | None:
    return Bar(label, source.count, unit="img") if label else None


def _speed(bar: Bar) -> str:
    """Images/s for the live bar (its columns have none; a pipe's lines already carry the rate)."""
    rate = bar.rate() if bar.live else None
    return f"{rate:,.1f} img/s" if rate else ""


def finish(bar: Bar | None, done: int, text: str = "") -> None:
    """Close `bar` at `done`: in a pipe the closing line is the final one, so the last update is not printed
    twice (once by `update`, once by `close`); on a terminal the live bar is moved there first."""
    if bar is None:
        return
    if bar.live:
        bar.update(done, text)
    else:
        bar.done, bar.text = done, text
    bar.close()


def scan(source: Source, plan: Plan, batch_size: int, label: str | None = None) -> Scanned:
    """Read `source` once, feeding every consumer in `plan` from the same batches; with `label`, progress
    (images/s, ETA) on stderr: a generator is sampled inside this loop, so the bar covers sampling too."""
    out = Scanned(Side(count=source.count, streams=plan.streams))
    if not plan.reads_images():
        return out
    bar = _bar(label, source)
    try:
        _scan_batches(source, plan, batch_size, out, bar)
    finally:
        if bar is not None:
            finish(bar, bar.done, _speed(bar))
    return out


@dataclass
class _Part:
    """What one batch contributed: its features, its images for the streams and its kept images."""

    n: int
    pool: np.ndarray | None = None
    logits: np.ndarray | None = None
    hand: np.ndarray | None = None
    nets: dict[str, np.ndarray] = field(default_factory=dict)
    images: torch.Tensor | None = None  # uint8 NCHW at plan.size, for the streams (None when there are none)
    kept: torch.Tensor | None = None  # the batch's images at plan.keep rows


def _work(batch, plan: Plan, row: int) -> _Part:
    """Features (and the resized images) of one batch whose first image is row `row` of the input."""
    n = len(batch.arrays)
    part = _Part(n)
    for name, extractor in plan.networks.items():
        part.nets[name] = extractor.extract(batch.arrays)
    if plan.inception is not None:
        feats = plan.inception.extract(batch.arrays)
        part.pool, part.logits = feats.pool, feats.logits
    if plan.hand or plan.streams or len(plan.keep):
        x = batch.stacked(plan.size)
        if plan.hand:
            part.hand = handcrafted.handcrafted_features(x)
        if plan.streams:
            part.images = x
        lo, hi = np.searchsorted(plan.keep, [row, row + n])
        if hi > lo:
            part.kept = x[torch.as_tensor(plan.keep[lo:hi] - row)]
    return part


@dataclass
class _Failed:
    """A user error one rank met in its batch, on its way to rank 0."""

    message: str
    exit_code: int


class _Gathered:
    """The pass's arrays, absorbed batch by batch in input order."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.pool, self.logits, self.hand, self.kept = [], [], [], []
        self.nets: dict[str, list[np.ndarray]] = {name: [] for name in plan.networks}
        self.rows = 0

    def absorb(self, part: _Part) -> None:
        for name, feats in part.nets.items():
            self.nets[name].append(feats)
        for parts, value in ((self.pool, part.pool), (self.logits, part.logits), (self.hand, part.hand),
                             (self.kept, part.kept)):
            if value is not None:
                parts.append(value)
        if part.images is not None:
            for acc in self.plan.streams.values():
                acc.update(part.images)
        self.rows += part.n

    def into(self, out: Scanned) -> None:
        out.side.pool, out.side.logits, out.side.hand = _concat(self.pool), _concat(self.logits), _concat(self.hand)
        out.side.features.update({name: _concat(parts) for name, parts in self.nets.items() if parts})
        out.kept = torch.cat(self.kept) if self.kept else None


def _progress(bar: Bar | None, row: int, total: int) -> None:
    if bar is not None and row < total:
        bar.update(row, _speed(bar))
    elif bar is not None:
        bar.done = row  # the closing line shows it


def _scan_batches(source: Source, plan: Plan, batch_size: int, out: Scanned, bar: Bar | None) -> None:
    w = distributed.world()
    t0 = time.perf_counter()
    got = _Gathered(plan)
    if w.distributed:
        _scan_sharded(source, plan, batch_size, got, bar, w)
    else:
        for batch in source.batches(batch_size):
            got.absorb(_work(batch, plan, got.rows))
            _progress(bar, got.rows, source.count)
    if w.main:
        got.into(out)
    out.seconds = time.perf_counter() - t0


def _scan_sharded(source: Source, plan: Plan, batch_size: int, got: _Gathered, bar: Bar | None,
                  w: distributed.World) -> None:
    """Batch i of the input on rank i % W; after each round of W batches rank 0 gathers them and absorbs
    them in input order, so its arrays and streams are, bit for bit, what one process computes (the same
    batches, the same kernels). A user error on one rank (an unreadable file) travels to rank 0 with its
    rank, so that it is reported once and every rank stops."""
    batches = -(-source.count // batch_size)
    mine = source.batches(batch_size, every=w.size, offset=w.rank)
    for step in range(-(-batches // w.size)):
        index = step * w.size + w.rank
        part: _Part | _Failed | None = None
        error: UserError | None = None
        if index < batches:
            distributed.maybe_crash(step + 1)  # test hook (GANPLUG_TEST_CRASH_RANK / _STEP)
            try:
                part = _work(next(mine), plan, index * batch_size)
            except UserError as e:  # sent as text: not every error class pickles
                error, part = e, _Failed(str(e), e.exit_code)
        parts = distributed.gather_to_rank0(part)
        failed = [(r, p) for r, p in enumerate(parts or []) if isinstance(p, _Failed)]
        if failed:
            rank, f = failed[0]
            e = UserError(f"{f.message} (on rank {rank} of {w.size})")
            e.exit_code = f.exit_code
            raise e
        if error is not None:  # rank 0 reports it
            raise error
        for p in parts or []:
            if p is not None:
                got.absorb(p)
        _progress(bar, got.rows, source.count)


def _keys(source: Source, plan: Plan, cache: FeatureCache) -> dict[str, str]:
    if plan.inception is None and not plan.hand and not plan.networks:
        return {}  # nothing cacheable asked for: do not hash the whole set
    content = source.content_hash() if cache.enabled else None
    if content is None:
        return {}
    keys = {}
    if plan.inception is not None:
        inc = plan.inception
        keys["inception"] = cache_key(content=content, extractor=INCEPTION_NAME, weights=inc.found.sha256,
                                      layers="pool3+logits_unbiased", mode=inc.mode,
                                      precision=inc.runtime.precision, device=inc.runtime.device.type, v=1)
    if plan.hand:
        keys["handcrafted"] = cache_key(content=content, extractor=handcrafted.NAME, size=plan.size, v=1)
    for name, ext in plan.networks.items():
        keys[name] = cache_key(content=content, extractor=name, weights=ext.found.sha256,
                               device=ext.runtime.device.type, v=1)
    return keys


def cached_scan(source: Source, plan: Plan, cache: FeatureCache, batch_size: int,
                label: str | None = None) -> Scanned:
    """`scan` for the REAL set, with Inception/handcrafted features served from (and stored to) the cache."""
    main = distributed.world().main  # several ranks: rank 0 alone reads and writes the cache
    keys = _keys(source, plan, cache) if main else {}
    hits = {name: hit for name, key in keys.items() if (hit := cache.load(key)) is not None}
    hit_names = distributed.from_rank0(sorted(hits))  # every rank skips the same extractors
    todo = Plan(plan.size, None if "inception" in hit_names else plan.inception,
                plan.hand and "handcrafted" not in hit_names, plan.streams, plan.keep,
                {k: v for k, v in plan.networks.items() if k not in hit_names})
    out = scan(source, todo, batch_size, label)
    if not main:
        return out
    side = out.side
    if "inception" in hits:
        side.pool, side.logits = hits["inception"]["pool"], hits["inception"]["logits"]
        out.cache["inception"] = "cache hit"
    elif "inception" in keys and side.pool is not None:
        cache.save(keys["inception"], {"pool": side.pool, "logits": side.logits},
                   {"source": source.describe(), "extractor": INCEPTION_NAME, "mode": plan.inception.mode})
        out.cache["inception"] = "computed, cached"
    if "handcrafted" in hits:
        side.hand = hits["handcrafted"]["features"]
        out.cache["handcrafted"] = "cache hit"
    elif "handcrafted" in keys and side.hand is not None:
        cache.save(keys["handcrafted"], {"features": side.hand},
                   {"source": source.describe(), "extractor": handcrafted.NAME})
        out.cache["handcrafted"] = "computed, cached"
    for name in plan.networks:
        if name in hits:
            side.features[name] = hits[name]["features"]
            out.cache[name] = "cache hit"
        elif name in keys and name in side.features:
            cache.save(keys[name], {"features": side.features[name]}, {"source": source.describe(), "extractor": name})
            out.cache[name] = "computed, cached"
    return out
