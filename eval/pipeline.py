"""`evaluate(...)`: one call behind `ganplug eval` and `from ganplug.eval import evaluate`.

One pass per input: FAKE is sampled (or read) once and REAL read once; every requested metric (the
registry in eval/registry.py says what each needs), the collapse battery, the memorisation check and
the report are fed from the arrays of that pass. Real-set features are cached by content hash.

Nothing is skipped in silence: a metric named in `metrics` that cannot run (its network file is missing,
it needs REAL or a generator) stops the evaluation before any work (exit 2 in the CLI) naming the file
and how to get it; a default metric that cannot run is skipped with a line on stderr, in `skipped` and
in the report. Numbers from a stand-in or unverified network file, or outside what the published
network can produce, are flagged (`warnings`). `n="auto"` sizes the sample count to the machine
(eval/sizing.py) and says so before starting. The returned dict is the documented JSON schema
(docs/eval.md, "ganplug-eval/1").
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
from ganplug.eval import registry as reg
from ganplug.eval import sizing
from ganplug.eval import verdict as verdict_m
from ganplug.eval.features import handcrafted, weights
from ganplug.eval.features.cache import FeatureCache
from ganplug.eval.metrics import fid as fid_m
from ganplug.eval.options import DEFAULT_METRICS, EvalOptions, check_metric_options
from ganplug.eval.registry import METRICS, Metric, MetricInput
from ganplug.eval.report import ReportContent
from ganplug.eval.scan import Plan, Scanned, cached_scan, finish, scan
from ganplug.eval.sources import CheckpointSource, Source, StatsSource, hex_color, open_source, resolve_background
from ganplug.progress import Bar, stderr_console
from ganplug.train import distributed

SCHEMA = "ganplug-eval/1"
ALL_METRICS = tuple(METRICS)
PR_FEATURES = ("auto", "inception", "handcrafted", "dinov2")
COLLAPSE_FEATURES = ("handcrafted", "dinov2")
INCEPTION_SPACE = "inception-pool3"

__all__ = ["ALL_METRICS", "DEFAULT_METRICS", "EvalOptions", "Evaluation", "evaluate", "parse_metrics", "run",
           "write_json"]


def parse_metrics(metrics) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = [m for m in metrics.replace(" ", "").split(",") if m]
    metrics = tuple(dict.fromkeys(m.lower() for m in metrics))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise UserError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; "
                        f"choose from {', '.join(ALL_METRICS)}.")
    return metrics


def parse_n(n) -> int | str:
    """`--n`: a whole number of at least 1, or "auto" (sized to the machine)."""
    if isinstance(n, str) and n.strip().lower() == "auto":
        return "auto"
    try:
        value = int(n)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or (isinstance(n, float) and n != value):
        raise UserError(f"--n must be auto or a whole number of at least 1, not {n!r}.")
    return value


def resolve_options(options: EvalOptions | None, kwargs: dict) -> EvalOptions:
    """EvalOptions from `options` plus keyword overrides; an unknown keyword is an error, not ignored."""
    known = set(EvalOptions.__dataclass_fields__)
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise UserError(f"evaluate() got unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    opts = EvalOptions(**{**asdict(options or EvalOptions()), **kwargs})  # a copy: the caller's stays as given
    if opts.explicit_metrics is None:  # first resolution: metrics named by the caller must all run
        opts.explicit_metrics = opts.metrics is not None
    opts.metrics = parse_metrics(DEFAULT_METRICS if opts.metrics is None else opts.metrics)
    opts.n = parse_n(opts.n)
    check_metric_options(opts)
    if opts.pr_features not in PR_FEATURES:
        raise weights.WeightsError(f"--pr-features must be auto, inception, handcrafted or dinov2, not "
                                   f"{opts.pr_features!r}.")
    if opts.collapse_features not in COLLAPSE_FEATURES:
        raise weights.WeightsError(f"--collapse-features must be handcrafted or dinov2, not "
                                   f"{opts.collapse_features!r}.")
    return opts


# ----------------------------------------------------------------------------------------- inputs and networks


@dataclass
class Inputs:
    fake: Source
    real: Source | None
    runtime: object
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    missing: dict[str, list] = field(default_factory=dict)  # metric -> the WeightFiles it lacks
    unrunnable: set[str] = field(default_factory=set)  # skipped for its inputs or files, not for the data

    @property
    def real_images(self) -> bool:
        return self.real is not None and not isinstance(self.real, StatsSource)


def say(opts: EvalOptions, text: str) -> None:
    """One line on stderr before or between the long steps (nothing with progress off)."""
    if opts.progress:
        stderr_console().print(text, highlight=False, soft_wrap=True)


def open_inputs(fake, real, opts: EvalOptions) -> Inputs:
    runtime = make_runtime(opts.device, opts.precision)
    n = sizing.FULL_N if opts.n == "auto" else opts.n  # auto narrows it once the networks are timed
    fake_src = open_source(fake, role="fake", n=n, seed=opts.seed, runtime=runtime, truncation=opts.truncation,
                           workers=opts.workers, background=resolve_background(opts.background))
    background = resolve_background(opts.background, fake_src)
    if isinstance(fake_src, CheckpointSource):  # both sides on the same background (auto: FAKE's --background)
        fake_src.set_background(background)
    real_src = (open_source(real, role="real", n=None, seed=opts.seed, workers=opts.workers, background=background)
                if real else None)
    inputs = Inputs(fake_src, real_src, runtime)
    if background is not None and opts.background == "auto" and real_src is not None and real_src.background:
        inputs.notes.append(f"transparent REAL images were composited onto {hex_color(background)}, the background "
                            "FAKE was trained on (--background none drops alpha as clean-fid does)")
    return inputs


def input_skips(wanted: list[str], inputs: Inputs) -> dict[str, str]:
    """Metrics that cannot run on these inputs, with the reason (from each entry's declaration)."""
    skipped = {}
    for name in wanted:
        m = METRICS[name]
        if m.real == "required" and inputs.real is None:
            skipped[name] = "needs a REAL set (--real)"
        elif m.real == "required" and isinstance(inputs.real, StatsSource) and not m.stats_ok:
            skipped[name] = f"REAL is a statistics file ({inputs.real.path.name}); only FID can use it"
        elif reg.GENERATOR in m.needs and not isinstance(inputs.fake, CheckpointSource):
            skipped[name] = "needs a generator (a checkpoint or run folder as FAKE), not images"
    return skipped


@dataclass
class Networks:
    inception: object | None = None
    lpips: object | None = None
    space: str | None = None  # PR/DC feature space
    info: dict[str, dict] = field(default_factory=dict)  # the JSON's "weights"
    extra: dict[str, object] = field(default_factory=dict)  # feature space -> DINOv2 / CLIP extractor
    warnings: list[str] = field(default_factory=list)  # from loading (e.g. the slow TorchScript path)


def _wants_inception(m: Metric, pr_features: str) -> bool:
    return bool(m.needs & {reg.POOL, reg.LOGITS}) or (reg.SPACE in m.needs and pr_features in ("auto", "inception"))


def _load_inception(active: list[Metric], opts: EvalOptions, inputs: Inputs, nets: Networks) -> None:
    if not any(_wants_inception(m, opts.pr_features) for m in active):
        return
    found = weights.locate("inception", opts.weights_dir, opts.allow_unverified_weights)
    if found is None:
        reason = (f"{weights.INCEPTION.filename} not found (`ganplug weights fetch inception`, or "
                  "`ganplug weights list` for where to put it)")
        for m in active:
            if m.needs & {reg.POOL, reg.LOGITS} or (reg.SPACE in m.needs and opts.pr_features == "inception"):
                inputs.skipped[m.name] = reason
                inputs.missing[m.name] = [weights.INCEPTION]
        return
    from ganplug.eval.features.inception import InceptionExtractor

    say(opts, f"loading {found.spec.filename} ({found.status}) from {found.path.parent}")
    nets.inception = InceptionExtractor(found, inputs.runtime, opts.fid_mode, workers=opts.workers)
    nets.info["inception"] = found.as_json()
    inputs.notes.extend(nets.inception.notes)
    for warning in nets.inception.warnings:
        say(opts, f"warning: {warning}")
    nets.warnings.extend(nets.inception.warnings)


def _load_lpips(active: list[Metric], opts: EvalOptions, inputs: Inputs, nets: Networks) -> None:
    users = [m for m in active if reg.LPIPS in m.needs]
    if not users:
        return
    vgg = weights.locate("vgg16", opts.weights_dir, opts.allow_unverified_weights)
    lin = weights.locate("lpips-vgg16", opts.weights_dir, opts.allow_unverified_weights)
    if vgg is None or lin is None:
        missing = [w for w, f in ((weights.VGG16, vgg), (weights.LPIPS_VGG, lin)) if f is None]
        fetch = " ".join(w.key for w in missing)
        for m in users:
            inputs.skipped[m.name] = (f"{' and '.join(w.filename for w in missing)} not found (`ganplug weights "
                                      f"fetch {fetch}`, or `ganplug weights list` for where to put it)")
            inputs.missing[m.name] = missing
        return
    from ganplug.eval.features.lpips import LPIPSVGG

    say(opts, f"loading {vgg.spec.filename} ({vgg.status}) and {lin.spec.filename} ({lin.status})")
    nets.lpips = LPIPSVGG.from_files(vgg, lin).to(inputs.runtime.device)
    nets.info["vgg16"], nets.info["lpips-vgg16"] = vgg.as_json(), lin.as_json()


def _feature_network_specs() -> tuple:
    """(need, weights file, feature space, extractor class) of each feature network beyond Inception."""
    from ganplug.eval.features import clip, dinov2

    return ((reg.DINOV2, weights.DINOV2_VITL14, dinov2.NAME, dinov2.DinoV2Extractor),
            (reg.CLIP, weights.CLIP_VITL14_336, clip.NAME, clip.ClipExtractor))


def _load_feature_networks(active: list[Metric], opts: EvalOptions, inputs: Inputs, nets: Networks,
                           collapse: bool) -> None:
    """DINOv2 / CLIP, for the metrics that need them, PR/DC in DINOv2 space and a DINOv2-space verdict."""
    for need, spec, space, extractor in _feature_network_specs():
        users = [m for m in active if need in m.needs
                 or (need == reg.DINOV2 and reg.SPACE in m.needs and opts.pr_features == "dinov2")]
        for_verdict = need == reg.DINOV2 and collapse and opts.collapse_features == "dinov2"
        if not users and not for_verdict:
            continue
        found = weights.locate(spec.key, opts.weights_dir, opts.allow_unverified_weights)
        if found is None:
            if for_verdict:
                raise weights.WeightsError(f"--collapse-features dinov2 needs {spec.filename} (`ganplug weights fetch "
                                           f"{spec.key}`). " + weights.missing_message(spec, opts.weights_dir))
            for m in users:
                inputs.skipped[m.name] = (f"{spec.filename} not found (`ganplug weights fetch {spec.key}`, or "
                                          "`ganplug weights list` for where to put it)")
                inputs.missing[m.name] = [spec]
            continue
        say(opts, f"loading {spec.filename} ({found.status}) from {found.path.parent}")
        nets.extra[space] = extractor(found, inputs.runtime, workers=opts.workers)
        nets.info[spec.key] = found.as_json()


def load_networks(wanted: list[str], opts: EvalOptions, inputs: Inputs) -> Networks:
    """Locate and load the networks the runnable metrics need; a missing file skips its metrics."""
    nets = Networks()
    _load_inception([METRICS[n] for n in wanted if n not in inputs.skipped], opts, inputs, nets)
    _load_lpips([METRICS[n] for n in wanted if n not in inputs.skipped], opts, inputs, nets)
    _load_feature_networks([METRICS[n] for n in wanted if n not in inputs.skipped], opts, inputs, nets,
                           opts.collapse and inputs.real_images)
    if any(reg.SPACE in METRICS[n].needs for n in wanted if n not in inputs.skipped):
        auto = INCEPTION_SPACE if nets.inception is not None else handcrafted.NAME
        nets.space = handcrafted.NAME if opts.pr_features == "handcrafted" else auto
        if opts.pr_features == "dinov2":
            nets.space = reg.DINOV2_SPACE
        if nets.space == handcrafted.NAME and opts.pr_features == "auto":
            inputs.notes.append(f"precision/recall/density/coverage computed in the network-free {handcrafted.NAME} "
                                "space")
    return nets


def refuse_if_nothing_runs(wanted: list[str], inputs: Inputs, opts: EvalOptions) -> None:
    """Stop before any work when a metric named explicitly cannot run, or when none can.

    Asked for by name and impossible (a network file missing, no REAL, no generator): exit 2 saying why
    and how to fix it, rather than a report without it. Default metrics are skipped (see `announce`)."""
    skipped = inputs.skipped
    blocked = [m for m in wanted if m in inputs.unrunnable] if opts.explicit_metrics else []
    if not blocked and any(m not in skipped for m in wanted):
        return
    if not blocked:
        blocked = [m for m in wanted if m in skipped]
    files = list(dict.fromkeys(w for m in blocked for w in inputs.missing.get(m, [])))
    if files:
        names = ", ".join(m for m in blocked if m in inputs.missing)
        keys = " ".join(w.key for w in files)
        raise weights.WeightsError(f"--metrics asks for {names}, which cannot run without "
                                   f"{' and '.join(w.filename for w in files)} (`ganplug weights fetch {keys}`, or "
                                   "leave them out of --metrics). "
                                   + " ".join(weights.missing_message(w, opts.weights_dir) for w in files))
    raise UserError("the requested metrics cannot run: " + "; ".join(f"{m} {skipped[m]}" for m in blocked)
                    + ". Leave them out of --metrics or give what they need.")


def announce(wanted: list[str], inputs: Inputs, opts: EvalOptions) -> None:
    """Before any work: each default metric that will not run, with the reason, on its own line."""
    by_reason: dict[str, list[str]] = {}
    for m in wanted:
        if m in inputs.skipped:
            by_reason.setdefault(inputs.skipped[m], []).append(m)
    for reason, names in by_reason.items():
        say(opts, f"skipping {', '.join(names)}: {reason}")


# ----------------------------------------------------------------------------------------- the one pass


def _plan(runnable: list[Metric], nets: Networks, opts: EvalOptions, size: int, *, real: bool,
          keep: np.ndarray | None) -> Plan:
    """What one side's pass computes; REAL skips what only FAKE needs (`real="unused"`, e.g. IS logits)."""
    used = [m for m in runnable if not real or m.real != "unused"]
    pool = any(reg.POOL in m.needs or (reg.SPACE in m.needs and nets.space == INCEPTION_SPACE) for m in used)
    logits = any(reg.LOGITS in m.needs for m in used)
    hand = any(reg.HANDCRAFTED in m.needs or (reg.SPACE in m.needs and nets.space == handcrafted.NAME) for m in used)
    extra = {space: ext for space, ext in nets.extra.items()
             if any(_uses_space(m, space, nets.space) for m in used)
             or (space == reg.DINOV2_SPACE and keep is not None and opts.collapse_features == "dinov2")}
    plan = Plan(size, nets.inception if pool or logits else None, hand,
                keep=np.zeros(0, np.int64) if keep is None else keep, networks=extra)
    for m in used:
        if reg.IMAGES in m.needs:
            plan.streams[m.name] = m.stream(opts, size)
    return plan


def _uses_space(m: Metric, space: str, pr_space: str | None) -> bool:
    """Does metric `m` read the features of this DINOv2/CLIP space (directly, or as the PR/DC space)?"""
    need = reg.DINOV2 if space == reg.DINOV2_SPACE else reg.CLIP
    return need in m.needs or (reg.SPACE in m.needs and pr_space == space)


def refuse_streams(runnable: list[Metric], opts: EvalOptions, size: int, skipped: dict[str, str]) -> None:
    """A metric whose image accumulator refuses these images (SWD below 16 px) is skipped, not fatal."""
    for m in runnable:
        if reg.IMAGES in m.needs:
            try:
                m.stream(opts, size)
            except DataError as e:
                skipped[m.name] = str(e)


@dataclass
class Pass:
    """The arrays of the one pass over each input."""

    fake: Scanned
    real: Scanned | None  # None when REAL is absent or a statistics file
    size: int  # the common image size
    fake_keep: np.ndarray | None = None  # rows kept for the collapse battery and the report
    real_keep: np.ndarray | None = None
    networks: dict[str, object] = field(default_factory=dict)  # the DINOv2/CLIP extractors (verdict re-judging)

    @property
    def cache(self) -> dict:
        return self.real.cache if self.real is not None else {}


def common_size(inputs: Inputs) -> int:
    """FAKE's most common size: SWD, MS-SSIM, handcrafted features and the battery see every image at it."""
    fake, real = inputs.fake, inputs.real
    if real is not None and real.size and fake.size and real.size != fake.size:
        inputs.notes.append(f"FAKE is {fake.size} px and REAL {real.size} px; REAL resized to {fake.size} px "
                            "for SWD, MS-SSIM and handcrafted features")
    return fake.size or (real.size if real else 0)


def one_pass(runnable: list[Metric], nets: Networks, inputs: Inputs, opts: EvalOptions, size: int,
             collapse: bool) -> Pass:
    """Sample/read FAKE once and REAL once, computing everything in the plans from the same batches."""
    fake_keep = verdict_m.fake_rows(inputs.fake, opts.collapse_n, opts.seed) if collapse else None
    real_keep = verdict_m.real_rows(inputs.real, opts.seed) if collapse else None
    verb = "sampling + features" if isinstance(inputs.fake, CheckpointSource) else "features"
    fake = scan(inputs.fake, _plan(runnable, nets, opts, size, real=False, keep=fake_keep), opts.batch_size,
                f"FAKE {verb}" if opts.progress else None)
    real = None
    if inputs.real_images:
        cache = FeatureCache(Path(opts.cache_dir) if opts.cache_dir else None, enabled=opts.use_cache)
        real = cached_scan(inputs.real, _plan(runnable, nets, opts, size, real=True, keep=real_keep), cache,
                           opts.batch_size, "REAL features" if opts.progress else None)
    return Pass(fake, real, size, fake_keep, real_keep, nets.extra)


# ----------------------------------------------------------------------------------------- metrics


def compute_metrics(runnable: list[Metric], p: Pass, nets: Networks, inputs: Inputs, opts: EvalOptions) -> dict:
    """Each runnable metric from the pass's arrays; a DataError skips that metric with its message."""
    dev = inputs.runtime.device if inputs.runtime.device.type == "cuda" else "cpu"
    stats = (inputs.real.mu, inputs.real.sigma) if isinstance(inputs.real, StatsSource) else None
    m_in = MetricInput(opts, p.fake.side, p.real.side if p.real else None, stats, nets.space, p.size, dev,
                       inputs.fake if isinstance(inputs.fake, CheckpointSource) else None, nets.lpips, inputs.notes)
    results = {}
    # every=0: a line as each metric starts, so a slow one (PR's k-NN, PPL) is named while it runs
    bar = Bar("metrics", len(runnable), unit="metric", every=0) if opts.progress and runnable else None
    for i, m in enumerate(runnable):
        if bar is not None:
            bar.update(i, m.name)
        try:
            results[m.name] = m.compute(m_in)
        except DataError as e:
            inputs.skipped[m.name] = str(e)
    finish(bar, len(runnable), "done")
    return results


# What each network-based metric was computed with, and the range the published network can give.
NETWORK_KEYS = {"fid": ("inception",), "kid": ("inception",), "is": ("inception",), "ppl": ("vgg16", "lpips-vgg16"),
                "fd_dinov2": ("dinov2-vitl14",), "cmmd": ("clip-vitl14-336",)}
PLAUSIBLE_MAX = {"fid": 1000.0}  # published Inception pool3: distances between very different sets stay in the
# hundreds (noise vs faces ~400); millions only come from another network (a stand-in) or broken features
WEAK = ("stand-in", "hash differs", "hash not pinned")  # worst first


def _networks_of(name: str, entry: dict) -> tuple[str, ...]:
    if name in ("pr", "dc", "vendi"):
        spaces = {INCEPTION_SPACE: ("inception",), reg.DINOV2_SPACE: ("dinov2-vitl14",)}
        return spaces.get(entry.get("feature_space"), ())
    return NETWORK_KEYS.get(name, ())


def _weakest(keys: tuple[str, ...], info: dict[str, dict]) -> tuple[str, dict] | None:
    """The least trustworthy network file behind a metric (None: network-free or all verified)."""
    weak = [(k, info[k]) for k in keys if k in info and info[k].get("status", "verified") != "verified"]
    return min(weak, key=lambda kv: WEAK.index(kv[1]["status"])) if weak else None


def _concern(name: str, entry: dict, weak: tuple[str, dict] | None) -> str | None:
    """Why a network metric's number must not be read as a published-comparable value, or None."""
    value, high = entry.get("value"), PLAUSIBLE_MAX.get(name)
    if weak is not None and weak[1]["status"] in ("stand-in", "hash differs"):
        return weak[1]["status"]
    if isinstance(value, float | int) and high is not None and value > high:
        return "implausible"
    return None


def _warning(concern: str, key: str, w: dict, labels: list[str]) -> str:
    where = f"{w.get('file', key)} at {w.get('path', '?')}"
    what = ", ".join(labels)
    if concern == "stand-in":
        return (f"{what} come from a stand-in network file ({where}: seeded random weights made for tests), not the "
                f"published one: not comparable to published values (`ganplug weights fetch {key}` gets the real file)")
    if concern == "hash differs":
        return (f"{what} come from {where}, whose hash differs from the published file (--allow-unverified-weights): "
                "not comparable to published values")
    return (f"{what}: outside what the published network produces (FID stays below ~{PLAUSIBLE_MAX['fid']:,.0f}); "
            f"{where} could not be verified ({w.get('status', 'unverified')}), so it is probably not the published "
            f"file (`ganplug weights fetch {key}` gets it)")


def flag_provenance(results: dict, info: dict[str, dict]) -> list[str]:
    """Mark each network metric with where its file stands (`weights`, and `warning` when it matters) and
    return one warning per file for numbers from a stand-in or altered file, or outside what the published
    network can produce: never a bare FID of 3e6."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name, entry in results.items():
        keys = _networks_of(name, entry)
        if not keys:
            continue
        weak = _weakest(keys, info)
        entry["weights"] = "verified" if weak is None else weak[1]["status"]
        concern = _concern(name, entry, weak)
        if concern is not None:
            key = weak[0] if weak else keys[0]
            entry["warning"] = concern
            value = entry.get("value")
            groups.setdefault((concern, key), []).append(f"{name} {value:.4g}" if isinstance(value, float | int)
                                                         else name)
    return [_warning(concern, key, info.get(key, {}), labels) for (concern, key), labels in groups.items()]


def apply_sample_count(inputs: Inputs, nets: Networks, opts: EvalOptions, size: int,
                       runnable: list[str]) -> sizing.SampleCount:
    """Decide `--n` (timing one batch where it matters), narrow FAKE to it, and say it before starting."""
    real_count = inputs.real.count if inputs.real_images else 0
    device = inputs.runtime.device.type
    if opts.n == "auto" and device != "cuda" and opts.progress:
        say(opts, f"--n auto: timing {sizing.TIMING_BATCH} images through the generator and feature networks")
    dims = {INCEPTION_SPACE: 2048, reg.DINOV2_SPACE: 1024}
    pair_dim = dims.get(nets.space, handcrafted.DIM) if "pr" in runnable else 0
    timed = _AllFeatures([nets.inception, *nets.extra.values()]) if nets.extra else nets.inception
    count = None
    if distributed.world().main:  # several ranks: rank 0 times and decides, every rank draws the same seeds
        count = sizing.choose(opts.n, inputs.fake, real_count, timed, size, device, pair_dim)
    count = distributed.from_rank0(count)
    if count.n < inputs.fake.count:
        if isinstance(inputs.fake, CheckpointSource):
            inputs.fake.limit(count.n)
        else:  # the same seeded subset `--n count.n` would open
            inputs.fake = open_source(inputs.fake.path, role="fake", n=count.n, seed=opts.seed, workers=opts.workers,
                                      background=inputs.fake.background)
    opts.n = count.n
    message = count.message()
    if message:
        say(opts, message)
    return count


class _AllFeatures:
    """Every feature network of the pass behind one `extract`, so `--n auto` times them all."""

    def __init__(self, extractors: list) -> None:
        self.extractors = [e for e in extractors if e is not None]

    def extract(self, images: list[np.ndarray]) -> None:
        for e in self.extractors:
            e.extract(images)


def save_fake_stats(path: str | None, fake_pool: np.ndarray | None, notes: list[str]) -> None:
    if path and fake_pool is not None and len(fake_pool) >= 2:
        mu, sigma = fid_m.gaussian_stats(fake_pool)
        fid_m.save_stats(path, mu, sigma)
        notes.append(f"FAKE Inception statistics written to {path}")


# ----------------------------------------------------------------------------------------- collapse


@dataclass
class Collapse:
    json: dict  # the keys added to the JSON: feature_space, collapse, memorisation (losses, checkpoints)
    report: ReportContent


def _kept_features(scanned: Scanned, keep: np.ndarray, space: str = handcrafted.NAME) -> np.ndarray | None:
    """Features of the kept images in `space`, when the pass already computed them for every image."""
    feats = scanned.side.space(space)
    return None if feats is None else feats[keep]


def _verdict_space(opts: EvalOptions) -> str:
    return reg.DINOV2_SPACE if opts.collapse_features == "dinov2" else handcrafted.NAME


def _image_features(extractor):
    """uint8 NCHW images -> the extractor's features (for other checkpoints' samples in the verdict)."""
    return lambda images: extractor.extract(list(images.permute(0, 2, 3, 1).contiguous().numpy()))


def judge_collapse(fake, real, p: Pass, inputs: Inputs, opts: EvalOptions) -> Collapse:
    """The verdict, memorisation check and (for a run folder) losses and checkpoints, from the kept images."""
    if p.fake.kept is None or p.real.kept is None:
        raise DataError("the collapse check needs images on both sides.")
    space = _verdict_space(opts)
    fake_f, real_f = _kept_features(p.fake, p.fake_keep, space), _kept_features(p.real, p.real_keep, space)
    if space != handcrafted.NAME and (fake_f is None or real_f is None):  # never handcrafted under another name
        raise DataError(f"the collapse check in {space} space has no {space} features for both sides.")
    j = verdict_m.judge(p.fake.kept, p.real.kept, seed=opts.seed, fake_features=fake_f, real_features=real_f,
                        feature_space=space)
    out = {"feature_space": space, "collapse": j.verdict.as_json(),
           "memorisation": j.memorisation.as_json()}
    # the network-free verdict beside a network's: the "show both", so a disagreement is seen, not hidden
    out["collapse_by_space"] = {space: _brief(out["collapse"])}
    if space != handcrafted.NAME:
        other = verdict_m.judge(p.fake.kept, p.real.kept, seed=opts.seed, feature_space=handcrafted.NAME)
        out["collapse_by_space"][handcrafted.NAME] = _brief(other.verdict.as_json())
    run_dir = verdict_m.run_folder(fake)
    if run_dir is not None:
        out["losses"] = verdict_m.read_losses(run_dir / "metrics.jsonl")
        if opts.all_checkpoints and isinstance(inputs.fake, CheckpointSource):
            features = _image_features(p.networks[space]) if space != handcrafted.NAME else None
            rows = verdict_m.judge_checkpoints(run_dir, inputs.fake, j, n=len(p.fake.kept), size=p.size,
                                               seed=opts.seed, runtime=inputs.runtime, batch_size=opts.batch_size,
                                               features=features)
            if rows:
                out["checkpoints"] = rows
    context = verdict_m.training_context(inputs.fake, fake)
    if context is not None:
        out["training"] = context
        if context.get("early"):
            out["collapse"]["context"] = context["text"]
    content = ReportContent(str(fake), str(real), space, out["collapse"], out["memorisation"],
                            p.fake.kept, p.real.kept, j.reference.counts, losses=out.get("losses"),
                            checkpoints=out.get("checkpoints", []), training=context,
                            by_space=out["collapse_by_space"])
    return Collapse(out, content)


def _brief(verdict: dict) -> dict:
    return {"verdict": verdict["verdict"], "severity": verdict["severity"]}


# ----------------------------------------------------------------------------------------- the whole run


@dataclass
class Evaluation:
    """What `run` returns: the JSON dict, and what the report renders (None without the collapse check)."""

    result: dict | None  # None on the ranks other than 0 of a multi-process run
    report: ReportContent | None = None


def _result(inputs: Inputs, opts: EvalOptions, nets: Networks, results: dict, p: Pass, t_start: float,
            count: sizing.SampleCount) -> dict:
    wanted = list(opts.metrics)
    warnings = nets.warnings + flag_provenance(results, nets.info)
    unverified = [k for k, w in nets.info.items() if not w["verified"]]
    if unverified:
        inputs.notes.append(f"weights not verified against a published hash: {', '.join(unverified)}; numbers are "
                            "comparable only to others made with the same files")
    return {
        "schema": SCHEMA,
        "ganplug_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "fake": inputs.fake.describe(),
        "real": inputs.real.describe() if inputs.real else None,
        "settings": {k: v for k, v in asdict(opts).items() if k not in ("cache_dir", "weights_dir")}
        | {"metrics": list(opts.metrics), "device": str(inputs.runtime.device),
           "precision": inputs.runtime.precision, "n_auto": count.auto, "processes": distributed.world().size,
           "is_split_order": opts.is_split_order or "consecutive"},
        "sample_count": count.as_json(),
        "weights": nets.info,
        "metrics": {m: results[m] for m in wanted if m in results},
        "skipped": {m: inputs.skipped[m] for m in wanted if m in inputs.skipped},
        "warnings": warnings,
        "notes": inputs.notes,
        "cache": p.cache,
        "timings": {"fake_features_s": round(p.fake.seconds, 3),
                    "real_features_s": round(p.real.seconds if p.real else 0.0, 3),
                    "total_s": round(time.perf_counter() - t_start, 3)},
    }


def _add_collapse(out: dict, fake, real, p: Pass, inputs: Inputs, opts: EvalOptions,
                  strict: bool) -> ReportContent | None:
    """Judge collapse into `out`; too small a set skips it like a metric, unless a report needs it (`strict`)."""
    try:
        c = judge_collapse(fake, real, p, inputs, opts)
    except DataError as e:
        if strict:  # asked for explicitly: the user must hear why it cannot be made
            raise
        out["skipped"]["collapse"] = str(e)
        return None
    out.update({k: v for k, v in c.json.items() if k not in out})
    c.report.metrics = out["metrics"]
    c.report.skipped, c.report.warnings = out["skipped"], out["warnings"]
    c.report.sample_count, c.report.weights = out["sample_count"], out["weights"]
    return c.report


def run(fake, real=None, options: EvalOptions | None = None, *, strict_collapse: bool = False) -> Evaluation:
    """The evaluation itself, without writing files: one pass per input, then metrics and the verdict.

    `strict_collapse`: a collapse check that cannot run (too few images) raises instead of being skipped.
    """
    opts = resolve_options(options, {})  # a copy: `n` is narrowed in place
    w, opts.device, created = distributed.setup(opts.device, "eval")  # under torchrun: join the ranks
    try:
        return _run(fake, real, opts, strict_collapse, w)
    finally:
        distributed.teardown(created)


def _run(fake, real, opts: EvalOptions, strict_collapse: bool, w: distributed.World) -> Evaluation:
    """`run` on one rank: with several, each samples and extracts features for its share of the batches,
    rank 0 gathers them (scan.py) and alone computes the metrics and the verdict; the others return
    `Evaluation(None)` once the pass is over."""
    if not w.main:
        opts.progress = False  # rank 0 speaks for the run
    t_start = time.perf_counter()
    inputs = open_inputs(fake, real, opts)
    wanted = list(opts.metrics)
    inputs.skipped.update(input_skips(wanted, inputs))
    inputs.unrunnable.update(inputs.skipped)
    nets = load_networks(wanted, opts, inputs)
    inputs.unrunnable.update(inputs.missing)
    size = common_size(inputs)
    refuse_streams([METRICS[m] for m in wanted if m not in inputs.skipped], opts, size, inputs.skipped)
    refuse_if_nothing_runs(wanted, inputs, opts)
    announce(wanted, inputs, opts)
    count = apply_sample_count(inputs, nets, opts, size, [m for m in wanted if m not in inputs.skipped])
    runnable = [METRICS[m] for m in wanted if m not in inputs.skipped]
    collapse = opts.collapse and inputs.real_images
    p = one_pass(runnable, nets, inputs, opts, size, collapse)
    if not w.main:
        return Evaluation(None)
    results = compute_metrics(runnable, p, nets, inputs, opts)
    save_fake_stats(opts.save_stats, p.fake.side.pool, inputs.notes)
    out = _result(inputs, opts, nets, results, p, t_start, count)
    if not out["metrics"]:
        raise UserError("no metric could be computed: " + "; ".join(f"{k}: {v}" for k, v in out["skipped"].items()))
    report = _collapse_step(out, fake, real, p, inputs, opts, strict_collapse) if collapse else None
    out["timings"]["total_s"] = round(time.perf_counter() - t_start, 3)
    return Evaluation(out, report)


def _collapse_step(out: dict, fake, real, p: Pass, inputs: Inputs, opts: EvalOptions,
                   strict: bool) -> ReportContent | None:
    """The verdict and memorisation check, with a progress line (a few seconds on a CPU)."""
    bar = Bar("collapse check", 1, unit="check") if opts.progress else None
    try:
        return _add_collapse(out, fake, real, p, inputs, opts, strict)
    finally:
        finish(bar, 1, "verdict and memorisation")


def _check_outputs(json_path, report_path, force: bool, opts: EvalOptions, real) -> None:
    """Refuse before any work: an existing output without `force`, a report without real images or matplotlib."""
    for path, flag in ((json_path, "--json"), (report_path, "--report")):
        if path is not None and Path(path).exists() and not force:
            raise UserError(f"{path} exists; pass --force to overwrite it or choose another {flag} path.")
    if report_path is None:
        return
    if real is None or Path(real).suffix == ".npz":
        raise weights.WeightsError("--report needs --real with real images (a folder or prepared dataset).")
    from ganplug.extras import require

    require("matplotlib", "eval", "--report (the HTML report's plots)")


def evaluate(fake, real=None, *, json_path=None, report_path=None, force: bool = False,
             options: EvalOptions | None = None, **kwargs) -> dict | None:
    """Evaluate FAKE against REAL and return the JSON dict; keyword arguments are EvalOptions fields.

    Under torchrun (WORLD_SIZE > 1) every rank calls it: sampling and feature extraction are shared out,
    rank 0 returns the dict (equal to one process's) and writes the files, the other ranks return None.

    `collapse=True` adds the mode-collapse verdict and memorisation check (when REAL is images);
    `report_path` writes the HTML report (and implies the verdict); `json_path` writes the dict.
    This is all `ganplug eval` does: the CLI only parses its arguments into this call.
    """
    opts = resolve_options(options, kwargs)
    _check_outputs(json_path, report_path, force, opts, real)
    if report_path is not None:
        opts.collapse = True
    ev = run(fake, real, opts, strict_collapse=report_path is not None)
    if ev.result is None:  # not rank 0 of a multi-process run: rank 0 writes and returns the results
        return None
    if report_path is not None:
        from ganplug.eval.report import write_report

        bar = Bar("report", 1, unit="page") if opts.progress else None
        write_report(Path(report_path), ev.report, force=True)
        finish(bar, 1, str(report_path))
    if json_path is not None:
        write_json(Path(json_path), ev.result)
    return ev.result


def write_json(path: Path, data: dict) -> None:
    from ganplug.atomic import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(data, indent=2, allow_nan=False, default=_jsonable).encode())


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (Path, torch.device)):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")
