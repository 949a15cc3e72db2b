"""The evaluation report: the collapse verdict, memorisation, checkpoints over time, in one HTML file.

`analyse()` computes the content (a JSON-ready dict); `render_html()` turns it into one self-contained
page (images and matplotlib plots embedded as base64 PNG) written for an artist: the verdict in words
first, then what each number means, samples, nearest training images, the bin histogram, and for a run
folder the checkpoints over time and the loss curves from metrics.jsonl. Real features are computed
once and reused for every checkpoint.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import torch

from ganplug.errors import UserError
from ganplug.eval.collapse import RealReference, assess, build_reference
from ganplug.eval.features.handcrafted import NAME as FEATURE_SPACE
from ganplug.eval.features.handcrafted import handcrafted_features
from ganplug.eval.memorisation import memorisation, train_nn_distances
from ganplug.eval.sources import CheckpointSource, StatsSource, open_source, resolve_background

MAX_REAL = 2000  # real images read for the battery and the memorisation check
THUMB = 96

METRIC_HELP = {
    "fid": "Fréchet Inception distance: how far the generated set is from the real set (lower is better).",
    "kid": "Kernel Inception distance: like FID, unbiased on small sets (lower is better).",
    "is": "Inception score: confident and varied ImageNet classes (higher is better; weak for art).",
    "ppl": "Perceptual path length: how smoothly images change along the latent space (lower is smoother).",
    "pr": "Precision: share of samples that look like some real image; recall: share of real images the "
          "generator can produce.",
    "dc": "Density: how tightly samples sit among real images; coverage: share of real images with a "
          "sample nearby (both higher is better).",
    "swd": "Sliced Wasserstein distance on image patches at several scales (lower is better).",
    "msssim": "MS-SSIM between random sample pairs: higher means samples look alike (compare with real pairs).",
}


def read_images(source, limit: int | None, size: int, batch: int = 64) -> torch.Tensor:
    out, count = [], 0
    for b in source.batches(batch):
        x = b.stacked(size)
        out.append(x)
        count += len(x)
        if limit and count >= limit:
            break
    x = torch.cat(out)
    return x[:limit] if limit else x


def features(images: torch.Tensor) -> np.ndarray:
    return handcrafted_features(images)


def _png(img: np.ndarray | torch.Tensor) -> str:
    from PIL import Image

    if isinstance(img, torch.Tensor):
        img = img.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _thumb(img: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.interpolate(img[None].float(), size=(THUMB, THUMB), mode="bilinear",
                                           antialias=True, align_corners=False)[0].round().clamp(0, 255).byte()


def _fig(draw) -> str:
    from ganplug.extras import require

    matplotlib = require("matplotlib", "eval", "the HTML report's plots (--report)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.2), dpi=100)
    draw(ax)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _checkpoint_files(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("step-*.safetensors"))


def _judge(ref: RealReference, src, n: int, size: int, train_feats, train_nn) -> tuple[dict, torch.Tensor, dict]:
    imgs = read_images(src, n, size)
    f = features(imgs)
    v = assess(ref, f, imgs)
    mem = memorisation(f, train_feats, train_nn=train_nn)
    return v.as_json(), imgs, {"mem": mem}


def analyse(fake, real, *, n: int = 500, seed: int = 0, all_checkpoints: bool = False, runtime=None,
            truncation: float = 1.0, background: str = "auto", plots: bool = True) -> dict:
    """The report content for FAKE against REAL (the training images, for the memorisation check).

    `plots=False` leaves out the plots (the verdict alone needs no matplotlib, an `eval` extra);
    render_html() needs them.
    """
    from ganplug.device import make_runtime

    runtime = runtime or make_runtime("auto", "fp32")
    fake_src = open_source(fake, role="fake", n=n, seed=seed, runtime=runtime, truncation=truncation,
                           background=resolve_background(background))
    real_src = open_source(real, role="real", n=MAX_REAL, seed=seed,
                           background=resolve_background(background, fake_src))
    if isinstance(real_src, StatsSource):
        raise UserError(f"{real}: the collapse check and the report need real images, not a statistics file.")
    size = fake_src.size or real_src.size
    real_imgs = read_images(real_src, None, size)
    real_f = features(real_imgs)
    ref = build_reference(real_f, seed=seed, real_images=real_imgs[:400], baseline_n=min(n, fake_src.count),
                          feature_space=FEATURE_SPACE)
    train_nn = train_nn_distances(real_f)
    verdict, fake_imgs, extra = _judge(ref, fake_src, n, size, real_f, train_nn)
    mem = extra["mem"]
    out: dict = {"feature_space": FEATURE_SPACE, "fake": str(fake), "real": str(real),
                 "collapse": verdict, "memorisation": mem.as_json()}
    fake_counts = np.asarray(verdict["stats"]["fake_counts"], float)
    real_counts = ref.counts.astype(float)
    assets = {
        "grid": [_png(_thumb(x)) for x in fake_imgs[:48]],
        "pairs": [{"sample": _png(_thumb(fake_imgs[s])), "train": _png(_thumb(real_imgs[t])), "ratio": r,
                   "copy": r < mem.threshold} for s, t, _, r in mem.closest_pairs(8)],
    }
    order = np.argsort(-real_counts)

    def bins(ax):
        x = np.arange(len(order))
        ax.bar(x - 0.2, real_counts[order] / real_counts.sum(), 0.4, label="real images", color="#7a9cc6")
        ax.bar(x + 0.2, fake_counts[order] / fake_counts.sum(), 0.4, label="generated", color="#e07b39")
        ax.set_xlabel("real-data bin (k-means on features), most common first")
        ax.set_ylabel("share of images")
        ax.legend()

    if plots:
        assets["bins_plot"] = _fig(bins)
    run = Path(fake)
    if run.is_dir() and (run / "checkpoints").is_dir():
        out["losses"] = _losses(run / "metrics.jsonl")
        if out["losses"] and plots:
            assets["loss_plot"] = _fig(lambda ax: _plot_losses(ax, out["losses"]))
        if all_checkpoints:
            rows = []
            for ck in _checkpoint_files(run):
                src = CheckpointSource.open(ck, n, seed, runtime, truncation, fake_src.background)
                v, _, ex = _judge(ref, src, n, size, real_f, train_nn)
                st = v["stats"]
                rows.append({"checkpoint": ck.name, "step": src.loaded.meta.get("step"), "verdict": v["verdict"],
                             "severity": v["severity"], "coverage": st["coverage"], "precision": st["precision"],
                             "recall": st["recall"], "duplicate_rate": st["duplicate_rate"],
                             "memorisation_rate": ex["mem"].rate})
            if rows:
                # best: least collapsed, then most real neighbourhoods covered, then most plausible samples
                best = min(rows, key=lambda r: (r["severity"], -r["coverage"], -r["precision"]))
                for r in rows:
                    r["best"] = r is best
                out["checkpoints"] = rows
                if plots:
                    assets["ckpt_plot"] = _fig(lambda ax: _plot_checkpoints(ax, rows))
    out["_assets"] = assets
    return out


def _losses(path: Path) -> list[dict]:
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


def _smooth(v: np.ndarray, w: int) -> np.ndarray:
    if len(v) < w or w < 2:
        return v
    return np.convolve(v, np.ones(w) / w, mode="valid")


def _plot_losses(ax, rows):
    w = max(1, len(rows) // 100)
    for key, colour in (("loss/G", "#e07b39"), ("loss/D", "#3c6fb0")):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            s, v = map(np.asarray, zip(*pts, strict=True))
            ax.plot(s[w - 1:] if w > 1 else s, _smooth(v, w), label=key.replace("loss/", ""), color=colour)
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.legend()


def _plot_checkpoints(ax, rows):
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["severity"] for r in rows], "o-", label="collapse severity", color="#c0392b")
    ax.plot(steps, [r["coverage"] for r in rows], "o-", label="coverage", color="#27ae60")
    ax.plot(steps, [r["precision"] for r in rows], "o-", label="precision", color="#3c6fb0")
    best = next(r for r in rows if r["best"])
    ax.axvline(best["step"], color="k", ls="--", lw=1)
    ax.annotate("best", (best["step"], 1.0), ha="center", va="bottom")
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("checkpoint step")
    ax.legend(loc="lower left")


def public(report: dict) -> dict:
    """The report without embedded images: what goes into --json."""
    return {k: v for k, v in report.items() if not k.startswith("_")}


VERDICT_TEXT = {
    "healthy": "The generator is not collapsed: its samples spread over the real images like the real images do.",
    "partial collapse": "Partial collapse: the generator misses part of the real variety or repeats itself.",
    "collapse": "Collapse: the generator produces only a few kinds of image.",
}
COLOURS = {"healthy": "#1e8449", "partial collapse": "#b9770e", "collapse": "#c0392b"}


def _e(x) -> str:
    return html.escape(str(x))


def render_html(report: dict, metrics: dict | None = None) -> str:
    a = report["_assets"]
    c = report["collapse"]
    m = report["memorisation"]
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>ganplug report</title><style>{CSS}"
             "</style></head><body>",
             f"<h1>ganplug evaluation</h1><p class='src'>{_e(report['fake'])} against {_e(report['real'])}</p>",
             f"<section class='verdict' style='border-color:{COLOURS[c['verdict']]}'>"
             f"<h2 style='color:{COLOURS[c['verdict']]}'>{_e(c['verdict'].capitalize())} "
             f"<span class='sev'>severity {c['severity']:.2f} / 1</span></h2>"
             f"<p>{_e(VERDICT_TEXT[c['verdict']])}</p><ul>"
             + "".join(f"<li>{_e(r)}</li>" for r in c["reasons"]) + "</ul>"
             f"<p><b>Copies of training images:</b> {100 * m['rate']:.1f}% of {m['samples']} samples "
             f"({m['flagged']}) are closer to one training image than training images are to each other "
             f"(ratio under {m['threshold']}).</p></section>"]
    s, b = c["stats"], c["baseline"]
    rows = [("coverage", "share of real neighbourhoods reached by a sample", s["coverage"], b["coverage"]),
            ("recall", "share of real images the samples can explain", s["recall"], b["recall"]),
            ("precision", "share of samples that look like some real image", s["precision"], b["precision"]),
            ("JS divergence (bits)", "difference between real and generated bin proportions", s["js"], b["js"]),
            ("NDB / K", "share of bins with a significantly different proportion", s["ndb_over_k"], b["ndb_over_k"]),
            ("empty bins", "share of real-data bins no sample falls in", s["empty_bins"], b["empty_bins"]),
            ("near-duplicates", "share of samples with a near-identical twin", s["duplicate_rate"],
             b["duplicate_rate"]),
            ("diversity", "mean distance between samples / between real images", s["diversity_ratio"],
             b["diversity_ratio"])]
    if "msssim" in s:
        rows.append(("MS-SSIM of pairs", "structural similarity of random pairs (higher = more alike)", s["msssim"],
                     b["msssim"]))
    parts.append("<h2>Collapse statistics</h2><p>Each number beside the same number for unseen real images "
                 f"at the same sample size ({_e(report['feature_space'])} features).</p><table><tr><th>statistic"
                 "</th><th>what it means</th><th>generated</th><th>real images</th></tr>"
                 + "".join(f"<tr><td>{_e(n)}</td><td>{_e(d)}</td><td>{v:.3f}</td><td>{r:.3f}</td></tr>"
                           for n, d, v, r in rows) + "</table>")
    if metrics:
        parts.append("<h2>Metrics</h2><table><tr><th>metric</th><th>value</th><th>what it means</th></tr>"
                     + "".join(f"<tr><td>{_e(k)}</td><td>{_e(_metric_value(k, v))}</td><td>{_e(METRIC_HELP.get(k, ''))}"
                               "</td></tr>" for k, v in metrics.items()) + "</table>")
    parts.append("<h2>Samples</h2><div class='grid'>" + "".join(f"<img src='{u}' alt='sample'>" for u in a["grid"])
                 + "</div>")
    parts.append("<h2>Closest to the training images</h2><p>Each generated sample beside its nearest training image, "
                 "closest first. Ratio = distance to that image / that image's distance to its own nearest "
                 "neighbour; below the threshold it is marked as a copy.</p><div class='pairs'>"
                 + "".join(f"<figure class='{'copy' if p['copy'] else ''}'><img src='{p['sample']}' alt='sample'>"
                           f"<img src='{p['train']}' alt='training image'><figcaption>ratio {p['ratio']:.2f}"
                           f"{' — copy' if p['copy'] else ''}</figcaption></figure>" for p in a["pairs"]) + "</div>")
    parts.append(f"<h2>Where samples fall</h2><img class='plot' src='{a['bins_plot']}' alt='bin histogram'>")
    if "ckpt_plot" in a:
        parts.append("<h2>Checkpoints</h2>" f"<img class='plot' src='{a['ckpt_plot']}' alt='checkpoints'><table><tr>"
                     "<th>checkpoint</th><th>verdict</th><th>severity</th><th>coverage</th><th>precision</th>"
                     "<th>copies</th></tr>"
                     + "".join(f"<tr class='{'best' if r['best'] else ''}'><td>{_e(r['checkpoint'])}"
                               f"{' ★ best' if r['best'] else ''}</td><td>{_e(r['verdict'])}</td>"
                               f"<td>{r['severity']:.2f}</td><td>{r['coverage']:.2f}</td><td>{r['precision']:.2f}</td>"
                               f"<td>{100 * r['memorisation_rate']:.0f}%</td></tr>" for r in report["checkpoints"])
                     + "</table>")
    if "loss_plot" in a:
        parts.append(f"<h2>Training losses</h2><img class='plot' src='{a['loss_plot']}' alt='loss curves'>")
    parts.append("</body></html>")
    return "".join(parts)


def _metric_value(name: str, m: dict) -> str:
    if name == "pr":
        return f"precision {m['precision']:.3f}, recall {m['recall']:.3f}"
    if name == "dc":
        return f"density {m['density']:.3f}, coverage {m['coverage']:.3f}"
    return f"{m['value']:.4g}" if isinstance(m.get("value"), float | int) else str(m.get("value"))


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:24px auto;color:#222;
padding:0 16px}h1{margin-bottom:0}.src{color:#666;margin-top:4px}.verdict{border-left:8px solid;padding:8px 20px;
background:#fafafa;margin:16px 0}.sev{font-size:60%;color:#555;font-weight:normal}table{border-collapse:collapse;
margin:8px 0}td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}.grid img{width:96px;height:96px;
margin:2px;image-rendering:auto}.pairs{display:flex;flex-wrap:wrap;gap:12px}.pairs figure{margin:0;padding:4px;
border:2px solid #ddd}.pairs figure.copy{border-color:#c0392b}figcaption{font-size:80%;text-align:center}
.plot{max-width:100%}tr.best{background:#eaf6ea;font-weight:bold}
"""


def write_report(path: Path, report: dict, metrics: dict | None = None, *, force: bool = False) -> Path:
    from ganplug.atomic import atomic_write_bytes

    path = Path(path)
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to overwrite it or choose another --report path.")
    atomic_write_bytes(path, render_html(report, metrics).encode())
    return path
