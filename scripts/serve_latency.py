"""Latency and throughput of a real `ganplug serve` on loopback, with micro-batching on and off.

    .venv/bin/python scripts/serve_latency.py [--sequential 15] [--clients 16] [--per-client 3] [--wait-ms 5]

Builds untrained 256 px checkpoints (the weights do not change the speed) the way tests/serve/serve_helpers.py
does: fastgan at capacity 0.25 (its default widths otherwise) and a DCGAN with its default widths. For each
model and for --batch-wait-ms W and 0 it starts `ganplug serve --device cpu --precision P` (default auto:
bf16 where the CPU has native bf16; the server batches only in bf16) and measures, after two warm-ups:

- sequential: one 256 px image per request, one request at a time: p50/p95 latency;
- parallel: --clients threads each sending --per-client one-image requests back to back: images/s over the
  whole run and p50/p95 latency per request.

Prints a markdown table. OMP_NUM_THREADS is passed through to the server as set (unset: torch's default).
Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "serve"))

MODELS = {
    "fastgan256 (capacity 0.25)": dict(arch="fastgan", size=256, capacity=0.25),
    "dcgan256": dict(arch="dcgan", size=256),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> float:
    t0 = time.perf_counter()
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        r.read()
        assert r.status == 200
    return time.perf_counter() - t0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def start_server(models: Path, port: int, wait_ms: float, precision: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("ganplug")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from ganplug.cli.app import main; main()"]
    cmd += ["serve", "--models", str(models), "--port", str(port), "--device", "cpu", "--batch-wait-ms", str(wait_ms),
            "--precision", precision]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not come up")


def measure(url: str, model: str, args) -> dict:
    for s in range(2):
        post(url, {"model": model, "seeds": [s]})
    seq = [post(url, {"model": model, "seeds": [1000 + i]}) for i in range(args.sequential)]

    def client(c: int) -> list[float]:
        return [post(url, {"model": model, "seeds": [10_000 + c * 100 + i]}) for i in range(args.per_client)]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        par = [x for xs in pool.map(client, range(args.clients)) for x in xs]
    wall = time.perf_counter() - t0
    return {"seq": seq, "par": par, "ips": len(par) / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequential", type=int, default=15)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--per-client", type=int, default=3)
    ap.add_argument("--wait-ms", type=float, default=5.0)
    ap.add_argument("--precision", default="auto", help="the server's --precision (it batches only in bf16)")
    ap.add_argument("--only-off", action="store_true", help="measure batching off only")
    args = ap.parse_args()

    import torch
    from serve_helpers import write_untrained_run

    from ganplug.device import make_runtime

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, kw in MODELS.items():
            kw = dict(kw)
            run = Path(tmp) / label.split()[0] / "bench"
            write_untrained_run(run, arch=kw.pop("arch"), **kw)
            for wait in (0.0,) if args.only_off else (args.wait_ms, 0.0):
                port = free_port()
                proc = start_server(run.parent, port, wait, args.precision)
                try:
                    r = measure(f"http://127.0.0.1:{port}/v1/generate", "bench", args)
                finally:
                    proc.terminate()
                    proc.wait(30)
                rows.append((label, "on" if wait else "off", wait, r))
                print(f"# {label} batching {'on' if wait else 'off'} done", file=sys.stderr, flush=True)

    rt = make_runtime("cpu", args.precision)
    print(f"CPU, precision {rt.precision}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} "
          f"(torch threads {torch.get_num_threads()}); sequential: {args.sequential} requests; parallel: "
          f"{args.clients} clients x {args.per_client} requests; 1 image of 256 px per request\n")
    print("| model | batching | sequential p50 | sequential p95 | 16 clients img/s | 16 clients p50 | 16 clients p95 |")
    print("|---|---|---|---|---|---|---|")
    for label, mode, wait, r in rows:
        name = f"on ({wait:g} ms)" if mode == "on" else "off (0)"
        print(f"| {label} | {name} | {statistics.median(r['seq']):.3f} s | {pct(r['seq'], 0.95):.3f} s | "
              f"{r['ips']:.2f} | {statistics.median(r['par']):.2f} s | {pct(r['par'], 0.95):.2f} s |")


if __name__ == "__main__":
    main()
