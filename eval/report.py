"""The evaluation report: the collapse verdict, memorisation, checkpoints over time, in one HTML file.

It only renders: `evaluate()` computes everything (from its one pass over the inputs) and hands over a
`ReportContent`; nothing here opens an input or samples a generator. `render_html()` makes one
self-contained page (images and matplotlib plots embedded as base64 PNG) written for an artist: the
verdict in words first, then what each number means, samples, nearest training images, the bin
histogram, and for a run folder the checkpoints over time and the loss curves.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ganplug.errors import UserError

THUMB = 96
GRID = 48  # samples shown


@dataclass
class ReportContent:
    """What the page shows; built by ganplug.eval.pipeline from the arrays of its one pass."""

    fake: str
    real: str
    feature_space: str
    collapse: dict  # Verdict.as_json(), as in the JSON
    memorisation: dict  # Memorisation.as_json(): `closest` indexes fake_images and real_images
    fake_images: torch.Tensor  # uint8 NCHW: the samples the battery judged
    real_images: torch.Tensor  # uint8 NCHW: the REAL images they were compared with
    real_bin_counts: np.ndarray  # real reference images per k-means bin
    metrics: dict = field(default_factory=dict)  # the JSON's "metrics"
    losses: list[dict] | None = None  # from the run's metrics.jsonl (None: FAKE is not a run folder)
    checkpoints: list[dict] = field(default_factory=list)  # --all-checkpoints rows
    training: dict | None = None  # verdict.training_context: images seen, and whether that is early
    skipped: dict[str, str] = field(default_factory=dict)  # the JSON's "skipped": metric -> reason
    warnings: list[str] = field(default_factory=list)  # the JSON's "warnings" (stand-in/unverified files)
    sample_count: dict | None = None  # the JSON's "sample_count": n, whether auto chose it, the estimate
    weights: dict[str, dict] = field(default_factory=dict)  # the JSON's "weights": file, path, status
    by_space: dict[str, dict] = field(default_factory=dict)  # the JSON's "collapse_by_space": space -> verdict


def grid_columns(count: int, widest: int = 12) -> int:
    """Columns for a grid as square as `count` allows with no ragged last row (48, 64 -> 8; 36 -> 6),
    else the nearest-to-square width (a prime count leaves one short row)."""
    if count <= 1:
        return max(count, 1)
    low = math.ceil(math.sqrt(count))
    exact = [c for c in range(low, min(widest, count) + 1) if count % c == 0]
    return exact[0] if exact else min(low, widest)


def metric_help() -> dict[str, str]:
    from ganplug.eval.registry import METRICS

    return {name: m.help for name, m in METRICS.items()}


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


VERDICT_TEXT = {
    "healthy": "The generator is not collapsed: its samples spread over the real images like the real images do.",
    "partial collapse": "Partial collapse: the generator misses part of the real variety or repeats itself.",
    "collapse": "Collapse: the generator produces only a few kinds of image.",
}
COLOURS = {"healthy": "#1e8449", "partial collapse": "#b9770e", "collapse": "#c0392b"}


def _e(x) -> str:
    return html.escape(str(x))


def assets(c: ReportContent) -> dict:
    """The page's pictures as data URLs: sample grid, sample/training pairs and the plots."""
    real_counts = np.asarray(c.real_bin_counts, float)
    fake_counts = np.asarray(c.collapse["stats"]["fake_counts"], float)
    order = np.argsort(-real_counts)
    threshold = c.memorisation["threshold"]

    def bins(ax):
        x = np.arange(len(order))
        ax.bar(x - 0.2, real_counts[order] / real_counts.sum(), 0.4, label="real images", color="#7a9cc6")
        ax.bar(x + 0.2, fake_counts[order] / fake_counts.sum(), 0.4, label="generated", color="#e07b39")
        ax.set_xlabel("real-data bin (k-means on features), most common first")
        ax.set_ylabel("share of images")
        ax.legend()

    out = {"grid": [_png(_thumb(x)) for x in c.fake_images[:GRID]],
           "pairs": [{"sample": _png(_thumb(c.fake_images[p["sample"]])),
                      "train": _png(_thumb(c.real_images[p["train"]])),
                      "ratio": p["ratio"], "copy": p["ratio"] < threshold} for p in c.memorisation["closest"]],
           "bins_plot": _fig(bins)}
    if c.losses:
        out["loss_plot"] = _fig(lambda ax: _plot_losses(ax, c.losses))
    if c.checkpoints:
        out["ckpt_plot"] = _fig(lambda ax: _plot_checkpoints(ax, c.checkpoints))
    return out


def _training_note(c: ReportContent) -> str:
    t = c.training
    if not t or not t.get("early"):
        return ""
    return f"<p class='early'><b>Early in training.</b> {_e(t['text'].removeprefix('Early in training: '))}</p>"


def _verdict_section(c: ReportContent) -> str:
    v, m = c.collapse, c.memorisation
    colour = COLOURS[v["verdict"]]
    return (f"<section class='verdict' style='border-color:{colour}'>"
            f"<h2 style='color:{colour}'>{_e(v['verdict'].capitalize())} "
            f"<span class='sev'>severity {v['severity']:.2f} / 1</span></h2>"
            f"<p>{_e(VERDICT_TEXT[v['verdict']])}</p>{_training_note(c)}<ul>"
            + "".join(f"<li>{_e(r)}</li>" for r in v["reasons"]) + "</ul>"
            f"<p>Judged in {_e(c.feature_space)} features."
            + "".join(f" In {_e(space)} features: {_e(o['verdict'])} (severity {o['severity']:.2f})."
                      for space, o in c.by_space.items() if space != c.feature_space) + "</p>"
            f"<p><b>Copies of training images:</b> {100 * m['rate']:.1f}% of {m['samples']} samples "
            f"({m['flagged']}) are closer to one training image than training images are to each other "
            f"(ratio under {m['threshold']}).</p></section>")


def _stats_section(c: ReportContent) -> str:
    s, b = c.collapse["stats"], c.collapse["baseline"]
    rows = [("coverage", "share of real neighbourhoods reached by a sample", "coverage"),
            ("recall", "share of real images the samples can explain", "recall"),
            ("precision", "share of samples that look like some real image", "precision"),
            ("JS divergence (bits)", "difference between real and generated bin proportions", "js"),
            ("NDB / K", "share of bins with a significantly different proportion", "ndb_over_k"),
            ("empty bins", "share of real-data bins no sample falls in", "empty_bins"),
            ("near-duplicates", "share of samples with a near-identical twin", "duplicate_rate"),
            ("diversity", "mean distance between samples / between real images", "diversity_ratio")]
    if "msssim" in s:
        rows.append(("MS-SSIM of pairs", "structural similarity of random pairs (higher = more alike)", "msssim"))
    return ("<h2>Collapse statistics</h2><p>Each number beside the same number for unseen real images "
            f"at the same sample size ({_e(c.feature_space)} features).</p><table><tr><th>statistic"
            "</th><th>what it means</th><th>generated</th><th>real images</th></tr>"
            + "".join(f"<tr><td>{_e(n)}</td><td>{_e(d)}</td><td>{s[k]:.3f}</td><td>{b[k]:.3f}</td></tr>"
                      for n, d, k in rows) + "</table>")


def _weights_cell(m: dict) -> str:
    status = m.get("weights")
    if status is None:
        return "network-free"
    return status if status == "verified" else f"⚠ {status}"


def _metrics_section(c: ReportContent) -> str:
    """Each metric with its meaning and where its network file stands, then what was skipped and why."""
    metrics, helps = c.metrics, metric_help()
    out = ""
    if metrics:
        out += ("<h2>Metrics</h2><table><tr><th>metric</th><th>value</th><th>network file</th><th>what it means"
                "</th></tr>" + "".join(f"<tr><td>{_e(k)}</td><td>{_e(_metric_value(k, v))}</td>"
                                       f"<td>{_e(_weights_cell(v))}</td><td>{_e(helps.get(k, ''))}</td></tr>"
                                       for k, v in metrics.items()) + "</table>")
    if c.warnings:
        out += ("<div class='warn'><b>Warning:</b><ul>" + "".join(f"<li>{_e(w)}</li>" for w in c.warnings)
                + "</ul></div>")
    if c.skipped:
        out += ("<h2>Skipped</h2><p>Not computed, and why:</p><table><tr><th>metric</th><th>reason</th></tr>"
                + "".join(f"<tr class='skipped'><td>{_e(k)}</td><td>{_e(r)}</td></tr>" for k, r in c.skipped.items())
                + "</table>")
    return out


def _count_line(c: ReportContent) -> str:
    sc = c.sample_count
    if not sc:
        return ""
    how = "chosen automatically for this machine (--n auto)" if sc.get("auto") else "as given (--n)"
    est = f"; estimated {sc['estimate_s']:.0f} s" if sc.get("estimate_s") else ""
    return f"<p class='src'>{sc['n']:,} samples, {_e(how)}{_e(est)}.</p>"


def _images_section(a: dict) -> str:
    cols = grid_columns(len(a["grid"]))
    return (f"<h2>Samples</h2><div class='grid' style='grid-template-columns:repeat({cols},{THUMB}px)'>"
            + "".join(f"<img src='{u}' alt='sample'>" for u in a["grid"])
            + "</div><h2>Closest to the training images</h2><p>Each generated sample beside its nearest training "
            "image, closest first. Ratio = distance to that image / that image's distance to its own nearest "
            "neighbour; below the threshold it is marked as a copy.</p><div class='pairs'>"
            + "".join(f"<figure class='{'copy' if p['copy'] else ''}'><img src='{p['sample']}' alt='sample'>"
                      f"<img src='{p['train']}' alt='training image'><figcaption>ratio {p['ratio']:.2f}"
                      f"{' — copy' if p['copy'] else ''}</figcaption></figure>" for p in a["pairs"]) + "</div>"
            f"<h2>Where samples fall</h2><img class='plot' src='{a['bins_plot']}' alt='bin histogram'>")


def _over_time_section(c: ReportContent, a: dict) -> str:
    out = ""
    if "ckpt_plot" in a:
        out += ("<h2>Checkpoints</h2>" f"<img class='plot' src='{a['ckpt_plot']}' alt='checkpoints'><table><tr>"
                "<th>checkpoint</th><th>verdict</th><th>severity</th><th>coverage</th><th>precision</th>"
                "<th>copies</th></tr>"
                + "".join(f"<tr class='{'best' if r['best'] else ''}'><td>{_e(r['checkpoint'])}"
                          f"{' ★ best' if r['best'] else ''}</td><td>{_e(r['verdict'])}</td>"
                          f"<td>{r['severity']:.2f}</td><td>{r['coverage']:.2f}</td><td>{r['precision']:.2f}</td>"
                          f"<td>{100 * r['memorisation_rate']:.0f}%</td></tr>" for r in c.checkpoints)
                + "</table>")
    if "loss_plot" in a:
        out += f"<h2>Training losses</h2><img class='plot' src='{a['loss_plot']}' alt='loss curves'>"
    return out


def render_html(c: ReportContent) -> str:
    """The whole page: verdict first, then the statistics, metrics, pictures and the run over time."""
    a = assets(c)
    return "".join([
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>ganplug report</title><style>{CSS}"
        "</style></head><body>",
        f"<h1>ganplug evaluation</h1><p class='src'>{_e(c.fake)} against {_e(c.real)}</p>", _count_line(c),
        _verdict_section(c), _stats_section(c), _metrics_section(c), _images_section(a),
        _over_time_section(c, a), "</body></html>"])


def _metric_value(name: str, m: dict) -> str:
    if name in ("pr", "dc", "fd_dinov2", "cmmd") and m.get("feature_space"):  # which network's space
        return f"{_metric_value(name, {**m, 'feature_space': None})} ({m['feature_space']} features)"
    if name == "pr":
        return f"precision {m['precision']:.3f}, recall {m['recall']:.3f}"
    if name == "dc":
        return f"density {m['density']:.3f}, coverage {m['coverage']:.3f}"
    if name == "vendi":  # diversity per feature space, FAKE beside REAL
        return "; ".join(f"{space}: fake {v['fake']:.4g}" + (f", real {v['real']:.4g}" if v["real"] is not None
                                                            else "") for space, v in m["spaces"].items())
    return f"{m['value']:.4g}" if isinstance(m.get("value"), float | int) else str(m.get("value"))


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:24px auto;color:#222;
padding:0 16px}h1{margin-bottom:0}.src{color:#666;margin-top:4px}.verdict{border-left:8px solid;padding:8px 20px;
background:#fafafa;margin:16px 0}.sev{font-size:60%;color:#555;font-weight:normal}table{border-collapse:collapse;
margin:8px 0}td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}.grid{display:grid;gap:4px}
.grid img{width:96px;height:96px;image-rendering:auto}.warn{border-left:6px solid #b9770e;background:#fdf6e3;
padding:4px 16px;margin:8px 0}.early{background:#eef4fb;padding:6px 10px}tr.skipped td{color:#8a4b08}
.pairs{display:flex;flex-wrap:wrap;gap:12px}.pairs figure{margin:0;padding:4px;
border:2px solid #ddd}.pairs figure.copy{border-color:#c0392b}figcaption{font-size:80%;text-align:center}
.plot{max-width:100%}tr.best{background:#eaf6ea;font-weight:bold}
"""


def write_report(path: Path, content: ReportContent, *, force: bool = False) -> Path:
    """Render and write atomically; an existing file is kept unless `force`."""
    from ganplug.atomic import atomic_write_bytes

    path = Path(path)
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to overwrite it or choose another --report path.")
    atomic_write_bytes(path, render_html(content).encode())
    return path
