"""The metric registry: each entry declares what it needs, and the pipeline provides it from one pass.

An entry says which arrays it reads (`NEEDS`), whether it needs REAL, and maps a `MetricInput` to its
JSON entry. Metrics that read decoded images (SWD, MS-SSIM) also give a `stream` factory: the pass builds
one accumulator per input and feeds it every batch, so no input is read twice. The math lives in
eval/metrics/<name>.py; an entry only adapts arrays to it (the stylegan2-ada `metric_main` registry with
torch-fidelity's extract-once design). Adding a metric: one file there plus one `@register` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from ganplug.errors import DataError
from ganplug.eval.features.clip import NAME as CLIP_SPACE
from ganplug.eval.features.dinov2 import NAME as DINOV2_SPACE
from ganplug.eval.metrics import cmmd, inception_score, kid, msssim, prdc, swd, vendi
from ganplug.eval.metrics import fid as fid_m
from ganplug.eval.options import EvalOptions

POOL = "pool"  # Inception pool3 features [N, 2048] of each input
LOGITS = "logits"  # Inception logits without output bias (FAKE only)
HANDCRAFTED = "handcrafted"  # handcrafted-v1 features [N, 384] of each input
SPACE = "space"  # the PR/DC feature space: POOL or HANDCRAFTED, chosen by --pr-features
IMAGES = "images"  # every decoded image (uint8 NCHW, common size), through the entry's stream accumulator
GENERATOR = "generator"  # the FAKE generator itself (a checkpoint or run folder)
LPIPS = "lpips"  # the LPIPS-VGG16 network
DINOV2 = "dinov2"  # DINOv2 ViT-L/14 CLS features [N, 1024] of each input (Side.features[DINOV2_SPACE])
CLIP = "clip"  # unit-length CLIP ViT-L/14@336px embeddings [N, 768] of each input (Side.features[CLIP_SPACE])
NEEDS = (POOL, LOGITS, HANDCRAFTED, SPACE, IMAGES, GENERATOR, LPIPS, DINOV2, CLIP)


class Accumulator(Protocol):
    def update(self, images: torch.Tensor) -> None: ...


@dataclass
class Side:
    """What one input's single pass produced (arrays are None when nobody asked for them)."""

    count: int = 0
    pool: np.ndarray | None = None
    logits: np.ndarray | None = None
    hand: np.ndarray | None = None
    streams: dict[str, Accumulator] = field(default_factory=dict)
    features: dict[str, np.ndarray] = field(default_factory=dict)  # network feature spaces by name (DINOv2, CLIP)

    def spaces(self) -> dict[str, np.ndarray]:
        """Every feature space this pass computed, by name (handcrafted always first)."""
        named = {"handcrafted-v1": self.hand, "inception-pool3": self.pool, **self.features}
        return {k: v for k, v in named.items() if v is not None}

    def space(self, name: str) -> np.ndarray | None:
        if name in self.features:
            return self.features[name]
        return self.pool if name == "inception-pool3" else self.hand


@dataclass
class MetricInput:
    """Everything a metric entry may read; built once per evaluation."""

    opts: EvalOptions
    fake: Side
    real: Side | None  # None without REAL or when REAL is a statistics file
    real_stats: tuple[np.ndarray, np.ndarray] | None = None  # REAL mu, sigma from a .npz
    space: str | None = None  # "inception-pool3", "handcrafted-v1" or "dinov2-vitl14" (PR/DC)
    size: int = 0  # the common image size the IMAGES streams saw
    device: torch.device | str = "cpu"  # where the Frechet distance's linear algebra runs
    generator: object | None = None  # the CheckpointSource (G, spec) for GENERATOR
    lpips: object | None = None  # LPIPSVGG for LPIPS
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable[[MetricInput], dict]
    needs: frozenset[str]
    real: str = "required"  # required | optional (also measured on REAL when given) | unused
    stats_ok: bool = False  # a REAL statistics file (mu, sigma) is enough
    stream: Callable[[EvalOptions, int], Accumulator] | None = None  # per-input accumulator for IMAGES
    default: bool = True  # part of the default --metrics
    help: str = ""  # one sentence for the report


METRICS: dict[str, Metric] = {}


def register(name: str, *, needs: set[str], real: str = "required", stats_ok: bool = False,
             stream: Callable[[EvalOptions, int], Accumulator] | None = None, default: bool = True,
             help: str = "") -> Callable:
    """Decorator: add `fn(MetricInput) -> dict` to METRICS under `name` (the order is the listing order)."""
    unknown = set(needs) - set(NEEDS)
    if unknown or real not in ("required", "optional", "unused") or (IMAGES in needs) != (stream is not None):
        raise ValueError(f"metric {name}: bad declaration (needs {sorted(needs)}, real {real!r}, stream {stream})")

    def deco(fn: Callable[[MetricInput], dict]) -> Callable[[MetricInput], dict]:
        METRICS[name] = Metric(name, fn, frozenset(needs), real, stats_ok, stream, default, help)
        return fn

    return deco


# ----------------------------------------------------------------------------------------- the entries


@register("fid", needs={POOL}, stats_ok=True,
          help="Fréchet Inception distance: how far the generated set is from the real set (lower is better).")
def _fid(m: MetricInput) -> dict:
    fake = m.fake.pool
    if m.real_stats is not None:
        mu1, s1 = fid_m.gaussian_stats(fake)
        value = fid_m.frechet_distance(mu1, s1, *m.real_stats, m.device)
    else:
        fid_m.check_finite(m.real.pool, "REAL Inception features")
        value = fid_m.fid_from_features(fake, m.real.pool, m.device)
    return {"value": value, "mode": m.opts.fid_mode, "fake_samples": int(len(fake)),
            "real_samples": None if m.real_stats is not None else int(len(m.real.pool))}


@register("kid", needs={POOL},
          help="Kernel Inception distance: like FID, unbiased on small sets (lower is better).")
def _kid(m: MetricInput) -> dict:
    fid_m.check_finite(m.fake.pool, "FAKE Inception features")
    fid_m.check_finite(m.real.pool, "REAL Inception features")
    r = kid.kid(m.fake.pool, m.real.pool, m.opts.kid_subsets, m.opts.kid_subset_size, m.opts.seed)
    if r.note:
        m.notes.append(r.note)
    return {"value": r.mean, "std": r.std, "subsets": r.subsets, "subset_size": r.subset_size}


@register("is", needs={LOGITS}, real="unused",
          help="Inception score: confident and varied ImageNet classes (higher is better; weak for art).")
def _is(m: MetricInput) -> dict:
    fid_m.check_finite(m.fake.logits, "FAKE Inception logits")
    order = m.opts.is_split_order or "consecutive"
    seed = m.opts.seed if order == "shuffled" else None
    r = inception_score.inception_score(m.fake.logits, m.opts.is_splits, shuffle_seed=seed)
    if r.note:
        m.notes.append(r.note)
    return {"value": r.mean, "std": r.std, "splits": r.splits, "split_order": order, "shuffle_seed": seed}


@register("ppl", needs={GENERATOR, LPIPS}, real="unused", default=False,
          help="Perceptual path length: how smoothly images change along the latent space (lower is smoother).")
def _ppl(m: MetricInput) -> dict:
    from ganplug.eval.metrics.ppl import perceptual_path_length

    o, g = m.opts, m.generator  # g: the CheckpointSource; PPL runs the generator where it lives
    device = g.runtime.device
    return perceptual_path_length(g.G, m.lpips, style_based=g.spec.style_based, n=o.ppl_samples,
                                  epsilon=o.ppl_epsilon, space=o.ppl_space, sampling=o.ppl_sampling,
                                  batch_size=o.batch_size, seed=o.seed, device=device)


def _prdc(m: MetricInput, fn: Callable, k: int, headline: str) -> dict:
    fake, real = m.fake.space(m.space), m.real.space(m.space)
    fid_m.check_finite(fake, "FAKE features")
    r = fn(real, fake, k)
    return {"value": r[headline], **r, "feature_space": m.space}


@register("pr", needs={SPACE},
          help="Precision: share of samples that look like some real image; recall: share of real images the "
               "generator can produce.")
def _pr(m: MetricInput) -> dict:
    return _prdc(m, prdc.precision_recall, 3, "precision")


@register("dc", needs={SPACE},
          help="Density: how tightly samples sit among real images; coverage: share of real images with a "
               "sample nearby (both higher is better).")
def _dc(m: MetricInput) -> dict:
    return _prdc(m, prdc.density_coverage, 5, "coverage")


class FirstImages:
    """Passes only the first `limit` images on (SWD's protocol uses the first --swd-images images)."""

    def __init__(self, inner: swd.SWDDescriptors, limit: int) -> None:
        self.inner, self.left, self.seen = inner, limit, 0

    def update(self, images: torch.Tensor) -> None:
        if self.left > 0:
            self.inner.update(images[: self.left])
            self.seen += min(len(images), self.left)
            self.left -= min(len(images), self.left)


@register("swd", needs={IMAGES}, stream=lambda o, size: FirstImages(swd.SWDDescriptors(size, seed=o.seed),
                                                                     o.swd_images),
          help="Sliced Wasserstein distance on image patches at several scales (lower is better).")
def _swd(m: MetricInput) -> dict:
    f, r = m.fake.streams["swd"], m.real.streams["swd"]
    out = swd.swd(r.inner.finalize(), f.inner.finalize(), f.inner.levels, m.opts.seed)
    return {**out, "images": int(min(f.seen, r.seen)), "resolution": m.size}


@register("msssim", needs={IMAGES}, real="optional",
          stream=lambda o, size: msssim.PairSampler(o.msssim_pairs, seed=o.seed),
          help="MS-SSIM between random sample pairs: higher means samples look alike (compare with real pairs).")
def _msssim(m: MetricInput) -> dict:
    r = m.fake.streams["msssim"].result()
    if r["pairs"] == 0:
        raise DataError("MS-SSIM diversity needs at least 2 FAKE images.")
    real = m.real.streams["msssim"].result() if m.real is not None and "msssim" in m.real.streams else None
    return {**r, "real": real["value"] if real and real["pairs"] else None}


def _network_features(m: MetricInput, space: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    fake, real = m.fake.features[space], m.real.features[space]
    fid_m.check_finite(fake, f"FAKE {what}")
    fid_m.check_finite(real, f"REAL {what}")
    return fake, real


@register("fd_dinov2", needs={DINOV2}, default=False,
          help="Fréchet distance on DINOv2 ViT-L/14 features (Stein et al. 2023): FID's formula in a space that "
               "tracks human judgement better (lower is better).")
def _fd_dinov2(m: MetricInput) -> dict:
    fake, real = _network_features(m, DINOV2_SPACE, "DINOv2 features")
    return {"value": fid_m.fid_from_features(fake, real, m.device), "feature_space": DINOV2_SPACE,
            "fake_samples": int(len(fake)), "real_samples": int(len(real))}


@register("cmmd", needs={CLIP}, default=False,
          help="CMMD (Jayasumana et al. 2024): MMD between CLIP image embeddings, Gaussian kernel, sigma 10, x1000 "
               "(lower is better).")
def _cmmd(m: MetricInput) -> dict:
    fake, real = _network_features(m, CLIP_SPACE, "CLIP embeddings")
    return {"value": cmmd.cmmd(real, fake, device=m.device), "feature_space": CLIP_SPACE, "sigma": cmmd.SIGMA,
            "scale": cmmd.SCALE, "estimator": "biased (all pairs)", "fake_samples": int(len(fake)),
            "real_samples": int(len(real))}


@register("vendi", needs={HANDCRAFTED, SPACE}, real="optional",
          help="Vendi score: the effective number of distinct samples (exp of the entropy of the cosine-similarity "
               "spectrum; higher is more diverse, at most the sample count; compare with the real set's).")
def _vendi(m: MetricInput) -> dict:
    real = m.real.spaces() if m.real is not None else {}
    per = {}
    for name, feats in m.fake.spaces().items():
        fid_m.check_finite(feats, f"FAKE {name} features")
        per[name] = {"fake": vendi.vendi_score(feats),
                     "real": vendi.vendi_score(real[name]) if name in real else None}
    head = "inception-pool3" if "inception-pool3" in per else "handcrafted-v1"
    return {"value": per[head]["fake"], "real": per[head]["real"], "feature_space": head, "spaces": per,
            "samples": int(len(m.fake.hand))}
