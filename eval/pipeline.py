"""`evaluate(...)`: one call behind `ganplug eval` and `from ganplug.eval import evaluate`.

One pass per input: FAKE is sampled (or read) once and REAL read once; every requested metric (the
registry in eval/registry.py says what each needs), the collapse battery, the memorisation check and
the report are fed from the arrays of that pass. Real-set features are cached by content hash. Metrics
whose network file is missing are skipped with a one-line reason while the network-free ones still
run; if nothing can run, a WeightsError names the missing file. The returned dict is the documented
JSON schema (docs/eval.md, "ganplug-eval/1").
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
from ganplug.eval import verdict as verdict_m
from ganplug.eval.features import handcrafted, weights
from ganplug.eval.features.cache import FeatureCache
from ganplug.eval.metrics import fid as fid_m
from ganplug.eval.options import DEFAULT_METRICS, EvalOptions
from ganplug.eval.registry import METRICS, Metric, MetricInput
from ganplug.eval.report import ReportContent
from ganplug.eval.scan import Plan, Scanned, cached_scan, scan
from ganplug.eval.sources import CheckpointSource, Source, StatsSource, hex_color, open_source, resolve_background

SCHEMA = "ganplug-eval/1"
ALL_METRICS = tuple(METRICS)
PR_FEATURES = ("auto", "inception", "handcrafted")
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


def resolve_options(options: EvalOptions | None, kwargs: dict) -> EvalOptions:
    """EvalOptions from `options` plus keyword overrides; an unknown keyword is an error, not ignored."""
    known = set(EvalOptions.__dataclass_fields__)
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise UserError(f"evaluate() got unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    opts = EvalOptions(**{**asdict(options or EvalOptions()), **kwargs})  # a copy: the caller's stays as given
    opts.metrics = parse_metrics(opts.metrics)
    if opts.n < 1:
        raise UserError(f"--n must be at least 1, not {opts.n}.")
    if opts.pr_features not in PR_FEATURES:
        raise weights.WeightsError(f"--pr-features must be auto, inception or handcrafted, not {opts.pr_features!r}.")
    return opts


# ----------------------------------------------------------------------------------------- inputs and networks


@dataclass
class Inputs:
    fake: Source
    real: Source | None
    runtime: object
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def real_images(self) -> bool:
        return self.real is not None and not isinstance(self.real, StatsSource)


def open_inputs(fake, real, opts: EvalOptions) -> Inputs:
    runtime = make_runtime(opts.device, opts.precision)
    fake_src = open_source(fake, role="fake", n=opts.n, seed=opts.seed, runtime=runtime, truncation=opts.truncation,
                           workers=opts.workers, background=resolve_background(opts.background))
    background = resolve_background(opts.background, fake_src)
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


def _wants_inception(m: Metric, pr_features: str) -> bool:
    return bool(m.needs & {reg.POOL, reg.LOGITS}) or (reg.SPACE in m.needs and pr_features in ("auto", "inception"))


def _load_inception(active: list[Metric], opts: EvalOptions, inputs: Inputs, nets: Networks) -> None:
    if not any(_wants_inception(m, opts.pr_features) for m in active):
        return
    found = weights.locate("inception", opts.weights_dir, opts.allow_unverified_weights)
    if found is None:
        reason = f"{weights.INCEPTION.filename} not found (run `ganplug weights list`)"
        for m in active:
            if m.needs & {reg.POOL, reg.LOGITS} or (reg.SPACE in m.needs and opts.pr_features == "inception"):
                inputs.skipped[m.name] = reason
        return
    from ganplug.eval.features.inception import InceptionExtractor

    nets.inception = InceptionExtractor(found, inputs.runtime, opts.fid_mode, workers=opts.workers)
    nets.info["inception"] = found.as_json()
    inputs.notes.extend(nets.inception.notes)


def _load_lpips(active: list[Metric], opts: EvalOptions, inputs: Inputs, nets: Networks) -> None:
    users = [m for m in active if reg.LPIPS in m.needs]
    if not users:
        return
    vgg = weights.locate("vgg16", opts.weights_dir, opts.allow_unverified_weights)
    lin = weights.locate("lpips-vgg16", opts.weights_dir, opts.allow_unverified_weights)
    if vgg is None or lin is None:
        missing = [w.filename for w, f in ((weights.VGG16, vgg), (weights.LPIPS_VGG, lin)) if f is None]
        for m in users:
            inputs.skipped[m.name] = f"{' and '.join(missing)} not found (run `ganplug weights list`)"
        return
    from ganplug.eval.features.lpips import LPIPSVGG

    nets.lpips = LPIPSVGG.from_files(vgg, lin).to(inputs.runtime.device)
    nets.info["vgg16"], nets.info["lpips-vgg16"] = vgg.as_json(), lin.as_json()


def load_networks(wanted: list[str], opts: EvalOptions, inputs: Inputs) -> Networks:
    """Locate and load the networks the runnable metrics need; a missing file skips its metrics."""
    nets = Networks()
    _load_inception([METRICS[n] for n in wanted if n not in inputs.skipped], opts, inputs, nets)
    _load_lpips([METRICS[n] for n in wanted if n not in inputs.skipped], opts, inputs, nets)
    if any(reg.SPACE in METRICS[n].needs for n in wanted if n not in inputs.skipped):
        auto = INCEPTION_SPACE if nets.inception is not None else handcrafted.NAME
        nets.space = handcrafted.NAME if opts.pr_features == "handcrafted" else auto
        if nets.space == handcrafted.NAME and opts.pr_features == "auto":
            inputs.notes.append(f"precision/recall/density/coverage computed in the network-free {handcrafted.NAME} "
                                "space")
    return nets


def refuse_if_nothing_runs(wanted: list[str], skipped: dict[str, str], opts: EvalOptions) -> None:
    if any(m not in skipped for m in wanted):
        return
    missing = [weights.INCEPTION] if any("inception" in r for r in skipped.values()) else []
    if "ppl" in wanted and "not found" in skipped.get("ppl", ""):
        missing += [weights.VGG16, weights.LPIPS_VGG]
    if missing:
        raise weights.WeightsError(" ".join(weights.missing_message(w, opts.weights_dir) for w in missing))
    raise UserError("none of the requested metrics can run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))


# ----------------------------------------------------------------------------------------- the one pass


def _plan(runnable: list[Metric], nets: Networks, opts: EvalOptions, size: int, *, real: bool,
          keep: np.ndarray | None) -> Plan:
    """What one side's pass computes; REAL skips what only FAKE needs (`real="unused"`, e.g. IS logits)."""
    used = [m for m in runnable if not real or m.real != "unused"]
    pool = any(reg.POOL in m.needs or (reg.SPACE in m.needs and nets.space == INCEPTION_SPACE) for m in used)
    logits = any(reg.LOGITS in m.needs for m in used)
    hand = any(reg.HANDCRAFTED in m.needs or (reg.SPACE in m.needs and nets.space == handcrafted.NAME) for m in used)
    plan = Plan(size, nets.inception if pool or logits else None, hand,
                keep=np.zeros(0, np.int64) if keep is None else keep)
    for m in used:
        if reg.IMAGES in m.needs:
            plan.streams[m.name] = m.stream(opts, size)
    return plan


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
    fake = scan(inputs.fake, _plan(runnable, nets, opts, size, real=False, keep=fake_keep), opts.batch_size)
    real = None
    if inputs.real_images:
        cache = FeatureCache(Path(opts.cache_dir) if opts.cache_dir else None, enabled=opts.use_cache)
        real = cached_scan(inputs.real, _plan(runnable, nets, opts, size, real=True, keep=real_keep), cache,
                           opts.batch_size)
    return Pass(fake, real, size, fake_keep, real_keep)


# ----------------------------------------------------------------------------------------- metrics


def compute_metrics(runnable: list[Metric], p: Pass, nets: Networks, inputs: Inputs, opts: EvalOptions) -> dict:
    """Each runnable metric from the pass's arrays; a DataError skips that metric with its message."""
    dev = inputs.runtime.device if inputs.runtime.device.type == "cuda" else "cpu"
    stats = (inputs.real.mu, inputs.real.sigma) if isinstance(inputs.real, StatsSource) else None
    m_in = MetricInput(opts, p.fake.side, p.real.side if p.real else None, stats, nets.space, p.size, dev,
                       inputs.fake if isinstance(inputs.fake, CheckpointSource) else None, nets.lpips, inputs.notes)
    results = {}
    for m in runnable:
        try:
            results[m.name] = m.compute(m_in)
        except DataError as e:
            inputs.skipped[m.name] = str(e)
    return results


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


def _kept_features(scanned: Scanned, keep: np.ndarray) -> np.ndarray | None:
    """Handcrafted features of the kept images, when the pass already computed them for every image."""
    hand = scanned.side.hand
    return None if hand is None else hand[keep]


def judge_collapse(fake, real, p: Pass, inputs: Inputs, opts: EvalOptions) -> Collapse:
    """The verdict, memorisation check and (for a run folder) losses and checkpoints, from the kept images."""
    if p.fake.kept is None or p.real.kept is None:
        raise DataError("the collapse check needs images on both sides.")
    j = verdict_m.judge(p.fake.kept, p.real.kept, seed=opts.seed,
                        fake_features=_kept_features(p.fake, p.fake_keep),
                        real_features=_kept_features(p.real, p.real_keep))
    out = {"feature_space": handcrafted.NAME, "collapse": j.verdict.as_json(),
           "memorisation": j.memorisation.as_json()}
    run_dir = verdict_m.run_folder(fake)
    if run_dir is not None:
        out["losses"] = verdict_m.read_losses(run_dir / "metrics.jsonl")
        if opts.all_checkpoints and isinstance(inputs.fake, CheckpointSource):
            rows = verdict_m.judge_checkpoints(run_dir, inputs.fake, j, n=len(p.fake.kept), size=p.size,
                                               seed=opts.seed, runtime=inputs.runtime, batch_size=opts.batch_size)
            if rows:
                out["checkpoints"] = rows
    content = ReportContent(str(fake), str(real), handcrafted.NAME, out["collapse"], out["memorisation"],
                            p.fake.kept, p.real.kept, j.reference.counts, losses=out.get("losses"),
                            checkpoints=out.get("checkpoints", []))
    return Collapse(out, content)


# ----------------------------------------------------------------------------------------- the whole run


@dataclass
class Evaluation:
    """What `run` returns: the JSON dict, and what the report renders (None without the collapse check)."""

    result: dict
    report: ReportContent | None = None


def _result(inputs: Inputs, opts: EvalOptions, nets: Networks, results: dict, p: Pass, t_start: float) -> dict:
    wanted = list(opts.metrics)
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
           "precision": inputs.runtime.precision},
        "weights": nets.info,
        "metrics": {m: results[m] for m in wanted if m in results},
        "skipped": {m: inputs.skipped[m] for m in wanted if m in inputs.skipped},
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
    return c.report


def run(fake, real=None, options: EvalOptions | None = None, *, strict_collapse: bool = False) -> Evaluation:
    """The evaluation itself, without writing files: one pass per input, then metrics and the verdict.

    `strict_collapse`: a collapse check that cannot run (too few images) raises instead of being skipped.
    """
    opts = options or EvalOptions()
    t_start = time.perf_counter()
    inputs = open_inputs(fake, real, opts)
    wanted = list(opts.metrics)
    inputs.skipped.update(input_skips(wanted, inputs))
    nets = load_networks(wanted, opts, inputs)
    size = common_size(inputs)
    refuse_streams([METRICS[m] for m in wanted if m not in inputs.skipped], opts, size, inputs.skipped)
    refuse_if_nothing_runs(wanted, inputs.skipped, opts)
    runnable = [METRICS[m] for m in wanted if m not in inputs.skipped]
    collapse = opts.collapse and inputs.real_images
    p = one_pass(runnable, nets, inputs, opts, size, collapse)
    results = compute_metrics(runnable, p, nets, inputs, opts)
    save_fake_stats(opts.save_stats, p.fake.side.pool, inputs.notes)
    out = _result(inputs, opts, nets, results, p, t_start)
    if not out["metrics"]:
        raise UserError("no metric could be computed: " + "; ".join(f"{k}: {v}" for k, v in out["skipped"].items()))
    report = _add_collapse(out, fake, real, p, inputs, opts, strict_collapse) if collapse else None
    out["timings"]["total_s"] = round(time.perf_counter() - t_start, 3)
    return Evaluation(out, report)


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
             options: EvalOptions | None = None, **kwargs) -> dict:
    """Evaluate FAKE against REAL and return the JSON dict; keyword arguments are EvalOptions fields.

    `collapse=True` adds the mode-collapse verdict and memorisation check (when REAL is images);
    `report_path` writes the HTML report (and implies the verdict); `json_path` writes the dict.
    This is all `ganplug eval` does: the CLI only parses its arguments into this call.
    """
    opts = resolve_options(options, kwargs)
    _check_outputs(json_path, report_path, force, opts, real)
    if report_path is not None:
        opts.collapse = True
    ev = run(fake, real, opts, strict_collapse=report_path is not None)
    if report_path is not None:
        from ganplug.eval.report import write_report

        write_report(Path(report_path), ev.report, force=True)
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
