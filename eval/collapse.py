"""Mode-collapse detection: a battery of statistics and a verdict in words.

All statistics work in one feature space: the network-free `handcrafted-v1` space (eval.features.handcrafted)
unless the caller passes other features; the space is named in `Verdict.stats["feature_space"]` and the JSON.
Two questions are kept apart, because a global appearance shift (colour, brightness, crops) moves every sample
off the real images without making the set any less varied:
- shift: do samples look like real images at all? Precision (share of samples inside some real k-NN ball)
  against real images' own; a clear drop is reported as a `shift` finding (a quality problem), not as collapse;
- fit (where samples fall among the real data): coverage / recall (eval.metrics.prdc), NDB and JS on k-means
  bins of real features (Richardson & Weiss 2018), empty bins, and the missing mass: the real share in bins the
  samples leave empty or significantly under-fill. A shift makes these misleading, so their evidence is
  discounted by the shift score. The bins tell how much of the data is missing: on their own they call
  collapse only when most of it is (at least half the real images in missed bins), else partial collapse;
- structure (the fake set on its own): the share of samples with a near-identical twin and a birthday-paradox
  support estimate (Arora & Zhang 2017), the median sample-to-nearest-sample distance, the mean pairwise
  distance and MS-SSIM of seeded random pairs (eval.metrics.msssim.PairSampler), each against real images.

Every statistic is judged against the same statistic on real images at the same sample size m: the real set
is split in two, one half is the reference (bins, k-NN balls), seeded draws of m images from the other half
play a perfect generator. m is the number of samples, or the size of that half when there are more samples;
then the samples are judged in seeded chunks of m and the chunk values averaged, except the missing mass,
which rests on a per-bin test that accounts for both sample sizes (its rate under a perfect generator does not
grow with the number of samples) and so is taken on the whole sample set, where missing modes show best.
The margins on top of the baseline come from calibration (scripts/calibrate_collapse.py, docs/results.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

import numpy as np
import torch

from ganplug.errors import DataError
from ganplug.eval.metrics import prdc
from ganplug.eval.metrics.msssim import pair_msssim

VERDICTS = ("healthy", "partial collapse", "collapse")


# ----------------------------------------------------------------------------------------- k-means bins


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, iters: int = 50, restarts: int = 3) -> np.ndarray:
    """Seeded k-means++ then Lloyd iterations; returns the [k, D] centroids of the best restart."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < k:
        raise DataError(f"NDB with {k} bins needs at least {k} real samples; got {len(x)}.")
    rng = np.random.default_rng(seed)
    best, best_inertia = None, math.inf
    for _ in range(restarts):
        centres = [x[rng.integers(len(x))]]
        d2 = ((x - centres[0]) ** 2).sum(1)
        for _ in range(1, k):
            p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1 / len(x))
            centres.append(x[rng.choice(len(x), p=p)])
            d2 = np.minimum(d2, ((x - centres[-1]) ** 2).sum(1))
        c = np.array(centres)
        for _ in range(iters):
            labels = assign_bins(x, c)
            new = np.array([x[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(k)])
            if np.allclose(new, c):
                break
            c = new
        inertia = ((x - c[assign_bins(x, c)]) ** 2).sum()
        if inertia < best_inertia:
            best, best_inertia = c, inertia
    return best


def assign_bins(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return prdc.pairwise_distances(x, centres).argmin(1)


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 = same proportions, 1 = disjoint)."""
    p, q = np.asarray(p, float) / np.sum(p), np.asarray(q, float) / np.sum(q)
    m = (p + q) / 2

    def kl(a, b):
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / b[nz])).sum())

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def normal_quantile(p: float) -> float:
    """The standard normal's inverse CDF (scipy.stats.norm.ppf) without scipy, which is an `eval` extra and
    the training watch is core: the standard library's NormalDist uses Wichura's AS241 (about 1e-16)."""
    return NormalDist().inv_cdf(p)


def ndb(real_counts: np.ndarray, fake_counts: np.ndarray, alpha: float = 0.05) -> dict:
    """Two-proportion z-test per bin (pooled variance); NDB = bins whose proportions differ at level alpha."""
    real_counts, fake_counts = np.asarray(real_counts, float), np.asarray(fake_counts, float)
    nr, nf = real_counts.sum(), fake_counts.sum()
    pr, pf = real_counts / nr, fake_counts / nf
    pooled = (real_counts + fake_counts) / (nr + nf)
    se = np.sqrt(pooled * (1 - pooled) * (1 / nr + 1 / nf))
    z = np.divide(pf - pr, se, out=np.zeros_like(se), where=se > 0)
    different = np.abs(z) > normal_quantile(1 - alpha / 2)
    return {"ndb": int(different.sum()), "ndb_over_k": float(different.mean()), "z": z, "different": different,
            "over": different & (pf > pr), "under": different & (pf < pr), "js": js_divergence(real_counts + 0,
                                                                                                fake_counts + 0)}


def under_filled(z: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Bins whose sample share is significantly below the real share: the ndb z-test, Bonferroni-corrected
    over the bins (family-wise level alpha), so a perfect generator almost never has one, at any size."""
    z = np.asarray(z, float)
    return z < -normal_quantile(1 - alpha / (2 * max(1, len(z))))


def bins_holding(share: float, counts: np.ndarray) -> int:
    """Fewest bins that together hold at least `share` of the samples."""
    c = np.sort(np.asarray(counts, float))[::-1]
    return int(np.searchsorted(np.cumsum(c) / c.sum(), share - 1e-12) + 1)


# ----------------------------------------------------------------------------------------- duplicates


def duplicate_pairs(features: np.ndarray, threshold: float) -> tuple[int, float]:
    """(number of pairs closer than threshold, share of samples with such a twin)."""
    d = prdc.pairwise_distances(features, features)
    iu = np.triu_indices(len(features), 1)
    close = d[iu] <= threshold
    np.fill_diagonal(d, np.inf)
    return int(close.sum()), float((d.min(1) <= threshold).mean())


def birthday_support(n: int, pairs: int) -> tuple[float, bool]:
    """Support size from the number of colliding pairs among n uniform draws: E[pairs] = C(n,2)/N.

    Returns (estimate, is_lower_bound): with no collision only N > C(n,2) is known (Arora & Zhang's test
    says a batch of n with duplicates means a support of about n^2).
    """
    total = n * (n - 1) / 2
    if pairs == 0:
        return float(total), True
    return float(total / pairs), False


def mean_pairwise_distance(features: np.ndarray) -> float:
    d = prdc.pairwise_distances(features, features)
    n = len(features)
    return float(d.sum() / (n * (n - 1)))


def median_nn_distance(features: np.ndarray) -> float:
    """Median distance from each sample to its nearest other sample: collapse shrinks it, a shift does not."""
    d = prdc.pairwise_distances(features, features)
    np.fill_diagonal(d, np.inf)
    return float(np.median(d.min(1)))


# ----------------------------------------------------------------------------------------- the battery


@dataclass(frozen=True)
class Thresholds:
    """Margins over the real-vs-real baseline where a statistic starts to count (score 0) and where it
    is unambiguous (score 1). Set by scripts/calibrate_collapse.py on held-out twemoji; see docs/collapse.md."""

    coverage_drop: tuple[float, float] = (0.10, 0.70)  # relative drop of coverage vs the real baseline
    recall_drop: tuple[float, float] = (0.15, 0.80)  # relative drop of recall
    js_excess: tuple[float, float] = (0.015, 0.25)  # JS(bits) minus baseline JS
    ndb_excess: tuple[float, float] = (0.04, 0.50)  # NDB/K minus baseline NDB/K
    empty_bins: tuple[float, float] = (0.05, 0.50)  # share of real bins receiving no sample, minus baseline
    missing_mass: tuple[float, float] = (0.02, 0.12)  # real share in bins left empty or significantly under-filled
    #                                                   (under_filled, whole sample set), minus baseline
    duplicate_excess: tuple[float, float] = (0.15, 0.60)  # share of samples with a near-twin, minus baseline
    diversity_drop: tuple[float, float] = (0.25, 0.65)  # 1 - (fake mean distance / real mean distance)
    nn_drop: tuple[float, float] = (0.25, 0.80)  # 1 - (fake median NN distance / real median NN distance)
    msssim_excess: tuple[float, float] = (0.10, 0.35)  # fake pair MS-SSIM minus real pair MS-SSIM
    support: tuple[float, float] = (0.3, 1.0)  # -log10(birthday support estimate / samples): few distinct outputs
    shift_drop: tuple[float, float] = (0.06, 0.12)  # relative drop of precision: samples off the real images
    duplicate_radius: float = 0.5  # "near-identical": closer than this x the real median NN distance
    partial: float = 0.15  # severity from which the verdict is "partial collapse"
    collapse: float = 0.70  # ... and "collapse"
    most_missing: float = 0.5  # the fit family alone says "collapse" only from this missing mass (most of the data)
    bins: int = 20  # k-means bins for NDB/JS; about n/10 keeps ~10 expected samples per bin at n = 200
    baseline_draws: int = 5  # seeded draws of m real images averaged into the baseline


DEFAULT_THRESHOLDS = Thresholds()
FIT = ("coverage", "recall", "js", "ndb", "empty_bins", "missing_mass")  # where samples fall among real data
STRUCTURE = ("duplicates", "nn_spread", "diversity", "msssim")  # the fake set on its own (mean)


def _ramp(x: float, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    if not math.isfinite(x):
        return 0.0
    return float(min(1.0, max(0.0, (x - lo) / (hi - lo))))


@dataclass
class RealReference:
    """Everything about the real set the battery needs, computed once (the watch caches this)."""

    features: np.ndarray  # reference half
    holdout: np.ndarray  # other half: a "perfect generator" for the baseline
    centres: np.ndarray
    counts: np.ndarray  # reference counts per bin
    nn_median: float  # median nearest-neighbour distance inside the reference half
    mean_distance: float  # mean pairwise distance inside the real set (reference half)
    msssim: float | None = None  # mean pair MS-SSIM of real images
    bins: int = 0
    seed: int = 0
    feature_space: str = "handcrafted-v1"
    baseline: dict = field(default_factory=dict)


def build_reference(real_features: np.ndarray, *, bins: int | None = None, seed: int = 0,
                    real_images: torch.Tensor | None = None, feature_space: str = "handcrafted-v1",
                    baseline_n: int | None = None,
                    thresholds: Thresholds = DEFAULT_THRESHOLDS) -> RealReference:
    """Split real features (seeded) into reference/holdout halves, fit bins, measure the real baseline
    (for `baseline_n` samples, see compared_size; assess() remeasures it for another size)."""
    real_features = np.asarray(real_features, dtype=np.float64)
    n = len(real_features)
    if n < 20:
        raise DataError(f"the collapse check needs at least 20 real images; got {n}.")
    bins = max(2, min(bins or thresholds.bins, n // 10))
    perm = np.random.default_rng(seed).permutation(n)
    ref, hold = real_features[perm[: n // 2]], real_features[perm[n // 2:]]
    centres = kmeans(ref, bins, seed=seed)
    counts = np.bincount(assign_bins(ref, centres), minlength=bins)
    d = prdc.pairwise_distances(ref, ref)
    np.fill_diagonal(d, np.inf)
    nn_median = float(np.median(d.min(1)))
    np.fill_diagonal(d, 0)
    mean_dist = float(d.sum() / (len(ref) * (len(ref) - 1)))
    rr = RealReference(ref, hold, centres, counts, nn_median, mean_dist, bins=bins, seed=seed,
                       feature_space=feature_space)
    if real_images is not None and len(real_images) >= 4:
        rr.msssim = pair_msssim(real_images, seed=seed)
    rr.baseline = _baseline(rr, compared_size(baseline_n or len(hold), len(hold)), thresholds)
    return rr


def _raw_stats(ref: RealReference, fake: np.ndarray, th: Thresholds) -> dict:
    """Every statistic of one set of samples (the sample-size dependent ones: compare at equal sizes)."""
    k_pr = 3 if min(len(fake), len(ref.features)) > 3 else 1
    k_dc = 5 if min(len(fake), len(ref.features)) > 5 else 1
    pr = prdc.precision_recall(ref.features, fake, k_pr)
    dc = prdc.density_coverage(ref.features, fake, k_dc)
    fake_counts = np.bincount(assign_bins(fake, ref.centres), minlength=ref.bins)
    t = ndb(ref.counts, fake_counts)
    missed = (fake_counts == 0) | under_filled(t["z"])  # bins the samples leave empty or clearly under-fill
    pairs, dup_share = duplicate_pairs(fake, th.duplicate_radius * ref.nn_median)
    support, lower = birthday_support(len(fake), pairs)
    return {
        "n": int(len(fake)),
        "precision": pr["precision"], "recall": pr["recall"], "density": dc["density"], "coverage": dc["coverage"],
        "ndb": t["ndb"], "ndb_over_k": t["ndb_over_k"], "js": t["js"],
        "empty_bins": float((fake_counts == 0).mean()),
        "missing_mass": float(ref.counts[missed].sum() / ref.counts.sum()), "missing_bins": int(missed.sum()),
        "bins_for_half": bins_holding(0.5, fake_counts), "real_bins_for_half": bins_holding(0.5, ref.counts),
        "top_bin_share": float(fake_counts.max() / fake_counts.sum()),
        "duplicate_pairs": pairs, "duplicate_rate": dup_share,
        "support_estimate": support, "support_is_lower_bound": lower,
        "mean_distance": mean_pairwise_distance(fake),
        "nn_distance": median_nn_distance(fake),
        "fake_counts": fake_counts,
    }


# Counts and support are facts about the whole set; the rest is averaged over equal-size chunks.
WHOLE_SET = ("n", "fake_counts", "bins_for_half", "real_bins_for_half", "top_bin_share", "duplicate_pairs",
             "support_estimate", "support_is_lower_bound")
# Averaged over the baseline's draws like the rest, but the samples' value is the whole set's: a two-proportion
# test per bin (ndb) whose false-alarm rate does not grow with the sample size, so all samples can be used.
WHOLE_SET_TESTS = ("missing_mass", "missing_bins")


def _mean_stats(parts: list[dict]) -> dict:
    """Average the scalar statistics of several equal-size sets (ints stay ints where they are counts)."""
    out = dict(parts[0])
    for key, value in parts[0].items():
        if isinstance(value, bool | np.ndarray) or key in WHOLE_SET:
            continue
        mean = float(np.mean([p[key] for p in parts]))
        out[key] = int(round(mean)) if isinstance(value, int) else mean
    return out


def compared_size(n_fake: int, n_holdout: int) -> int:
    """The sample size m every statistic is compared at: all samples when half the holdout can supply
    several different draws of them, else half the holdout (the samples then go in chunks of m)."""
    return n_fake if n_fake <= max(10, n_holdout // 2) else max(10, n_holdout // 2)


def _chunks(n: int, m: int, seed: int) -> list[np.ndarray]:
    """Seeded chunks of m indices covering range(n) (the last one wraps round): equal-size comparisons."""
    perm = np.random.default_rng(seed + 2).permutation(n)
    count = math.ceil(n / m)
    return [np.take(perm, np.arange(i * m, (i + 1) * m), mode="wrap") for i in range(count)]


def _baseline(ref: RealReference, m: int, th: Thresholds) -> dict:
    """Real images' own statistics at m samples: seeded draws from the holdout half, averaged."""
    draws = 1 if m >= len(ref.holdout) else max(1, th.baseline_draws)  # (only when m is forced to the whole half)
    rng = np.random.default_rng(ref.seed + 1)
    parts = [_raw_stats(ref, ref.holdout[np.sort(rng.choice(len(ref.holdout), m, replace=False))], th)
             for _ in range(draws)]
    out = _mean_stats(parts)
    out["draws"] = draws
    return out


def _fake_stats(ref: RealReference, fake: np.ndarray, m: int, th: Thresholds) -> dict:
    """The samples' statistics at m samples (chunks averaged when there are more), whole-set counts."""
    if len(fake) == m:
        return _raw_stats(ref, fake, th)
    out = _mean_stats([_raw_stats(ref, fake[idx], th) for idx in _chunks(len(fake), m, ref.seed)])
    whole = _raw_stats(ref, fake, th)
    out.update({k: whole[k] for k in WHOLE_SET + WHOLE_SET_TESTS})
    return out


@dataclass
class Verdict:
    verdict: str  # healthy | partial collapse | collapse (about diversity only)
    severity: float  # 0-1
    reasons: list[str]
    stats: dict
    baseline: dict
    scores: dict  # per-signal 0-1 evidence
    shift: dict = field(default_factory=dict)  # do samples look like the real data? (a quality finding)

    def as_json(self) -> dict:
        d = asdict(self)
        for part in ("stats", "baseline"):
            d[part] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d[part].items()}
        return d


def _check_fake(fake: np.ndarray) -> None:
    if len(fake) < 10:
        raise DataError(f"the collapse check needs at least 10 generated samples; got {len(fake)}.")
    if not np.isfinite(fake).all():
        raise DataError("generated-sample features contain NaN or inf; the generator produced invalid images.")


def assess(ref: RealReference, fake_features: np.ndarray, fake_images: torch.Tensor | None = None, *,
           thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Verdict:
    """Run the battery on fake features (and images, for MS-SSIM) against a RealReference."""
    th = thresholds
    fake = np.asarray(fake_features, dtype=np.float64)
    _check_fake(fake)
    m = compared_size(len(fake), len(ref.holdout))
    s = _fake_stats(ref, fake, m, th)
    base = dict(ref.baseline) if ref.baseline.get("n") == m else _baseline(ref, m, th)
    for part in (s, base):
        part["diversity_ratio"] = part["mean_distance"] / ref.mean_distance
        part["compared_at"] = m
    s["feature_space"] = base["feature_space"] = ref.feature_space
    if fake_images is not None and ref.msssim is not None and len(fake_images) >= 4:
        s["msssim"], base["msssim"] = pair_msssim(fake_images, seed=ref.seed), ref.msssim
    scores = _scores(s, base, th)
    shift = _shift(s, base, th)
    severity, quality_only, fit_capped = _severity(scores, shift["score"], s["missing_mass"], th)
    if quality_only:  # kept apart, as before: the reasons then do not cite coverage as collapse evidence
        scores["coverage_discounted"], scores["coverage"] = scores["coverage"], 0.0
    verdict = "collapse" if severity >= th.collapse else "partial collapse" if severity >= th.partial else "healthy"
    reasons = _reasons(s, base, scores, ref) if verdict != "healthy" else [_healthy_reason(s, base, ref)]
    if quality_only and not shift["detected"]:
        reasons.append(f"coverage is lower than for real images ({s['coverage']:.2f} against "
                       f"{base['coverage']:.2f}) while recall and the bin proportions match the real data: "
                       "samples sit off the real images (a quality problem), not on too few of them.")
    if fit_capped and verdict != "healthy":
        reasons.append(f"the bins say modes are missing, but not most of them: {100 * s['missing_mass']:.0f}% of the "
                       "real images lie in bins the samples miss (collapse needs "
                       f"{100 * th.most_missing:.0f}% or more), so this is partial collapse.")
    if shift["detected"]:
        reasons.append(shift["reason"])
    return Verdict(verdict, round(severity, 4), reasons, s, base, {k: round(v, 4) for k, v in scores.items()},
                   shift)


def _scores(s: dict, base: dict, th: Thresholds) -> dict:
    """Each signal's 0-1 evidence of collapse, as its excess over the real baseline."""

    def rel_drop(key):
        return (base[key] - s[key]) / base[key] if base[key] > 0 else 0.0

    scores = {
        "coverage": _ramp(rel_drop("coverage"), th.coverage_drop),
        "recall": _ramp(rel_drop("recall"), th.recall_drop),
        "js": _ramp(s["js"] - base["js"], th.js_excess),
        "ndb": _ramp(s["ndb_over_k"] - base["ndb_over_k"], th.ndb_excess),
        "empty_bins": _ramp(s["empty_bins"] - base["empty_bins"], th.empty_bins),
        "missing_mass": _ramp(s["missing_mass"] - base["missing_mass"], th.missing_mass),
        "duplicates": _ramp(s["duplicate_rate"] - base["duplicate_rate"], th.duplicate_excess),
        "nn_spread": _ramp(rel_drop("nn_distance"), th.nn_drop),
        "diversity": _ramp(1 - s["diversity_ratio"] / max(base["diversity_ratio"], 1e-12), th.diversity_drop),
        "support": _ramp(-math.log10(max(s["support_estimate"], 1.0) / s["n"]), th.support),
    }
    if "msssim" in s:
        scores["msssim"] = _ramp(s["msssim"] - s_base_msssim(base), th.msssim_excess)
    return scores


def _shift(s: dict, base: dict, th: Thresholds) -> dict:
    """Samples that sit off the real images as a whole (colour, brightness, crops): a quality finding."""
    drop = (base["precision"] - s["precision"]) / base["precision"] if base["precision"] > 0 else 0.0
    score = _ramp(drop, th.shift_drop)
    detected = score > 0
    reason = (f"samples look different from the real data (a quality or appearance shift, not collapse): only "
              f"{100 * s['precision']:.0f}% of samples fall among real images (precision; real "
              f"{100 * base['precision']:.0f}%), so where they fall among the real bins says little; diversity is "
              f"judged by the samples among themselves.") if detected else ""
    return {"detected": detected, "score": round(score, 4), "precision": s["precision"],
            "real_precision": base["precision"], "reason": reason}


def _healthy_reason(s: dict, base: dict, ref: RealReference) -> str:
    return (f"samples spread like real images do: {s['bins_for_half']} of {ref.bins} bins hold half the samples "
            f"(real {base['bins_for_half']}), coverage {s['coverage']:.2f} (real {base['coverage']:.2f}), "
            f"{100 * s['duplicate_rate']:.0f}% near-duplicates (real {100 * base['duplicate_rate']:.0f}%).")


def s_base_msssim(base: dict) -> float:
    return base.get("msssim", 0.0) or 0.0


def _severity(scores: dict, shift: float = 0.0, missing_mass: float = 1.0,
              th: Thresholds = DEFAULT_THRESHOLDS) -> tuple[float, bool, bool]:
    """Two families of evidence: where samples fall among the real data (fit) and the fake set on its own
    (structure); returns (severity, whether a lone coverage drop was discounted as a quality problem, whether
    the fit family was held below collapse).

    Fit: the mean of the three strongest of six signals, so one noisy statistic alone cannot raise an
    alarm, scaled by (1 - shift): samples that all sit off the real images land in the wrong bins whatever
    their variety. A coverage drop no other fit signal confirms is a quality note too. Structure: the mean
    of its signals (duplicates, nearest-sample spread, feature diversity, MS-SSIM when images are given), so
    near-duplicates alone give a partial verdict and full collapse needs all of them. Severity is the
    stronger family.

    The fit family says that modes are missing; how many is the missing mass (the real share in bins the
    samples leave empty or significantly under-fill). Collapse means most of the data is missing, so the fit
    family alone stops just short of the collapse threshold while the missing mass is under `most_missing`:
    a generator that covers 70% of the data well is partially collapsed however sure the bins are of it.
    """
    fit = dict((k, scores[k]) for k in FIT)
    quality_only = fit["coverage"] > 0 and not any(fit[k] for k in FIT if k != "coverage")
    if quality_only:
        fit["coverage"] = 0.0
    top = sorted(fit.values(), reverse=True)[:3]
    same = [scores[k] for k in STRUCTURE if k in scores]
    fit_severity = sum(top) / 3 * (1 - shift)
    ceiling = th.collapse - 0.01 if missing_mass < th.most_missing else 1.0
    capped = fit_severity > ceiling
    other = max(sum(same) / len(same), scores["support"])
    severity = float(min(1.0, max(min(fit_severity, ceiling), other)))
    return severity, quality_only, capped and other < ceiling


def _reasons(s: dict, base: dict, scores: dict, ref: RealReference) -> list[str]:
    out = []
    if scores["js"] > 0 or scores["ndb"] > 0 or scores["empty_bins"] > 0:
        share = 100 * np.sort(s["fake_counts"])[::-1][: s["bins_for_half"]].sum() / s["fake_counts"].sum()
        out.append(f"{share:.0f}% of samples fall in {s['bins_for_half']} of {ref.bins} real-data bins "
                   f"(real images need {base['bins_for_half']}); {s['ndb']} bins differ significantly "
                   f"(JS divergence {s['js']:.2f} bits, real {base['js']:.2f}).")
    if scores["empty_bins"] > 0 or scores["missing_mass"] > 0:
        out.append(f"{100 * s['empty_bins']:.0f}% of the real-data bins receive no sample at all (real images leave "
                   f"{100 * base['empty_bins']:.0f}%); {s['missing_bins']} bins holding {100 * s['missing_mass']:.0f}% "
                   f"of the real images get no sample or significantly too few (real images "
                   f"{100 * base['missing_mass']:.0f}%): modes are missing.")
    if scores["coverage"] > 0 or scores["recall"] > 0:
        out.append(f"samples reach {100 * s['coverage']:.0f}% of real neighbourhoods (coverage; real "
                   f"{100 * base['coverage']:.0f}%) and recall is {s['recall']:.2f} (real {base['recall']:.2f}).")
    if scores["duplicates"] > 0 or scores["support"] > 0:
        sup = f"more than {s['support_estimate']:.0f}" if s["support_is_lower_bound"] else \
            f"about {s['support_estimate']:.0f}"
        out.append(f"{100 * s['duplicate_rate']:.0f}% of samples have a near-identical twin (real "
                   f"{100 * base['duplicate_rate']:.0f}%); a birthday-paradox estimate puts the number of distinct "
                   f"outputs at {sup}.")
    if scores["nn_spread"] > 0:
        out.append(f"each sample's nearest other sample is {100 * (1 - s['nn_distance'] / base['nn_distance']):.0f}% "
                   "closer than among real images: samples cluster on few kinds of image.")
    if scores["diversity"] > 0:
        out.append(f"samples differ from each other {100 * (1 - s['diversity_ratio']):.0f}% less than real "
                   f"images do (mean pairwise feature distance).")
    if scores.get("msssim", 0) > 0:
        out.append(f"sample pairs are structurally alike: MS-SSIM {s['msssim']:.2f} against {base['msssim']:.2f} "
                   "for real pairs.")
    return out


def check_collapse(real_features: np.ndarray, fake_features: np.ndarray, *, real_images=None, fake_images=None,
                   bins: int | None = None, seed: int = 0, thresholds: Thresholds = DEFAULT_THRESHOLDS,
                   feature_space: str = "handcrafted-v1") -> Verdict:
    """One-shot battery: build the real reference and assess the fake set against it."""
    ref = build_reference(real_features, bins=bins, seed=seed, real_images=real_images, feature_space=feature_space,
                          baseline_n=len(fake_features), thresholds=thresholds)
    return assess(ref, fake_features, fake_images, thresholds=thresholds)
