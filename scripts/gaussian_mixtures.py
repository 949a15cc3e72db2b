"""Ring-of-8 and grid-of-25 Gaussian benchmarks: an MLP GAN trained with ganplug's ClassicStep, scored
with the VEEGAN/PacGAN definitions, judged by ganplug's collapse verdict, beside the published numbers.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/gaussian_mixtures.py --seeds 2 --steps 2500

For every mixture x variant x seed: train (ganplug.train.toy2d), draw 2,500 points, count modes and the
share of high-quality samples (ganplug.eval.mixtures), and run the collapse battery
(ganplug.eval.collapse.check_collapse) with the 2D points as the features, against 5,000 fresh points
of the true mixture (2,500 reference + 2,500 playing the perfect generator, the same size as the fake
set). "expected" is what the mode count says: every mode -> healthy, at least half -> partial collapse,
fewer -> collapse; "agree" counts seeds where the verdict says the same.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ganplug.eval.collapse import check_collapse
from ganplug.eval.mixtures import MIXTURES, PUBLISHED, SAMPLES, count_modes
from ganplug.train.toy2d import sample_points, toy_config, train_points

# (name, TrainConfig overrides, evaluate the EMA generator)
VARIANTS = [
    ("vanilla (nonsat)", {}, False),
    ("nonsat + EMA", {"ema_kimg": 10.0, "ema_rampup": 0.05}, True),
    ("nonsat + label smoothing 0.2 + noise 0.1", {"label_smoothing": 0.2, "label_noise": 0.1}, False),
    ("nonsat, d_steps 2", {"d_steps": 2}, False),
    ("hinge", {"loss": "hinge"}, False),
    ("wgan-gp, d_steps 5", {"loss": "wgan-gp", "d_steps": 5}, False),
]


def expected_verdict(modes: int, k: int) -> str:
    return "healthy" if modes == k else "partial collapse" if modes >= k / 2 else "collapse"


def run_one(mix, overrides: dict, use_ema: bool, seed: int, args) -> dict:
    cfg = toy_config(steps=args.steps, batch=args.batch, lr_g=args.lr, lr_d=args.lr, seed=seed, **overrides)
    run = train_points(mix.sample, cfg)
    G = run.G_ema if use_ema else run.G
    fake = sample_points(G, SAMPLES, seed=10_000 + seed)
    mc = count_modes(mix, fake)
    real = mix.sample(2 * SAMPLES, np.random.default_rng(20_000 + seed))
    v = check_collapse(real, fake, seed=seed)
    return {"modes": mc.modes, "hq": 100 * mc.high_quality, "verdict": v.verdict, "severity": v.severity,
            "expected": expected_verdict(mc.modes, mix.k), "reasons": v.reasons}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mixtures", default="ring,grid")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--variants", default="", help="comma list of variant numbers (0-based); default all")
    args = ap.parse_args()
    torch.set_num_threads(1)
    chosen = [VARIANTS[int(i)] for i in args.variants.split(",")] if args.variants else VARIANTS
    t0 = time.perf_counter()
    rows = []
    for mname in args.mixtures.split(","):
        mix = MIXTURES[mname]()
        for name, overrides, use_ema in chosen:
            res = [run_one(mix, overrides, use_ema, s, args) for s in range(args.seeds)]
            rows.append((mname, mix.k, name, res))
            modes = [r["modes"] for r in res]
            hq = [r["hq"] for r in res]
            verdicts = ", ".join(f"{r['verdict']} ({r['severity']:.2f})" for r in res)
            agree = sum(r["verdict"] == r["expected"] for r in res)
            print(f"| {mname} | {name} | {np.mean(modes):.1f} ({'/'.join(map(str, modes))}) | "
                  f"{np.mean(hq):.1f} | {verdicts} | {agree}/{len(res)} |", flush=True)
    print()
    print("| mixture | variant | modes captured (mean; per seed) | % high quality | verdict (severity) per seed "
          "| verdict agrees with mode count |")
    print("|---|---|---|---|---|---|")
    for mname, k, name, res in rows:
        modes = [r["modes"] for r in res]
        verdicts = ", ".join(f"{r['verdict']} ({r['severity']:.2f})" for r in res)
        agree = sum(r["verdict"] == r["expected"] for r in res)
        print(f"| {mname}-{k} | ganplug {name} | {np.mean(modes):.1f} ({' / '.join(map(str, modes))}) | "
              f"{np.mean([r['hq'] for r in res]):.1f} | {verdicts} | {agree}/{len(res)} |")
    for mname in args.mixtures.split(","):
        k = MIXTURES[mname]().k
        for name, (modes, hq) in PUBLISHED[mname].items():
            print(f"| {mname}-{k} | {name} | {modes} | {hq} | | |")
    print(f"\n{args.seeds} seeds, {args.steps} steps, batch {args.batch}, Adam lr {args.lr}; "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
