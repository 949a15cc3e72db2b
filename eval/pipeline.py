"""`evaluate(...)`: one call behind `ganplug eval` and `from ganplug.eval import evaluate`.

Reads each input once, feeding every requested feature consumer (Inception, handcrafted, SWD patches,
MS-SSIM pairs) from the same batches; real-set features are cached by content hash. Metrics whose
network file is missing are skipped with a one-line reason while the network-free ones still run;
if nothing can run, a WeightsError names the missing file. The returned dict is the documented JSON
schema (docs/eval.md, "ganplug-eval/1").
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ganplug import __version__
from ganplug.device import make_runtime
from ganplug.errors import DataError, UserError
from ganplug.eval.features import handcrafted, weights
from ganplug.eval.features.cache import FeatureCache, cache_key
from ganplug.eval.metrics import fid as fid_m
from ganplug.eval.metrics import inception_score, kid, msssim, prdc, swd
from ganplug.eval.sources import CheckpointSource, Source, StatsSource, hex_color, open_source, resolve_background

SCHEMA = "ganplug-eval/1"
ALL_METRICS = ("fid", "kid", "is", "ppl", "pr", "dc", "swd", "msssim")
DEFAULT_METRICS = ("fid", "kid", "is", "pr", "dc", "swd", "msssim")
NEEDS_REAL = {"fid", "kid", "pr", "dc", "swd"}
INCEPTION_METRICS = {"fid", "kid", "is"}


@dataclass
class EvalOptions:
    metrics: tuple[str, ...] = DEFAULT_METRICS
    n: int = 10000  # fake samples drawn from a generator; at most this many images from folders/datasets
    device: str = "auto"
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA) | auto; Inception features only
    fid_mode: str = "clean"
    weights_dir: str | None = None
    allow_unverified_weights: bool = False
    batch_size: int = 64
    seed: int = 0  # first generator seed; also seeds subsets, KID, SWD
    truncation: float = 1.0
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    pr_features: str = "auto"  # auto (inception if available, else handcrafted) | inception | handcrafted
    ppl_samples: int = 2000
    ppl_space: str = "auto"
    ppl_sampling: str = "end"
    ppl_epsilon: float = 1e-4
    swd_images: int = 1024
    msssim_pairs: int = 1000
    cache_dir: str | None = None
    use_cache: bool = True
    workers: int = 2
    save_stats: str | None = None  # write the fake set's Inception mu/sigma here (.npz)
    background: str = "auto"  # transparency: auto (FAKE's training colour) | none (alpha dropped) | a colour


def parse_metrics(metrics) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = [m for m in metrics.replace(" ", "").split(",") if m]
    metrics = tuple(dict.fromkeys(m.lower() for m in metrics))
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown or not metrics:
        raise UserError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; "
                        f"choose from {', '.join(ALL_METRICS)}.")
    return metrics


@dataclass
class Collected:
    pool: list[np.ndarray] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)
    hand: list[np.ndarray] = field(default_factory=list)
    swd: swd.SWDDescriptors | None = None
    msssim: msssim.PairMSSSIM | None = None
    swd_left: int = 0
    seconds: float = 0.0

    def array(self, name: str) -> np.ndarray | None:
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else None


def _scan(source: Source, opts: EvalOptions, *, inception, want_hand: bool, want_swd: bool, want_msssim: bool,
          swd_size: int) -> Collected:
    c = Collected()
    if want_swd:
        c.swd = swd.SWDDescriptors(swd_size, seed=opts.seed)
        c.swd_left = opts.swd_images
    if want_msssim:
        c.msssim = msssim.PairMSSSIM(max_pairs=opts.msssim_pairs)
    if inception is None and not want_hand and not want_swd and not want_msssim:
        return c
    t0 = time.perf_counter()
    for batch in source.batches(opts.batch_size):
        if inception is not None:
            feats = inception.extract(batch.arrays)
            c.pool.append(feats.pool)
            c.logits.append(feats.logits)
        need_stack = want_hand or (c.swd is not None and c.swd_left > 0) or (
            c.msssim is not None and c.msssim.count < c.msssim.max_pairs)
        if need_stack:
            x = batch.stacked(swd_size)
            if want_hand:
                c.hand.append(handcrafted.handcrafted_features(x))
            if c.swd is not None and c.swd_left > 0:
                c.swd.update(x[: c.swd_left])
                c.swd_left -= min(len(x), c.swd_left)
            if c.msssim is not None:
                c.msssim.update(x)
    c.seconds = time.perf_counter() - t0
    return c


def _cached_scan(source: Source, opts: EvalOptions, cache: FeatureCache, inception, want_hand: bool,
                 want_swd: bool, want_msssim: bool, swd_size: int) -> tuple[Collected, dict]:
    """Real-set scan with Inception/handcrafted features served from (and stored to) the cache."""
    info = {"inception": None, "handcrafted": None}
    content = source.content_hash() if cache.enabled else None
    keys = {}
    hits = {}
    if content is not None:
        if inception is not None:
            keys["inception"] = cache_key(content=content, extractor="inception-2015-12-05",
                                          weights=inception.found.sha256, layers="pool3+logits_unbiased",
                                          mode=inception.mode, precision=inception.runtime.precision,
                                          device=inception.runtime.device.type, v=1)
        if want_hand:
            keys["handcrafted"] = cache_key(content=content, extractor=handcrafted.NAME, size=swd_size, v=1)
        for name, key in keys.items():
            hit = cache.load(key)
            if hit is not None:
                hits[name] = hit
                info[name] = "cache hit"
    c = _scan(source, opts, inception=None if "inception" in hits else inception,
              want_hand=want_hand and "handcrafted" not in hits, want_swd=want_swd, want_msssim=want_msssim,
              swd_size=swd_size)
    if "inception" in hits:
        c.pool, c.logits = [hits["inception"]["pool"]], [hits["inception"]["logits"]]
    elif "inception" in keys and c.pool:
        cache.save(keys["inception"], {"pool": c.array("pool"), "logits": c.array("logits")},
                   {"source": source.describe(), "extractor": "inception-2015-12-05", "mode": inception.mode})
        info["inception"] = "computed, cached"
    if "handcrafted" in hits:
        c.hand = [hits["handcrafted"]["features"]]
    elif "handcrafted" in keys and c.hand:
        cache.save(keys["handcrafted"], {"features": c.array("hand")},
                   {"source": source.describe(), "extractor": handcrafted.NAME})
        info["handcrafted"] = "computed, cached"
    return c, info


def _metric_guard(results: dict, skipped: dict, name: str, fn) -> None:
    try:
        results[name] = fn()
    except DataError as e:
        skipped[name] = str(e)


def evaluate(fake, real=None, *, json_path=None, force: bool = False, options: EvalOptions | None = None,
             **kwargs) -> dict:
    """Evaluate FAKE against REAL; keyword arguments are EvalOptions fields. Returns the JSON dict."""
    opts = options or EvalOptions()
    if kwargs:
        known = set(EvalOptions.__dataclass_fields__)
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise UserError(f"evaluate() got unknown option(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}.")
        opts = EvalOptions(**{**asdict(opts), **kwargs})
    opts.metrics = parse_metrics(opts.metrics)
    if opts.n < 1:
        raise UserError(f"--n must be at least 1, not {opts.n}.")
    if json_path is not None and Path(json_path).exists() and not force:
        raise UserError(f"{json_path} exists; pass --force to overwrite it or choose another --json path.")
    t_start = time.perf_counter()
    runtime = make_runtime(opts.device, opts.precision)
    fake_src = open_source(fake, role="fake", n=opts.n, seed=opts.seed, runtime=runtime, truncation=opts.truncation,
                           workers=opts.workers, background=resolve_background(opts.background))
    background = resolve_background(opts.background, fake_src)
    real_src = (open_source(real, role="real", n=None, seed=opts.seed, workers=opts.workers, background=background)
                if real else None)

    skipped: dict[str, str] = {}
    notes: list[str] = []
    if background is not None and opts.background == "auto" and real_src is not None and real_src.background:
        notes.append(f"transparent REAL images were composited onto {hex_color(background)}, the background "
                     "FAKE was trained on (--background none drops alpha as clean-fid does)")
    wanted = list(opts.metrics)
    if real_src is None:
        for m in wanted:
            if m in NEEDS_REAL:
                skipped[m] = "needs a REAL set (--real)"
    elif isinstance(real_src, StatsSource):
        for m in wanted:
            if m in NEEDS_REAL - {"fid"}:
                skipped[m] = f"REAL is a statistics file ({real_src.path.name}); only FID can use it"
    if "ppl" in wanted and not isinstance(fake_src, CheckpointSource):
        skipped["ppl"] = "needs a generator (a checkpoint or run folder as FAKE), not images"

    weights_info: dict[str, dict] = {}
    # Inception
    want_inception = any(m in INCEPTION_METRICS and m not in skipped for m in wanted) or (
        opts.pr_features in ("auto", "inception") and any(m in ("pr", "dc") and m not in skipped for m in wanted))
    inception = None
    if want_inception:
        found = weights.locate("inception", opts.weights_dir, opts.allow_unverified_weights)
        if found is None:
            reason = f"{weights.INCEPTION.filename} not found (run `ganplug weights list`)"
            for m in wanted:
                if m in INCEPTION_METRICS and m not in skipped:
                    skipped[m] = reason
            if opts.pr_features == "inception":
                for m in ("pr", "dc"):
                    if m in wanted and m not in skipped:
                        skipped[m] = reason
        else:
            from ganplug.eval.features.inception import InceptionExtractor

            inception = InceptionExtractor(found, runtime, opts.fid_mode, workers=opts.workers)
            weights_info["inception"] = found.as_json()
            notes += inception.notes
    pr_space = None
    if any(m in ("pr", "dc") and m not in skipped for m in wanted):
        pr_space = "inception-pool3" if inception is not None else handcrafted.NAME
        if opts.pr_features == "handcrafted":
            pr_space = handcrafted.NAME
        if pr_space == handcrafted.NAME and opts.pr_features == "auto":
            notes.append(f"precision/recall/density/coverage computed in the network-free {handcrafted.NAME} space")
    # VGG16 / LPIPS for PPL
    lpips_model = None
    if "ppl" in wanted and "ppl" not in skipped:
        vgg = weights.locate("vgg16", opts.weights_dir, opts.allow_unverified_weights)
        lin = weights.locate("lpips-vgg16", opts.weights_dir, opts.allow_unverified_weights)
        if vgg is None or lin is None:
            missing = [w.filename for w, f in ((weights.VGG16, vgg), (weights.LPIPS_VGG, lin)) if f is None]
            skipped["ppl"] = f"{' and '.join(missing)} not found (run `ganplug weights list`)"
        else:
            from ganplug.eval.features.lpips import LPIPSVGG

            lpips_model = LPIPSVGG.from_files(vgg, lin).to(runtime.device)
            weights_info["vgg16"], weights_info["lpips-vgg16"] = vgg.as_json(), lin.as_json()

    runnable = [m for m in wanted if m not in skipped]
    if not runnable:
        missing_files = [weights.INCEPTION] if any("inception" in r for r in skipped.values()) else []
        if "ppl" in wanted and "not found" in skipped.get("ppl", ""):
            missing_files += [weights.VGG16, weights.LPIPS_VGG]
        if missing_files:
            raise weights.WeightsError(" ".join(weights.missing_message(w, opts.weights_dir) for w in missing_files))
        raise UserError("none of the requested metrics can run: "
                        + "; ".join(f"{k}: {v}" for k, v in skipped.items()))

    # one pass over each input
    swd_size = fake_src.size or (real_src.size if real_src else 0)
    if real_src is not None and real_src.size and fake_src.size and real_src.size != fake_src.size:
        notes.append(f"FAKE is {fake_src.size} px and REAL {real_src.size} px; REAL resized to {fake_src.size} px "
                     "for SWD, MS-SSIM and handcrafted features")
    want_hand = pr_space == handcrafted.NAME
    need_inc_fake = inception is not None and any(m in runnable for m in ("fid", "kid", "is")) or (
        inception is not None and pr_space == "inception-pool3")
    need_inc_real = inception is not None and any(m in runnable for m in ("fid", "kid")) or (
        inception is not None and pr_space == "inception-pool3")
    fake_c = _scan(fake_src, opts, inception=inception if need_inc_fake else None, want_hand=want_hand,
                   want_swd="swd" in runnable, want_msssim="msssim" in runnable, swd_size=swd_size)
    cache = FeatureCache(Path(opts.cache_dir) if opts.cache_dir else None, enabled=opts.use_cache)
    real_c, cache_info = Collected(), {}
    if real_src is not None and not isinstance(real_src, StatsSource):
        real_c, cache_info = _cached_scan(real_src, opts, cache, inception if need_inc_real else None, want_hand,
                                          "swd" in runnable, "msssim" in runnable, swd_size)

    results: dict[str, dict] = {}
    fake_pool, real_pool = fake_c.array("pool"), real_c.array("pool")
    dev = runtime.device if runtime.device.type == "cuda" else "cpu"
    if "fid" in runnable:
        def _fid():
            if isinstance(real_src, StatsSource):
                mu1, s1 = fid_m.gaussian_stats(fake_pool)
                value = fid_m.frechet_distance(mu1, s1, real_src.mu, real_src.sigma, dev)
            else:
                fid_m.check_finite(real_pool, "REAL Inception features")
                value = fid_m.fid_from_features(fake_pool, real_pool, dev)
            return {"value": value, "mode": opts.fid_mode,
                    "fake_samples": int(len(fake_pool)),
                    "real_samples": None if isinstance(real_src, StatsSource) else int(len(real_pool))}
        _metric_guard(results, skipped, "fid", _fid)
    if "kid" in runnable:
        def _kid():
            fid_m.check_finite(fake_pool, "FAKE Inception features")
            fid_m.check_finite(real_pool, "REAL Inception features")
            r = kid.kid(fake_pool, real_pool, opts.kid_subsets, opts.kid_subset_size, opts.seed)
            if r.note:
                notes.append(r.note)
            return {"value": r.mean, "std": r.std, "subsets": r.subsets, "subset_size": r.subset_size}
        _metric_guard(results, skipped, "kid", _kid)
    if "is" in runnable:
        def _is():
            logits = fake_c.array("logits")
            fid_m.check_finite(logits, "FAKE Inception logits")
            r = inception_score.inception_score(logits, opts.is_splits)
            if r.note:
                notes.append(r.note)
            return {"value": r.mean, "std": r.std, "splits": r.splits}
        _metric_guard(results, skipped, "is", _is)
    if pr_space is not None:
        fa = fake_pool if pr_space == "inception-pool3" else fake_c.array("hand")
        ra = real_pool if pr_space == "inception-pool3" else real_c.array("hand")
        # (metric, function, k, the number reported as "value")
        for name, fn, k, headline in (("pr", prdc.precision_recall, 3, "precision"),
                                      ("dc", prdc.density_coverage, 5, "coverage")):
            if name not in runnable:
                continue

            def _run(fn=fn, k=k):
                fid_m.check_finite(fa, "FAKE features")
                return {"value": None, **fn(ra, fa, k), "feature_space": pr_space}
            _metric_guard(results, skipped, name, _run)
            if name in results:
                results[name]["value"] = results[name][headline]
    if "swd" in runnable:
        def _swd():
            r = swd.swd(real_c.swd.finalize(), fake_c.swd.finalize(), fake_c.swd.levels, opts.seed)
            return {**r, "images": int(min(opts.swd_images, fake_src.count, real_src.count)), "resolution": swd_size}
        _metric_guard(results, skipped, "swd", _swd)
    if "msssim" in runnable:
        def _ms():
            r = fake_c.msssim.result()
            if r["pairs"] == 0:
                raise DataError("MS-SSIM diversity needs at least 2 FAKE images.")
            out = {**r, "real": real_c.msssim.result()["value"] if real_c.msssim is not None and
                   real_c.msssim.count else None}
            return out
        _metric_guard(results, skipped, "msssim", _ms)
    if "ppl" in runnable and lpips_model is not None:
        from ganplug.eval.metrics.ppl import perceptual_path_length

        results["ppl"] = perceptual_path_length(
            fake_src.G, lpips_model, style_based=fake_src.spec.style_based, n=opts.ppl_samples,
            epsilon=opts.ppl_epsilon, space=opts.ppl_space, sampling=opts.ppl_sampling,
            batch_size=opts.batch_size, seed=opts.seed, device=runtime.device)

    if opts.save_stats and fake_pool is not None and len(fake_pool) >= 2:
        mu, sigma = fid_m.gaussian_stats(fake_pool)
        fid_m.save_stats(opts.save_stats, mu, sigma)
        notes.append(f"FAKE Inception statistics written to {opts.save_stats}")

    unverified = [k for k, w in weights_info.items() if not w["verified"]]
    if unverified:
        notes.append(f"weights not verified against a published hash: {', '.join(unverified)}; numbers are comparable "
                     "only to others made with the same files")
    out = {
        "schema": SCHEMA,
        "ganplug_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "fake": fake_src.describe(),
        "real": real_src.describe() if real_src else None,
        "settings": {k: v for k, v in asdict(opts).items() if k not in ("cache_dir", "weights_dir")}
        | {"metrics": list(opts.metrics), "device": str(runtime.device), "precision": runtime.precision},
        "weights": weights_info,
        "metrics": {m: results[m] for m in wanted if m in results},
        "skipped": {m: skipped[m] for m in wanted if m in skipped},
        "notes": notes,
        "cache": cache_info,
        "timings": {"fake_features_s": round(fake_c.seconds, 3), "real_features_s": round(real_c.seconds, 3),
                    "total_s": round(time.perf_counter() - t_start, 3)},
    }
    out["settings"]["metrics"] = list(opts.metrics)
    if not out["metrics"]:
        raise UserError("no metric could be computed: " + "; ".join(f"{k}: {v}" for k, v in out["skipped"].items()))
    if json_path is not None:
        write_json(Path(json_path), out)
    return out


def write_json(path: Path, data: dict) -> None:
    from ganplug.atomic import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(data, indent=2, allow_nan=False, default=_jsonable).encode())


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (Path, torch.device)):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")
