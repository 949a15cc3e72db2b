"""Steer latency in real Krita: slider move -> updated pixels on the canvas, through a real `ganplug serve`.

    .venv/bin/python scripts/krita_steer_latency.py [--size 128] [--canvas 128,512] [--moves 40]

Builds an untrained DCGAN at --size px (default widths; the weights do not change the speed) with a
directions file, starts `ganplug serve --device cpu --precision fp32` on loopback, and runs kritarunner
headless (QT_QPA_PLATFORM=offscreen) with the ganplug docker. For each canvas size it times, from the
slider's setValue to right after the preview layer's setPixelData + refreshProjection:

- isolated: one move, wait until its pixels are on the canvas, next move (--moves times);
- drag: a move every 1/60 s (--moves * 2 of them) while Krita runs its event loop; a move's latency is the
  time until pixels of that position or a later one are on the canvas (stale positions are skipped).

Prints a markdown table (p50/p90/max in ms). Needs `kritarunner` (apt-get install krita). Not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "plugins"), str(REPO / "tests" / "serve")]

KRITA_SCRIPT = r'''
import json, os, time

def main(*args):
    from krita import Krita
    from PyQt5.QtWidgets import QApplication
    from ganplug_krita import document, state
    from ganplug_krita import ganplug_client as client
    from ganplug_krita.docker import GanplugDocker

    cfg = json.loads(os.environ["GANPLUG_BENCH"])
    app = Krita.instance()
    api = client.Client(os.environ["GANPLUG_URL"])
    app.writeSetting("ganplug", "settings", state.Settings(server_url=os.environ["GANPLUG_URL"]).to_json())
    docker = GanplugDocker()
    panel = docker.steer
    shown = []
    panel.shown.connect(lambda seq, t: shown.append((seq, t)))
    out = {"runs": []}

    def pump(until, limit=30.0):
        deadline = time.monotonic() + limit
        while not until():
            if time.monotonic() > deadline:
                raise RuntimeError("no answer from the server")
            QApplication.processEvents()
            time.sleep(0.0005)

    for side in cfg["canvas"]:
        doc = app.createDocument(side, side, "steer bench", "RGBA", "U8", "", 300.0)
        layer = document.generate(doc, api, state.Settings(model="bench", seed=7, truncation=1.0))[0]
        assert panel.bind(doc, layer)
        slider = panel.rows[0][1]
        values = [(-1) ** i * (25 + 7 * (i % 30)) for i in range(cfg["moves"] * 2 + 8)]

        def move(value):
            t0 = time.perf_counter()
            slider.setValue(value)
            return panel.sched._seq, t0

        for v in values[:5]:  # warm-up
            seq, _ = move(v)
            pump(lambda: shown and shown[-1][0] >= seq and not panel.sched.busy)
        isolated = []
        for v in values[5:5 + cfg["moves"]]:
            seq, t0 = move(v)
            pump(lambda: shown and shown[-1][0] >= seq and not panel.sched.busy)
            isolated.append(shown[-1][1] - t0)
        shown.clear()
        moves, period = [], 1.0 / 60
        start = time.perf_counter()
        for i, v in enumerate(values[:cfg["moves"] * 2]):
            while time.perf_counter() < start + i * period:
                QApplication.processEvents()
                time.sleep(0.0005)
            moves.append(move(v))
        pump(lambda: not panel.sched.busy)
        QApplication.processEvents()
        drag = []
        for seq, t0 in moves:
            later = [t for s, t in shown if s >= seq]
            if later:
                drag.append(later[0] - t0)
        out["runs"].append({"canvas": side, "isolated": isolated, "drag": drag, "drag_moves": len(moves),
                            "drag_shown": len(shown), "replaced": panel.sched.replaced})
        panel.discard()
        doc.close()
    json.dump(out, open(os.environ["GANPLUG_OUT"], "w"))
'''


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] * 1000


def http_baseline(url: str, sides: list[int], moves: int) -> dict:
    """The same steer requests from plain Python (no Krita): round trip and the server's own elapsed_s."""
    import time

    sys.path.insert(0, str(REPO / "plugins" / "common"))
    import ganplug_client

    api = ganplug_client.Client(url)
    out = {}
    for side in sides:
        trips, server = [], []
        for i in range(moves + 3):
            req = {"model": "bench", "seeds": [7], "width": side, "height": side,
                   "edits": [{"direction": 0, "amount": (-1) ** i * (0.25 + 0.07 * i)}]}
            t0 = time.perf_counter()
            res = api.call("generate", req)
            if i >= 3:
                trips.append(time.perf_counter() - t0)
                server.append(res["elapsed_s"])
        out[side] = {"round_trip": trips, "server": server}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="model side in px")
    ap.add_argument("--canvas", default="128,512", help="canvas sides in px, comma-separated")
    ap.add_argument("--moves", type=int, default=40, help="isolated moves per canvas (drag: twice as many)")
    ap.add_argument("--precision", default="fp32", help="server --precision")
    args = ap.parse_args()

    from host_helpers import host_env, start_server
    from serve_helpers import write_untrained_run

    from ganplug import directions
    from ganplug.checkpoint import load_generator
    from ganplug.serve.plugins import install_krita

    tmp = Path(tempfile.mkdtemp(prefix="ganplug-steer-bench-"))
    run = tmp / "bench"
    write_untrained_run(run, size=args.size, channels=3)
    loaded = load_generator(run)
    directions.save(directions.find(loaded, n=8, samples=2000), directions.default_path(loaded))
    server = start_server([run], tmp / "serve.log", "--precision", args.precision)
    try:
        install_krita(tmp / "pykrita")
        (tmp / "krita_steer_bench.py").write_text(KRITA_SCRIPT)
        out = tmp / "latency.json"
        cfg = {"canvas": [int(c) for c in args.canvas.split(",")], "moves": args.moves}
        env = host_env(tmp / "home", GANPLUG_URL=server.url, GANPLUG_OUT=out, GANPLUG_BENCH=json.dumps(cfg),
                       PYTHONPATH=f"{tmp}:{tmp / 'pykrita'}")
        # with a venv's bin first on PATH, Krita's embedded Python takes the venv's prefix and finds no PyQt5
        env.pop("VIRTUAL_ENV", None)
        env["PATH"] = ":".join(p for p in env["PATH"].split(":") if not p.startswith(sys.prefix))
        proc = subprocess.run(["kritarunner", "-s", "krita_steer_bench", "-f", "main"], env=env, cwd=tmp,
                              capture_output=True, text=True, timeout=900)
        if not out.exists():
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return 1
        result = json.loads(out.read_text())
        result["http"] = http_baseline(server.url, cfg["canvas"], args.moves)
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=10)
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")),
        platform.processor())
    print(f"untrained dcgan at {args.size} px, server --device cpu --precision {args.precision}; CPU: {cpu}")
    print()
    print("| canvas | mode | moves | p50 ms | p90 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for r in result["runs"]:
        for mode in ("isolated", "drag"):
            v = r[mode]
            note = f" ({r['drag_shown']} frames shown)" if mode == "drag" else ""
            print(f"| {r['canvas']} px | {mode}{note} | {len(v)} | {pct(v, 0.5):.1f} | {pct(v, 0.9):.1f} | "
                  f"{max(v) * 1000:.1f} |")
        http = result["http"][str(r["canvas"])] if str(r["canvas"]) in result["http"] else result["http"][r["canvas"]]
        for what, v in (("HTTP round trip from Python, no Krita", http["round_trip"]),
                        ("of which the server's elapsed_s", http["server"])):
            print(f"| {r['canvas']} px | {what} | {len(v)} | {pct(v, 0.5):.1f} | {pct(v, 0.9):.1f} | "
                  f"{max(v) * 1000:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
