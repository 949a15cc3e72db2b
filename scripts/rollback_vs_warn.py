"""Does `--on-collapse rollback` end healthier than `warn` on a deliberately unstable configuration?

    OMP_NUM_THREADS=1 .venv/bin/python scripts/rollback_vs_warn.py --images 256 --steps 600 --lr-d 4e-3

The unstable configuration: a 32 px DCGAN (base_channels 16) on a twemoji subset with D's learning rate
far too high (default 4e-3, 20x the DCGAN paper's 2e-4; G keeps 2e-4). The same run (same seed, data and
config) is trained twice with `train(cfg, watch=CollapseWatch(...))` from ganplug.train.loop, once with
on_collapse="warn" and once with "rollback" (restore the last healthy checkpoint state, then the watch's
remedy: halve D's learning rate and add one-sided label smoothing; at most 3 rollbacks). Both final EMA
generators are then judged by the same independent check: the collapse battery on 256 fixed-seed samples
against 512 training images, plus the discriminator signals over the last 100 steps.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ganplug import checkpoint as ckpt
from ganplug.data import load_training_data
from ganplug.train.config import TrainConfig
from ganplug.train.loop import train
from ganplug.train.watch import CollapseWatch, WatchSettings

TWEMOJI = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "twemoji-128"


def subset(src: Path, n: int, dst: Path, seed: int = 0) -> Path:
    files = sorted(src.glob("*.png"))
    pick = np.random.default_rng(seed).choice(len(files), min(n, len(files)), replace=False)
    dst.mkdir(parents=True, exist_ok=True)
    for i in sorted(pick):
        shutil.copyfile(files[i], dst / files[i].name)
    return dst


def run(mode: str, data: Path, out: Path, args, lr_d: float | None = None) -> dict:
    cfg = TrainConfig(data=str(data), out=str(out), size=32, steps=args.steps, batch=32, lr_d=lr_d or args.lr_d,
                      sample_every=0, ckpt_every=args.every, keep_checkpoints=0, device="cpu", precision="fp32",
                      channels_last=False, grid_samples=16, seed=args.seed, model={"base_channels": 16})
    watch = CollapseWatch.for_config(cfg, WatchSettings(every=args.every, on_collapse=mode, samples=96, real=384))
    t0 = time.perf_counter()
    result = train(cfg, watch=watch)
    seconds = time.perf_counter() - t0
    checks = result.checks
    # the same final judge for both runs: a bigger fixed-seed batch than the watch's, fresh reference
    judge = CollapseWatch.for_config(cfg, WatchSettings(every=100, samples=256, real=512, seed=1))
    judge.begin(cfg, load_training_data(cfg.data, size=cfg.size, background=cfg.background, progress=False))
    G = ckpt.load_generator(result.checkpoint, device="cpu", ema=True).G
    final = judge.check(result.step, G, result.history[-100:])
    s = final.stats
    meta = ckpt.read_meta(ckpt.resolve_checkpoint(out))
    label = mode if lr_d is None else f"{mode}, control lr_d {lr_d:g}"
    return {"mode": label, "seconds": seconds, "flags": sum(h["watch/healthy"] == 0 for h in checks),
            "checks": len(checks), "rollbacks": len(result.events), "verdict": judge.last.verdict,
            "severity": s["severity"], "coverage": s["coverage"], "recall": s["recall"], "js": s["js"],
            "empty_bins": s["empty_bins"], "dup": s["duplicate_rate"], "d_loss": s.get("d_loss", float("nan")),
            "gap": s.get("d_prob_gap", float("nan")), "final_lr_d": meta["train"]["lr_d"],
            "smoothing": meta["train"]["label_smoothing"],
            "remedies": [e["remedy"] for e in result.events]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--lr-d", type=float, default=4e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=TWEMOJI)
    ap.add_argument("--control", action="store_true", help="also a warn run at the paper's lr_d 2e-4")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = subset(args.data, args.images, Path(tmp) / "data", seed=args.seed)
        rows = [run(mode, data, Path(tmp) / mode, args) for mode in ("warn", "rollback")]
        if args.control:
            rows.append(run("warn", data, Path(tmp) / "control", args, lr_d=2e-4))
    print("| on-collapse | watch flags / checks | rollbacks | final verdict | severity | coverage | recall | "
          "JS (bits) | empty bins | dup. rate | D loss (last 100) | D(x)-D(G(z)) (last 100) | final lr_d | "
          "label smoothing | train s |")
    print("|" + "---|" * 15)
    for r in rows:
        print(f"| {r['mode']} | {r['flags']} / {r['checks']} | {r['rollbacks']} | {r['verdict']} | "
              f"{r['severity']:.2f} | {r['coverage']:.2f} | {r['recall']:.2f} | {r['js']:.3f} | "
              f"{r['empty_bins']:.2f} | {r['dup']:.2f} | {r['d_loss']:.3f} | {r['gap']:.2f} | "
              f"{r['final_lr_d']:.2e} | {r['smoothing']:.1f} | {r['seconds']:.0f} |")
    for r in rows:
        for i, rem in enumerate(r["remedies"], 1):
            print(f"{r['mode']} rollback {i}: {rem}")


if __name__ == "__main__":
    main()
