"""Coverage (and precision, recall, density) of generators against real images, in the whole handcrafted-v1
space and in each of its three blocks alone (layout, palette, edges), to see which aspect of the data the
samples miss (docs/results.md, "Where FastGAN's coverage went").

    OMP_NUM_THREADS=1 .venv/bin/python scripts/coverage_blocks.py /tmp/cmp64q/fastgan /tmp/cmp64q/dcgan \\
        --real /tmp/tw64 --n 2000

Samples and real images come through `ganplug eval`'s own sources (the same seeds, alpha compositing and
held-out split), so the "all" column is what `ganplug eval --metrics pr,dc` reports.
"""

from __future__ import annotations

import argparse

import numpy as np

from ganplug.device import make_runtime
from ganplug.eval.features.handcrafted import BLOCKS, handcrafted_features
from ganplug.eval.metrics.prdc import density_coverage, precision_recall
from ganplug.eval.sources import open_source, resolve_background


def features(source, size: int, batch_size: int = 64) -> np.ndarray:
    return np.concatenate([handcrafted_features(b.stacked(size)) for b in source.batches(batch_size)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("fakes", nargs="+", help="run folders or checkpoints")
    ap.add_argument("--real", required=True, help="prepared dataset or image folder")
    ap.add_argument("--n", type=int, default=2000, help="samples per generator")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rt = make_runtime("cpu", "fp32", False)
    print("| generator | precision | recall | density | coverage | " + " | ".join(f"{b} coverage" for b in BLOCKS)
          + " |")
    print("|---" * (5 + len(BLOCKS)) + "|")
    reals: dict[tuple, np.ndarray] = {}  # real features per (background, size): read once for same-kind runs
    for path in args.fakes:
        fake_src = open_source(path, role="fake", n=args.n, seed=args.seed, runtime=rt)
        background = resolve_background("auto", fake_src)  # eval's default --background
        fake_src.set_background(background)
        real_src = open_source(args.real, role="real", n=None, seed=args.seed, background=background)
        size = min(fake_src.size, real_src.size)
        if (background, size) not in reals:
            reals[background, size] = features(real_src, size)
        real, fake = reals[background, size], features(fake_src, size)
        pr, dc = precision_recall(real, fake), density_coverage(real, fake)
        per = [density_coverage(real[:, cols], fake[:, cols])["coverage"] for cols in BLOCKS.values()]
        print(f"| {path} | {pr['precision']:.3f} | {pr['recall']:.3f} | {dc['density']:.3f} | {dc['coverage']:.3f} | "
              + " | ".join(f"{c:.3f}" for c in per) + " |", flush=True)


if __name__ == "__main__":
    main()
