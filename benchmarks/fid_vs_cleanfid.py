"""End-to-end FID of two image folders: ganplug vs clean-fid, same stand-in Inception file, one process.

    .venv/bin/python benchmarks/fid_vs_cleanfid.py --n 1000 [--device cpu] [--skip-cleanfid]

Both run side by side in this process, so they suffer the same machine load. Prints a table with
images/s, wall time, speed-up over clean-fid and the FID each reports (stand-in network: the values
are only comparable with each other, never with published FIDs).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TWEMOJI = REPO / ".." / "shared" / "datasets" / "twemoji-128"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:  # noqa: BLE001
        return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-cleanfid", action="store_true")
    ap.add_argument("--cleanfid-workers", type=int, default=0)
    args = ap.parse_args()
    from ganplug.eval import evaluate
    from ganplug.eval.features.standin import save_standin_inception

    files = sorted(TWEMOJI.glob("*.png"))
    if len(files) < 2 * args.n:
        files = files * (2 * args.n // max(1, len(files)) + 1)
    work = Path(tempfile.mkdtemp(prefix="fidbench-"))
    try:
        a, b = work / "a", work / "b"
        a.mkdir()
        b.mkdir()
        for i in range(args.n):
            shutil.copy(files[i], a / f"{i:05d}.png")
            shutil.copy(files[-1 - i], b / f"{i:05d}.png")
        wdir = work / "weights"
        save_standin_inception(wdir / "inception-2015-12-05.pt", seed=0)
        rows = []
        dev = torch.device(args.device)
        if not args.skip_cleanfid:
            from cleanfid.fid import compute_fid
            from cleanfid.inception_torchscript import InceptionV3W

            model = InceptionV3W(str(wdir), download=False).to(dev).eval()
            t = time.perf_counter()
            ref = compute_fid(str(a), str(b), mode="clean", custom_feat_extractor=model, device=dev,
                              num_workers=args.cleanfid_workers, batch_size=32, verbose=False)
            rows.append(("clean-fid 0.1.35 (fp32, batch 32)", time.perf_counter() - t, ref))
        for precision in ("fp32", "bf16"):
            t = time.perf_counter()
            out = evaluate(a, b, metrics="fid", weights_dir=str(wdir), allow_unverified_weights=True,
                           device=args.device, precision=precision, use_cache=False, batch_size=64)
            value = out["metrics"]["fid"]["value"]
            rows.append((f"ganplug {precision} channels_last", time.perf_counter() - t, value))
        base = rows[0][1] if not args.skip_cleanfid else None
        fp32 = next(v for name, _, v in rows if "ganplug fp32" in name)
        print(f"CPU: {cpu_model()}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
              f"n={args.n} vs {args.n}")
        print("| pipeline | wall s | images/s | speed-up vs clean-fid | FID | rel. diff vs ganplug fp32 |")
        print("|---|---|---|---|---|---|")
        for name, secs, val in rows:
            speed = f"{base / secs:.2f}x" if base else "-"
            rel = (val - fp32) / fp32
            print(f"| {name} | {secs:.1f} | {2 * args.n / secs:.1f} | {speed} | {val:.6g} | {rel:+.2e} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
