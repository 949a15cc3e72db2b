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

from ganplug.eval.features import handcrafted
from ganplug.eval.features.cache import FeatureCache, cache_key
from ganplug.eval.registry import Accumulator, Side
from ganplug.eval.sources import Source
from ganplug.progress import Bar

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


def _scan_batches(source: Source, plan: Plan, batch_size: int, out: Scanned, bar: Bar | None) -> None:
    pool, logits, hand, kept = [], [], [], []
    nets: dict[str, list[np.ndarray]] = {name: [] for name in plan.networks}
    row, t0 = 0, time.perf_counter()
    for batch in source.batches(batch_size):
        n = len(batch.arrays)
        for name, extractor in plan.networks.items():
            nets[name].append(extractor.extract(batch.arrays))
        if plan.inception is not None:
            feats = plan.inception.extract(batch.arrays)
            pool.append(feats.pool)
            logits.append(feats.logits)
        if plan.hand or plan.streams or len(plan.keep):
            x = batch.stacked(plan.size)
            if plan.hand:
                hand.append(handcrafted.handcrafted_features(x))
            for acc in plan.streams.values():
                acc.update(x)
            lo, hi = np.searchsorted(plan.keep, [row, row + n])
            if hi > lo:
                kept.append(x[torch.as_tensor(plan.keep[lo:hi] - row)])
        row += n
        if bar is not None and row < source.count:
            bar.update(row, _speed(bar))
        elif bar is not None:
            bar.done = row  # the closing line shows it
    out.side.pool, out.side.logits, out.side.hand = _concat(pool), _concat(logits), _concat(hand)
    out.side.features.update({name: _concat(parts) for name, parts in nets.items() if parts})
    out.kept = torch.cat(kept) if kept else None
    out.seconds = time.perf_counter() - t0


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
    keys = _keys(source, plan, cache)
    hits = {name: hit for name, key in keys.items() if (hit := cache.load(key)) is not None}
    todo = Plan(plan.size, None if "inception" in hits else plan.inception, plan.hand and "handcrafted" not in hits,
                plan.streams, plan.keep, {k: v for k, v in plan.networks.items() if k not in hits})
    out = scan(source, todo, batch_size, label)
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
