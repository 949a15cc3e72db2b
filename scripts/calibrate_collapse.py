"""Calibrate and validate the collapse verdict on controlled cases built from held-out twemoji images.

The twemoji set is split (seeded) into a REAL reference (what a generator would have been trained on)
and a held-out pool (805 images; 1,000 for the 1,000-sample cases, the reference then keeps 609). Each
"generator" below is a set of held-out images manipulated to show one thing:

  healthy            unseen real images
  appearance shifts  unseen real images, each changed the same way; diverse, so "healthy", with a shift:
                     hue-120 (each image's hue rotated by 120 degrees), darker / brighter (x0.7 / x1.3),
                     blur (Gaussian, radius 2), noise (Gaussian, sigma 20), jpeg-15 (quality 15),
                     crop-88 (a random 88% crop scaled back), flip (mirrored)
  drop-k/10          only k of 10 feature clusters (k-means on held-out features); variation within modes
                     comes from flips and small shifts, so only the missing modes are wrong
  near-duplicates    n/4 images, each appearing four times with slight noise
  collapse-m         m images, each repeated with small pixel noise and 1-2 px shifts

Prints one markdown table per sample size (expected verdict, how often each verdict came out over the
seeds, mean severity and shift score, seed-0 statistics) for docs/results.md.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/calibrate_collapse.py --seeds 5 --n 200,1000

`--battery FILE` judges with another version of eval/collapse.py (e.g. `git show HEAD:eval/collapse.py`),
for a before/after comparison. `--cases drop-7/10,healthy` runs only those cases (quick iteration; the
summary then counts only them), `--per-seed` adds each seed's severity, family scores and strongest signals.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from ganplug.eval import collapse
from ganplug.eval.collapse import assign_bins, kmeans
from ganplug.eval.features.handcrafted import handcrafted_features
from ganplug.eval.sources import FolderSource

REPO = Path(__file__).resolve().parents[1]
TWEMOJI = REPO.parent / "shared" / "datasets" / "twemoji-128"
VERDICTS = ("healthy", "partial collapse", "collapse")
ALARM = {"partial collapse", "collapse"}


def load_images(folder: Path) -> np.ndarray:
    src = FolderSource.open(folder, None, 0, workers=2)
    return np.concatenate([np.stack(b.arrays) for b in src.batches(256)])  # N,H,W,3 uint8


def to_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()


def jitter(img: np.ndarray, rng: np.random.Generator, noise: float = 6.0, shift: int = 2, flip: bool = False):
    out = np.roll(img, tuple(rng.integers(-shift, shift + 1, 2)), axis=(0, 1)) if shift else img
    if flip and rng.random() < 0.5:
        out = out[:, ::-1]
    if noise:
        out = np.clip(out.astype(np.float32) + rng.normal(0, noise, out.shape), 0, 255)
    return out.astype(np.uint8)


def _jpeg(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=15)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _crop(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    size = im.size[0]
    c = int(round(size * 0.88))
    x, y = rng.integers(0, size - c + 1, 2)
    return im.crop((int(x), int(y), int(x) + c, int(y) + c)).resize((size, size), Image.BICUBIC)


def _pil(fn):
    return lambda img, rng: np.asarray(fn(Image.fromarray(img), rng))


def hue_rotate_120(img: np.ndarray, rng=None) -> np.ndarray:
    """A 120-degree hue rotation is exactly a cyclic permutation of R, G, B (saturation and value kept)."""
    return np.ascontiguousarray(img[..., [2, 0, 1]])


SHIFTS = {
    "hue-120": hue_rotate_120,
    "darker": _pil(lambda im, rng: ImageEnhance.Brightness(im).enhance(0.7)),
    "brighter": _pil(lambda im, rng: ImageEnhance.Brightness(im).enhance(1.3)),
    "blur": _pil(lambda im, rng: im.filter(ImageFilter.GaussianBlur(2))),
    "noise": lambda img, rng: np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8),
    "jpeg-15": _pil(_jpeg),
    "crop-88": _pil(_crop),
    "flip": lambda img, rng: np.ascontiguousarray(img[:, ::-1]),
}


def drop_modes(held: np.ndarray, clusters: np.ndarray, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    keep = rng.choice(clusters.max() + 1, k, replace=False)
    pool = np.flatnonzero(np.isin(clusters, keep))
    out = [held[i] for i in rng.permutation(pool)[:n]]
    while len(out) < n:  # fewer images in those modes than samples: vary them (flip, shift, noise)
        out.append(jitter(held[rng.choice(pool)], rng, noise=4.0, shift=4, flip=True))
    return np.stack(out)


def case_images(name: str, held: np.ndarray, clusters: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if name == "healthy":
        return held[rng.choice(len(held), n, replace=False)]
    if name in SHIFTS:
        return np.stack([SHIFTS[name](held[i], rng) for i in rng.choice(len(held), n, replace=False)])
    if name.startswith("drop-"):
        return drop_modes(held, clusters, int(name.split("-")[1].split("/")[0]), n, rng)
    if name.startswith("collapse-"):
        m = int(name.split("-")[1])
        base = held[rng.choice(len(held), m, replace=False)]
        return np.stack([jitter(base[i % m], rng) for i in range(n)])
    if name == "near-duplicates":
        base = held[rng.choice(len(held), n // 4, replace=False)]
        return np.stack([jitter(base[i % len(base)], rng, noise=3.0, shift=1) for i in range(n)])
    raise ValueError(name)


HEALTHY = {"healthy"}
# (case, verdicts that are right). Three or one of ten modes left, or every image four times: either alarm.
CASES = ([("healthy", HEALTHY)] + [(s, HEALTHY) for s in SHIFTS]
         + [("drop-7/10", {"partial collapse"}), ("drop-5/10", ALARM), ("drop-3/10", ALARM), ("drop-1/10", ALARM),
            ("near-duplicates", ALARM), ("collapse-10", {"collapse"}), ("collapse-5", {"collapse"}),
            ("collapse-1", {"collapse"})])


def load_battery(path: Path | None) -> ModuleType:
    """eval/collapse.py, or another version of it for a before/after comparison."""
    if path is None:
        return collapse
    spec = importlib.util.spec_from_file_location("battery_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def split(imgs: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(real reference, held-out pool): halves, or a pool of n when n samples need more than half."""
    perm = np.random.default_rng(12345).permutation(len(imgs))
    cut = min(len(imgs) // 2, len(imgs) - n)
    return imgs[perm[:cut]], imgs[perm[cut:]]


def select_cases(names: str | None) -> list:
    """CASES, or only the comma-separated ones named (in CASES order); unknown names are an error."""
    if not names:
        return CASES
    wanted = {x.strip() for x in names.split(",") if x.strip()}
    unknown = wanted - {name for name, _ in CASES}
    if unknown:
        raise SystemExit(f"unknown case(s): {', '.join(sorted(unknown))}; known: {', '.join(n for n, _ in CASES)}")
    return [(name, right) for name, right in CASES if name in wanted]


def run_size(battery: ModuleType, imgs: np.ndarray, n: int, seeds: int, bins: int,
             cases: list | None = None) -> tuple[list, object, int]:
    real, held = split(imgs, n)
    held_f = handcrafted_features(to_nchw(held))
    clusters = assign_bins(held_f, kmeans(held_f, 10, seed=0))
    ref = battery.build_reference(handcrafted_features(to_nchw(real)), bins=bins, seed=0,
                                  real_images=to_nchw(real[:400]), baseline_n=n)
    rows = []
    for name, right in cases or CASES:
        verdicts = []
        for seed in range(seeds):
            xt = to_nchw(case_images(name, held, clusters, n, np.random.default_rng(1000 + seed)))
            verdicts.append(battery.assess(ref, handcrafted_features(xt), xt))
        rows.append((name, right, verdicts))
    return rows, ref, len(real)


def _fmt(v: dict, key: str, digits: int = 2) -> str:
    return f"{v[key]:.{digits}f}" if key in v else "-"


def print_per_seed(rows: list) -> None:
    """Each seed's verdict, severity and strongest signals (what a miss is made of)."""
    print("\n| case | seed | verdict | severity | strongest signals |")
    print("|---|---|---|---|---|")
    for name, _, verdicts in rows:
        for seed, v in enumerate(verdicts):
            top = sorted(((k, x) for k, x in v.scores.items() if isinstance(x, float) and x > 0),
                         key=lambda kv: -kv[1])[:5]
            print(f"| {name} | {seed} | {v.verdict} | {v.severity:.2f} | "
                  + ", ".join(f"{k} {x:.2f}" for k, x in top) + " |")


def print_table(rows: list, ref, n: int, seeds: int, n_real: int) -> int:
    print(f"\n### {n} samples per case ({n_real} real images: {len(ref.features)} reference + {len(ref.holdout)} "
          f"baseline; {ref.bins} bins)\n")
    print("| case | right verdict | right | healthy / partial / collapse | severity | shift | precision | coverage "
          "| recall | JS (bits) | missing mass | dup. rate | NN spread | MS-SSIM |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    total = 0
    for name, right, verdicts in rows:
        got = [v.verdict for v in verdicts]
        ok = sum(g in right for g in got)
        total += ok
        s, b = verdicts[0].stats, verdicts[0].baseline
        shift = np.mean([getattr(v, "shift", {}).get("score", 0.0) for v in verdicts])
        nn = f"{s['nn_distance'] / b['nn_distance']:.2f}" if "nn_distance" in s else "-"
        print(f"| {name} | {' or '.join(x for x in VERDICTS if x in right)} | {ok}/{seeds} | "
              + " / ".join(str(got.count(x)) for x in VERDICTS)
              + f" | {np.mean([v.severity for v in verdicts]):.2f} | {shift:.2f} | {s['precision']:.2f} "
              f"| {s['coverage']:.2f} | {s['recall']:.2f} | {s['js']:.3f} | {_fmt(s, 'missing_mass')} "
              f"| {s['duplicate_rate']:.2f} | {nn} | {_fmt(s, 'msssim', 3)} |")
    b = verdicts[0].baseline
    print(f"\nreal-vs-real baseline at {b.get('compared_at', b['n'])} samples: precision {b['precision']:.2f}, "
          f"coverage {b['coverage']:.2f}, recall {b['recall']:.2f}, JS {b['js']:.3f}, empty bins "
          f"{b['empty_bins']:.2f}, {_fmt(b, 'missing_mass')} missing mass, duplicates {b['duplicate_rate']:.2f}, "
          f"real pair MS-SSIM {ref.msssim:.3f}")
    print(f"verdict right on {total}/{len(rows) * seeds} case runs")
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=TWEMOJI)
    ap.add_argument("--n", default="200,1000", help="samples per 'generator' (comma-separated sizes)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--bins", type=int, default=20)
    ap.add_argument("--battery", type=Path, default=None, help="another eval/collapse.py to judge with")
    ap.add_argument("--cases", default=None, help="only these cases (comma-separated names, e.g. drop-7/10,healthy)")
    ap.add_argument("--per-seed", action="store_true", help="also print each seed's severity and strongest signals")
    args = ap.parse_args()
    cases = select_cases(args.cases)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    battery = load_battery(args.battery)
    imgs = load_images(args.data)
    total = runs = 0
    for n in (int(x) for x in args.n.split(",")):
        rows, ref, n_real = run_size(battery, imgs, n, args.seeds, args.bins, cases)
        total += print_table(rows, ref, n, args.seeds, n_real)
        if args.per_seed:
            print_per_seed(rows)
        runs += len(rows) * args.seeds
    print(f"\nall sizes: verdict right on {total}/{runs} case runs; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
