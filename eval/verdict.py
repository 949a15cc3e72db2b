"""The collapse verdict and the memorisation check of `evaluate()`, from images the one pass kept.

The battery judges the first `collapse_n` generator samples (a seeded subset of an image set) against
up to MAX_REAL real images, both taken from the arrays the metrics pass already decoded. Only
`--all-checkpoints` samples other generators (the other checkpoints of the run); the checkpoint FAKE
itself is not sampled again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganplug.eval.collapse import RealReference, Verdict, assess, build_reference
from ganplug.eval.features.handcrafted import NAME as FEATURE_SPACE
from ganplug.eval.features.handcrafted import handcrafted_features
from ganplug.eval.memorisation import Memorisation, memorisation, train_nn_distances
from ganplug.eval.sources import CheckpointSource, Source, subset_rows

MAX_REAL = 2000  # real images used by the battery and the memorisation check
BASELINE_IMAGES = 400  # real images whose random pairs give the real MS-SSIM baseline


def fake_rows(src: Source, n: int, seed: int) -> np.ndarray:
    """The FAKE images the battery judges: a generator's first n seeds, or a seeded subset of an image set."""
    if isinstance(src, CheckpointSource):
        return np.arange(min(n, src.count))
    return subset_rows(src.count, n, seed)


def real_rows(src: Source, seed: int) -> np.ndarray:
    """The REAL images it compares with: the same seeded subset `open_source(n=MAX_REAL)` would pick."""
    return subset_rows(src.count, MAX_REAL, seed)


@dataclass
class Judgement:
    reference: RealReference
    verdict: Verdict
    memorisation: Memorisation
    real_features: np.ndarray
    train_nn: np.ndarray


def judge(fake_images: torch.Tensor, real_images: torch.Tensor, *, seed: int, fake_features=None,
          real_features=None, feature_space: str = FEATURE_SPACE) -> Judgement:
    """Build the real reference once and judge the samples (handcrafted features computed here unless given;
    features of another space must be given, and `feature_space` names them)."""
    fake_f = handcrafted_features(fake_images) if fake_features is None else fake_features
    real_f = handcrafted_features(real_images) if real_features is None else real_features
    ref = build_reference(real_f, seed=seed, real_images=real_images[:BASELINE_IMAGES], baseline_n=len(fake_f),
                          feature_space=feature_space)
    train_nn = train_nn_distances(real_f)
    return Judgement(ref, assess(ref, fake_f, fake_images), memorisation(fake_f, real_f, train_nn=train_nn),
                     real_f, train_nn)


def rejudge(j: Judgement, fake_images: torch.Tensor, features=None) -> tuple[Verdict, Memorisation]:
    """Judge other samples (another checkpoint's) against the same real reference; `features` maps images to
    the reference's feature space (handcrafted when None)."""
    f = (features or handcrafted_features)(fake_images)
    return assess(j.reference, f, fake_images), memorisation(f, j.real_features, train_nn=j.train_nn)


def _sample(src: CheckpointSource, size: int, batch_size: int) -> torch.Tensor:
    return torch.cat([b.stacked(size) for b in src.batches(batch_size)])


def judge_checkpoints(run: Path, main: CheckpointSource, j: Judgement, *, n: int, size: int, seed: int,
                      runtime, batch_size: int, features=None) -> list[dict]:
    """Every checkpoint of the run judged with the same real reference; the best one marked. The one FAKE
    already is (its first n seeds, judged as `j`) is not sampled again."""
    rows = []
    for ck in sorted((run / "checkpoints").glob("step-*.safetensors")):
        if ck.resolve() == Path(main.path).resolve():
            v, mem, step = j.verdict, j.memorisation, main.loaded.meta.get("step")
        else:
            src = CheckpointSource.open(ck, n, seed, runtime, main.truncation, main.background)
            (v, mem), step = rejudge(j, _sample(src, size, batch_size), features), src.loaded.meta.get("step")
        st = v.stats
        rows.append({"checkpoint": ck.name, "step": step, "verdict": v.verdict, "severity": v.severity,
                     "coverage": st["coverage"], "precision": st["precision"], "recall": st["recall"],
                     "duplicate_rate": st["duplicate_rate"], "memorisation_rate": mem.rate})
    if rows:  # best: least collapsed, then most real neighbourhoods covered, then most plausible samples
        best = min(rows, key=lambda r: (r["severity"], -r["coverage"], -r["precision"]))
        for r in rows:
            r["best"] = r is best
    return rows


def run_folder(fake) -> Path | None:
    """FAKE as a run folder (one with checkpoints/), for the loss curves and --all-checkpoints."""
    p = Path(fake).expanduser()
    return p if p.is_dir() and (p / "checkpoints").is_dir() else None


def read_losses(path: Path) -> list[dict]:
    """G and D losses per logged step from a run's metrics.jsonl (unreadable lines skipped)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "loss/G" in r or "loss/D" in r:
            rows.append({k: r[k] for k in ("step", "loss/G", "loss/D") if k in r})
    return rows


# Images seen below which a family's samples are rarely more than blobs or noise, which the battery reads as
# collapse. DCGAN: ~100k (about 1,500 steps at batch 64); style-based models need longer to leave noise.
EARLY_NIMG = {"dcgan": 100_000, "stylegan": 500_000}
DEFAULT_EARLY_NIMG = 100_000


def training_context(src: Source, fake) -> dict | None:
    """How far the judged generator is into training (from its checkpoint's "nimg"/"step"), and what a
    verdict means that early, so an undertrained model is not read as a problem with the art."""
    if not isinstance(src, CheckpointSource):
        return None
    meta, arch = src.loaded.meta, src.spec.arch
    nimg, step = meta.get("nimg"), meta.get("step")
    if not isinstance(nimg, int | float):
        return {"step": step, "nimg": None, "early": None, "text": None}
    limit = EARLY_NIMG.get(arch, DEFAULT_EARLY_NIMG)
    early = nimg < limit
    text = None
    if early:
        run = run_folder(fake) or Path(src.path).parent.parent
        batch = max(1, round(nimg / step)) if isinstance(step, int) and step > 0 else 64
        target = -(-limit // batch // 1000) * 1000  # steps to reach `limit` images, rounded up to a thousand
        text = (f"Early in training: this generator has seen {int(nimg):,} images ({step} steps). A {arch} rarely "
                f"gets past blobs before about {limit:,} images, and blobs read as collapse here, so this verdict "
                f"says little about your art yet. Train longer (`ganplug train --resume {run} --steps {target}`) "
                "and evaluate again.")
    return {"step": step, "nimg": int(nimg), "early": early, "early_below_nimg": limit, "text": text}
