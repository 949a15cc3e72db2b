"""Issue 19's measurement: does pix2pix's dense bottleneck let parts move, and does it cost aligned tasks?

Mirrored task: input = a twemoji image on white, target = the same image mirrored left-right; a seeded
80/20 split of the images; the generators of --variants (plain, `--dense-bottleneck 5`, `--skip-drop K`,
both) trained with the same steps and seed through `ganplug prep`/`train`/`translate`, scored by mean
absolute error on the held-out 20 %. Floor and ceiling: a plain U-Net trained on the mirror-free task
(target = input, same steps) and the identity (output = input, no model). Aligned task: the same images
as `--pairs edges` (sketch -> render), the generators of --aligned-variants, same steps. Writes
results.json and held-out grids (input | one column per generator | target, per row).

    .venv/bin/python scripts/pix2pix_dense.py --out /tmp/p2p-dense --steps 1200 --aligned-steps 400 \\
        --size 32 --images 500 --variants plain,dense5,skip1

`--synthetic` runs the test's task instead (tests/train/test_pix2pix_dense.py: asymmetric black shapes,
32 px, 400 pairs split 80/20, the U-Net on the L1 term alone) for each of --seeds and --variants:

    .venv/bin/python scripts/pix2pix_dense.py --out /tmp/p2p-syn --synthetic --steps 800 --seeds 0,1,2,3,4 \\
        --variants plain,dense5,skip1,skip2
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ganplug.cli.app import main
from ganplug.data.pairs import edge_sketch

TWEMOJI = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "twemoji-128"


def ganplug(*args: str) -> None:
    """Run one `ganplug` command in-process, printing it as a user would type it."""
    print("$ ganplug " + shlex.join(args), flush=True)
    code = main(list(args))
    if code != 0:
        raise SystemExit(f"ganplug {args[0]} exited {code}")


def load_images(src: Path, count: int, size: int) -> dict[str, np.ndarray]:
    """The first `count` images by name, composited on white and resized: uint8 [size, size, 3]."""
    out = {}
    for path in sorted(src.glob("*.png"))[:count]:
        with Image.open(path) as im:
            rgba = im.convert("RGBA")
        white = Image.alpha_composite(Image.new("RGBA", rgba.size, (255,) * 4), rgba).convert("RGB")
        out[path.stem] = np.asarray(white.resize((size, size), Image.LANCZOS))
    return out


def split(names: list[str], seed: int) -> tuple[list[str], list[str]]:
    """A seeded 80/20 split, as the mugshots write-up held out a fifth of its pairs."""
    order = np.random.default_rng(seed).permutation(len(names))
    cut = int(0.8 * len(names))
    return [names[i] for i in order[:cut]], [names[i] for i in order[cut:]]


def write(folder: Path, images: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in images.items():
        Image.fromarray(arr).save(folder / f"{name}.png")
    return folder


def train_and_translate(root: Path, data: Path, tag: str, test_inputs: Path, args, extra: tuple[str, ...] = (),
                        steps: int = 0) -> tuple[dict[str, np.ndarray], float]:
    """Train one generator on `data`, translate the held-out inputs; (outputs by name, training seconds)."""
    run = root / "runs" / tag
    extra = tuple(str(int(np.log2(args.size)) - 1) if e == "all" else e for e in extra)  # --skip-drop all
    t0 = time.perf_counter()
    ganplug("train", str(data), "--arch", "pix2pix", "--out", str(run), "--steps", str(steps or args.steps), "--batch",
            str(args.batch), "--seed", str(args.seed), "--base-channels", str(args.base_channels), "--device",
            args.device, "--sample-every", "0", "--ckpt-every", "0", "--force", *extra)
    seconds = time.perf_counter() - t0
    outdir = root / "out" / tag
    ganplug("translate", str(run), *map(str, sorted(test_inputs.glob("*.png"))), "--outdir", str(outdir),
            "--device", args.device, "--force")
    return {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in outdir.glob("*.png")}, seconds


def mae(outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> float:
    """Mean absolute error in [0, 1] pixel units over the held-out pairs."""
    return float(np.mean([np.abs(outputs[k] / 255.0 - targets[k] / 255.0).mean() for k in targets]))


def blank(targets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A white image per target: the score of a model that draws nothing."""
    return {k: np.full_like(v, 255) for k, v in targets.items()}


def grid(rows: list[tuple[np.ndarray, ...]], path: Path, scale: int = 2) -> None:
    """One row per held-out pair: its images side by side with a 2-pixel gap, upscaled for the page."""
    h, w = rows[0][0].shape[:2]
    gap = 2
    cols = len(rows[0])
    canvas = np.full((len(rows) * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            canvas[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = img
    Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST).save(path)


# The generators compared on the mirrored task: tag -> extra `ganplug train` options.
VARIANTS = {"plain": (), "dense5": ("--dense-bottleneck", "5"), "skip1": ("--skip-drop", "1"),
            "skip2": ("--skip-drop", "2"), "skip3": ("--skip-drop", "3"), "skipall": ("--skip-drop", "all"),
            "dense5-skip1": ("--dense-bottleneck", "5", "--skip-drop", "1"),
            "dense5-skip2": ("--dense-bottleneck", "5", "--skip-drop", "2"),
            "dense5-skipall": ("--dense-bottleneck", "5", "--skip-drop", "all")}
LABELS = {"plain": "plain U-Net", "dense5": "dense bottleneck 5", "skip1": "skip drop 1", "skip2": "skip drop 2",
          "skip3": "skip drop 3", "skipall": "skip drop all (no skips)", "dense5-skip1": "dense 5 + skip drop 1",
          "dense5-skip2": "dense 5 + skip drop 2", "dense5-skipall": "dense 5 + skip drop all"}


def mirrored(root: Path, images: dict[str, np.ndarray], train: list[str], test: list[str], args) -> dict:
    """The task that needs parts to move, its floor (mirror-free) and ceiling (identity)."""
    src = root / "mirror-src"
    write(src / "a", {k: images[k] for k in train})
    write(src / "b", {k: images[k][:, ::-1] for k in train})
    ganplug("prep", str(src), str(root / "mirror-data"), "--size", str(args.size), "--pairs", "a,b", "--force")
    same = root / "same-src"
    write(same / "a", {k: images[k] for k in train})
    write(same / "b", {k: images[k] for k in train})
    ganplug("prep", str(same), str(root / "same-data"), "--size", str(args.size), "--pairs", "a,b", "--force")
    test_in = write(root / "test-in", {k: images[k] for k in test})
    targets = {k: np.ascontiguousarray(images[k][:, ::-1]) for k in test}
    outs, seconds = {}, {}
    for tag in args.variants:
        outs[tag], seconds[tag] = train_and_translate(root, root / "mirror-data", f"mirror-{tag}", test_in, args,
                                                      VARIANTS[tag])
    same_out = train_and_translate(root, root / "same-data", "same-plain", test_in, args)[0] if args.floor else None
    shown = test[: args.grid_rows]
    grid([(images[k], *(outs[t][k] for t in args.variants), targets[k]) for k in shown],
         args.img_dir / f"pix2pix-dense-mirror{args.grid_suffix}.png")
    results = {"identity (output = input)": mae({k: images[k] for k in test}, targets),
               "blank white output": mae(blank(targets), targets)}
    results.update({LABELS[t]: mae(outs[t], targets) for t in args.variants})
    if same_out is not None:
        results["mirror-free, plain U-Net (target = input)"] = mae(same_out, {k: images[k] for k in test})
    results.update({f"train seconds {t}": seconds[t] for t in args.variants})
    return results


def aligned(root: Path, images: dict[str, np.ndarray], train: list[str], test: list[str], args) -> dict:
    """edges -> render: the aligned translation the option must not hurt."""
    write(root / "edges-src", {k: images[k] for k in train})
    ganplug("prep", str(root / "edges-src"), str(root / "edges-data"), "--size", str(args.size), "--pairs", "edges",
            "--force")
    test_in = write(root / "edges-test-in", {k: edge_sketch(images[k]) for k in test})
    targets = {k: images[k] for k in test}
    outs = {t: train_and_translate(root, root / "edges-data", f"edges-{t}", test_in, args, VARIANTS[t],
                                   steps=args.aligned_steps)[0] for t in args.aligned_variants}
    shown = test[: args.grid_rows]
    grid([(edge_sketch(images[k]), *(outs[t][k] for t in args.aligned_variants), targets[k]) for k in shown],
         args.img_dir / f"pix2pix-dense-edges{args.grid_suffix}.png")
    return {"sketch as output": mae({k: edge_sketch(images[k]) for k in test}, targets),
            "blank white output": mae(blank(targets), targets),
            **{LABELS[t]: mae(outs[t], targets) for t in args.aligned_variants}}


def synthetic(args) -> dict:
    """Held-out MAE of each variant on the test's mirrored shapes, per seed, with the identity and blank floors."""
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test module holds the task
    from tests.train.test_pix2pix_dense import asymmetric_shapes, held_out_mae

    torch.set_num_threads(1)
    out: dict = {}
    for seed in args.seeds:
        x = asymmetric_shapes(400, 32, seed=1000 + seed)
        y = x.flip(3)
        row = {"identity (output = input)": (x[320:] - y[320:]).abs().mean().item() / 2,
               "blank white output": (1 - y[320:]).abs().mean().item() / 2}
        for tag in args.variants:
            opts = dict(zip(VARIANTS[tag][::2], VARIANTS[tag][1::2], strict=True))
            skip = opts.get("--skip-drop", "0")
            row[LABELS[tag]] = held_out_mae(int(opts.get("--dense-bottleneck", 0)), x, y, steps=args.steps, seed=seed,
                                            skip_drop=4 if skip == "all" else int(skip))
            print(f"seed {seed} {LABELS[tag]}: {row[LABELS[tag]]:.4f}", flush=True)
        out[f"seed {seed}"] = row
    return out


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="work folder (datasets, runs, translations)")
    p.add_argument("--src", type=Path, default=TWEMOJI)
    p.add_argument("--images", type=int, default=500, help="first N twemoji by name, split 80/20")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=1200, help="steps of the mirrored and mirror-free runs")
    p.add_argument("--aligned-steps", type=int, default=400, help="steps of the edges -> render runs")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--base-channels", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid-rows", type=int, default=8)
    p.add_argument("--img-dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "img")
    p.add_argument("--variants", type=lambda v: v.split(","), default=["plain", "dense5"],
                   help=f"generators on the mirrored task, comma-separated: {', '.join(VARIANTS)}")
    p.add_argument("--aligned-variants", type=lambda v: v.split(","), default=["plain", "dense5"],
                   help="generators on the edges -> render task, the same names")
    p.add_argument("--no-floor", dest="floor", action="store_false",
                   help="skip the mirror-free plain run (the floor) on the mirrored task")
    p.add_argument("--grid-suffix", default="", help="appended to the mirrored grid's file name")
    p.add_argument("--device", default="cpu")
    p.add_argument("--synthetic", action="store_true", help="the test's mirrored shapes instead of twemoji")
    p.add_argument("--seeds", type=lambda v: [int(s) for s in v.split(",")], default=[0],
                   help="--synthetic: model seeds s, on the shapes of seed 1000 + s")
    p.add_argument("--skip-aligned", action="store_true")
    p.add_argument("--skip-mirrored", action="store_true")
    return p.parse_args()


def run() -> None:
    args = parse()
    if args.synthetic:
        args.out.mkdir(parents=True, exist_ok=True)
        results = {"settings": {k: str(v) for k, v in vars(args).items()}, "synthetic mirrored": synthetic(args)}
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(results, indent=2))
        return
    images = load_images(args.src, args.images, args.size)
    train, test = split(sorted(images), args.seed)
    print(f"{len(train)} training and {len(test)} held-out images at {args.size} px", flush=True)
    results: dict = {"settings": {k: str(v) for k, v in vars(args).items()}}
    if not args.skip_mirrored:
        results["mirrored"] = mirrored(args.out, images, train, test, args)
        print(json.dumps(results["mirrored"], indent=2), flush=True)
    if not args.skip_aligned:
        results["aligned (edges -> render)"] = aligned(args.out, images, train, test, args)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    run()
