"""`ganplug prep`: an asset folder -> a prepared dataset folder (the pipeline).

Per source file, in parallel (threads: Pillow and numpy release the GIL for decoding and resizing):
decode -> background -> sheet split -> fit to square -> offline augmentation copies. In the main
thread, in source order: de-duplication, then rows are streamed into `images.npy`, so memory holds a
few images per worker, never the set. Everything is written to a temporary sibling folder that is
renamed onto OUT only when complete: an interrupted or failed run (disk full) leaves OUT as it was.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from ganplug import __version__
from ganplug.atomic import fsync_dir
from ganplug.data.augment_offline import augment_copy, copy_rng
from ganplug.data.dataset import ARRAY_NAME, FORMAT, META_NAME, PAIRS_NAME, is_prepared_dataset
from ganplug.data.decode import ImageReadError, apply_background, open_image
from ganplug.data.dedup import DuplicateIndex, Fingerprint, fingerprint
from ganplug.data.geometry import fit_square
from ganplug.data.npy_stream import NpyRowWriter
from ganplug.data.options import PrepOptions, differing_options
from ganplug.data.pairs import edge_sketch, match_pairs, resolve_pair_dirs
from ganplug.data.preview import write_preview
from ganplug.data.sheets import SplitSpec, pair_shaped, split_boxes
from ganplug.data.sources import SourceFile, check_source_folder, hash_sources, list_images
from ganplug.errors import DataError

REPORT_NAME = "report.json"
PREVIEW_NAME = "preview.png"
HOLDOUT_DIR = "holdout"
DATASET_VERSION = 1

Progress = Callable[[int, int], None]  # (sources done, sources total)
T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# ---------------------------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class SourceTask:
    index: int
    b: SourceFile  # the image (B side of a pair)
    a: SourceFile | None  # the A side when pairing two folders
    holdout: bool


@dataclass
class Part:
    """One design cut from a source file, with its stored rows (copy 0 is the unaugmented image)."""

    part: int
    fp: Fingerprint | None
    rows: list[tuple[np.ndarray, np.ndarray | None, int]]  # (image, paired A side or None, copy)
    blank: bool = False


@dataclass
class SourceOutcome:
    task: SourceTask
    parts: list[Part]
    error: str | None = None


def _is_blank(arr: np.ndarray) -> bool:
    """One flat colour (an empty cell of a sprite sheet)."""
    return int(np.ptp(arr.reshape(-1, arr.shape[2]), axis=0).max()) <= 2


def process_source(task: SourceTask, opts: PrepOptions, seed: int) -> SourceOutcome:
    """Everything done to one source file; pure apart from reading it."""
    bg = opts.background_rgb
    pair = opts.pair_spec
    spec = SplitSpec("none") if pair is not None else opts.split_spec
    aug = opts.augment
    augment = aug.active and not task.holdout
    need = max(opts.size, opts.jitter or 0) * spec.max_parts_per_side
    try:
        im = apply_background(
            open_image(task.b.path, max_pixels=opts.max_pixels, draft_need=need), bg, opts.keep_alpha
        )
        a_im = None
        if task.a is not None:
            a_im = apply_background(open_image(task.a.path, max_pixels=opts.max_pixels, draft_need=need), bg, False)
    except ImageReadError as e:
        return SourceOutcome(task, [], e.reason)
    except Exception as e:  # a decoder crash on one odd file must not end the whole prep
        return SourceOutcome(task, [], f"cannot be decoded ({type(e).__name__}: {e})")

    def fit(img: Image.Image, size: int) -> np.ndarray:
        return np.asarray(fit_square(img, size, fit=opts.fit, resample=opts.resample, fill=bg))

    whole = spec.mode == "none" or (spec.mode == "auto" and not pair_shaped(*im.size))
    boxes = [(0, 0) + im.size] if whole else split_boxes(np.asarray(im), spec)
    parts = []
    for p, box in enumerate(boxes):
        piece = im if len(boxes) == 1 else im.crop(box)
        small = fit(piece, opts.size)
        a_small = fit(a_im, opts.size) if a_im is not None else (edge_sketch(small) if pair is not None else None)
        blank = spec.mode == "grid" and _is_blank(small)
        rows: list[tuple[np.ndarray, np.ndarray | None, int]] = [(small, a_small, 0)]
        if augment and not blank:
            big = fit(piece, aug.jitter) if aug.jitter else None
            others = ((a_small, fit(a_im, aug.jitter) if aug.jitter else None),) if a_im is not None else ()
            for k in range(1, aug.copies + 1):
                outs = augment_copy(small, big, aug, copy_rng(seed, task.index, p, k), k, others)
                a_k = outs[1] if others else (edge_sketch(outs[0]) if pair is not None else None)
                rows.append((outs[0], a_k, k))
        parts.append(Part(p, fingerprint(small) if opts.dedup else None, rows, blank))
    return SourceOutcome(task, parts)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int, window: int | None = None) -> Iterator[R]:
    """map() over a thread pool, results in input order, at most `window` in flight (bounded memory)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    window = window or workers * 4
    it = iter(items)
    with ThreadPoolExecutor(workers, thread_name_prefix="ganplug-prep") as pool:
        pending = deque(pool.submit(fn, x) for x in islice(it, window))
        try:
            while pending:
                result = pending.popleft().result()
                for x in it:
                    pending.append(pool.submit(fn, x))
                    break
                yield result
        finally:
            for f in pending:
                f.cancel()


# --------------------------------------------------------------------------------------------- result


@dataclass
class PrepResult:
    path: Path
    noop: bool
    meta: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        return self.meta["counts"]


# ------------------------------------------------------------------------------------------- planning

ALPHA_SAMPLE = 96  # files checked for transparency when --alpha is left to prep (evenly spaced)


def has_transparency(path: Path, max_pixels: int) -> bool | None:
    """Whether a file has at least one pixel that is not fully opaque; None when it cannot be read
    (the main pass reports why). An RGBA file whose alpha is 255 everywhere is opaque art."""
    try:
        im = open_image(path, max_pixels=max_pixels)
    except ImageReadError:
        return None
    return im.mode == "RGBA" and im.getextrema()[3][0] < 255


def resolve_alpha(tasks: list[SourceTask], opts: PrepOptions, workers: int) -> tuple[PrepOptions, dict[str, Any]]:
    """Decide `keep_alpha` when it was left to prep (None): keep RGBA when most of the source images
    have real transparency (cut-outs, sprites), checked on up to ALPHA_SAMPLE files. Pairs keep the old
    default (composited) unless asked: their A side is always composited. Returns the resolved options
    and what was decided, for dataset.json, report.json and the summary."""
    if opts.keep_alpha is not None:
        return opts, {"requested": "on" if opts.keep_alpha else "off", "kept": opts.keep_alpha}
    if opts.pair_spec is not None:
        return replace(opts, keep_alpha=False), {"requested": "auto", "kept": False, "reason": "pairs"}
    step = max(1, len(tasks) / ALPHA_SAMPLE)
    picked = [tasks[int(i * step)].b.path for i in range(min(len(tasks), ALPHA_SAMPLE))]
    found = [r for r in ordered_map(lambda p: has_transparency(p, opts.max_pixels), picked, workers) if r is not None]
    transparent = sum(found)
    keep = transparent * 2 > len(found)
    return replace(opts, keep_alpha=keep), {
        "requested": "auto", "kept": keep, "transparent": transparent, "checked": len(found)}


def _out_state(out: Path) -> str:
    if not out.exists() and not out.is_symlink():
        return "absent"
    if is_prepared_dataset(out):
        return "dataset"
    if out.is_dir() and not any(out.iterdir()):
        return "empty"
    return "other"


def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def plan_tasks(
    src: Path, opts: PrepOptions, out: Path | None, seed: int
) -> tuple[list[SourceTask], list[tuple[str, str]], dict[str, list[str]], list[str]]:
    """The source files to process (with holdout flags), listing problems, unpaired names, and the files
    ignored as not art (licences, notes beside the images)."""
    exclude = (out,) if out is not None else ()
    pair = opts.pair_spec
    unpaired: dict[str, list[str]] = {}
    if pair is not None and pair.mode == "dirs":
        a_dir, b_dir = resolve_pair_dirs(src, pair)
        la, lb = list_images(a_dir, exclude=exclude), list_images(b_dir, exclude=exclude)
        pairs, lone_a, lone_b = match_pairs([f.rel for f in la.files], [f.rel for f in lb.files])
        a_by, b_by = {f.rel: f for f in la.files}, {f.rel: f for f in lb.files}

        def relabel(f: SourceFile, prefix: str) -> SourceFile:
            return SourceFile(f.path, f"{prefix}/{f.rel}", f.size, f.mtime_ns)

        items = [(relabel(b_by[b], pair.b_dir), relabel(a_by[a], pair.a_dir)) for a, b in pairs]
        problems = [(f"{pair.a_dir}/{r}", why) for r, why in la.problems]
        problems += [(f"{pair.b_dir}/{r}", why) for r, why in lb.problems]
        unpaired = {"a": [f"{pair.a_dir}/{r}" for r in lone_a], "b": [f"{pair.b_dir}/{r}" for r in lone_b]}
        ignored = [f"{pair.a_dir}/{r}" for r in la.ignored] + [f"{pair.b_dir}/{r}" for r in lb.ignored]
    else:
        listing = list_images(src, exclude=exclude)
        items = [(f, None) for f in listing.files]
        problems, ignored = listing.problems, listing.ignored
    n = len(items)
    n_hold = 0
    if opts.holdout > 0 and n >= 2:
        n_hold = min(n - 1, max(1, round(opts.holdout * n)))
    held = set(np.random.default_rng([seed, 7]).permutation(n)[:n_hold].tolist()) if n_hold else set()
    tasks = [SourceTask(i, b, a, i in held) for i, (b, a) in enumerate(items)]
    return tasks, problems, unpaired, ignored


def sources_hash(tasks: list[SourceTask], method: str) -> str:
    files = [t.b for t in tasks] + [t.a for t in tasks if t.a is not None]
    return hash_sources(sorted(files, key=lambda f: f.rel), method)


# -------------------------------------------------------------------------------------------- writing


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


class _SplitWriter:
    """images.npy (+ pairs_a.npy) of one split, created on the first row."""

    def __init__(self, folder: Path, row_shape: tuple[int, ...], paired: bool):
        self.folder, self.row_shape, self.paired = folder, row_shape, paired
        self.images: NpyRowWriter | None = None
        self.a: NpyRowWriter | None = None
        self.rows: list[list[int]] = []

    def append(self, b: np.ndarray, a: np.ndarray | None, where: list[int]) -> None:
        if self.images is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.images = NpyRowWriter(self.folder / ARRAY_NAME, self.row_shape)
            if self.paired:
                self.a = NpyRowWriter(self.folder / PAIRS_NAME, self.row_shape[:2] + (3,))
        self.images.append(b)
        if self.a is not None:
            self.a.append(a)
        self.rows.append(where)

    def close(self) -> None:
        for w in (self.images, self.a):
            if w is not None:
                w.close()

    def abort(self) -> None:
        for w in (self.images, self.a):
            if w is not None:
                w.abort()


def _build(
    tmp: Path,
    tasks: list[SourceTask],
    problems: list[tuple[str, str]],
    unpaired: dict[str, list[str]],
    ignored: list[str],
    opts: PrepOptions,
    seed: int,
    workers: int,
    progress: Progress | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Process every task into `tmp`; returns (dataset.json, report.json) contents."""
    t0 = time.perf_counter()
    row_shape = (opts.size, opts.size, opts.channels)
    paired = opts.pair_spec is not None
    train = _SplitWriter(tmp, row_shape, paired)
    hold = _SplitWriter(tmp / HOLDOUT_DIR, row_shape, paired)
    index = DuplicateIndex(opts.dedup_threshold) if opts.dedup else None
    skipped = [{"file": rel, "reason": why} for rel, why in problems]
    duplicates: list[dict[str, Any]] = []
    sheets: list[dict[str, Any]] = []
    blanks: list[dict[str, Any]] = []
    read = augmented = 0
    total = len(tasks)
    if progress:
        progress(0, total)
    try:
        outcomes = ordered_map(lambda t: process_source(t, opts, seed), tasks, workers)
        for done, out in enumerate(outcomes, 1):
            rel = out.task.b.rel
            if out.error is not None:
                skipped.append({"file": rel, "reason": out.error})
            else:
                read += 1
                if len(out.parts) > 1:
                    sheets.append({"file": rel, "parts": len(out.parts)})
                writer = hold if out.task.holdout else train
                for part in out.parts:
                    label = rel if len(out.parts) == 1 else f"{rel}#{part.part + 1}"
                    if part.blank:
                        blanks.append({"file": rel, "part": part.part + 1})
                        continue
                    if index is not None and part.fp is not None:
                        m = index.match(part.fp)
                        if m is not None:
                            duplicates.append({"file": label, "duplicate_of": m[0], "distance": m[1]})
                            continue
                        index.add(part.fp, label)
                    for b, a, copy in part.rows:
                        writer.append(b, a, [out.task.index, part.part, copy])
                        augmented += copy > 0
            if progress:
                progress(done, total)
    except BaseException:
        train.abort()
        hold.abort()
        raise
    train.close()
    hold.close()
    if not train.rows:
        reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:5]) or "every image was a duplicate"
        more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
        raise DataError(
            f"no usable image: {total} image file(s) found, {len(skipped)} skipped: {reasons}{more}. "
            "Fix or replace the files listed, or point at another folder."
        )
    seconds = time.perf_counter() - t0
    counts = {
        "files": total,
        "read": read,
        "skipped": len(skipped),
        "sheets_split": len(sheets),
        "parts_from_sheets": sum(s["parts"] for s in sheets) - len(sheets),
        "blank_cells": len(blanks),
        "duplicates": len(duplicates),
        "augmented": augmented,
        "holdout": len(hold.rows),
        "train": len(train.rows),
    }
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": DATASET_VERSION,
        "ganplug_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "size": opts.size,
        "channels": opts.channels,
        "count": len(train.rows),
        "options": opts.recorded() | {"seed": seed},
        "seed_given": opts.seed is not None,
        "counts": counts,
        "files": [t.b.rel for t in tasks],
        "rows_columns": ["file", "part", "copy"],
        "rows": train.rows,
        "skipped": skipped,
    }
    if hold.rows:
        meta["holdout"] = {"count": len(hold.rows), "rows": hold.rows}
    if paired:
        meta["pairs"] = {"mode": opts.pair_spec.mode, "array": PAIRS_NAME, "a_files": [t.a.rel for t in tasks if t.a]}
    report = {
        "counts": counts,
        "seconds": round(seconds, 3),
        "images_per_second": round(read / seconds, 1) if seconds > 0 else None,
        "skipped": skipped,
        "ignored": [{"file": rel, "reason": "not art (a licence, notes or system file beside the images)"}
                    for rel in ignored],
        "duplicates": duplicates,
        "split_sheets": sheets,
        "blank_cells": blanks,
        "unpaired": unpaired,
        "workers": workers,
    }
    write_preview(np.load(tmp / ARRAY_NAME, mmap_mode="r"), tmp / PREVIEW_NAME)
    return meta, report


def _install(tmp: Path, out: Path) -> None:
    """Rename the finished folder onto OUT; an old OUT is moved aside first and removed after."""
    old = None
    if out.exists() or out.is_symlink():
        old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        if old is not None:
            os.rename(old, out)
        raise
    fsync_dir(out.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def prepare_dataset(
    src: Path | str,
    out: Path | str,
    options: PrepOptions | None = None,
    *,
    workers: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> PrepResult:
    """Prepare SRC (a folder of images) into OUT (a dataset folder); see docs/data.md.

    Re-running with the same sources and options is a no-op (`result.noop`). OUT is refused when it
    holds something else, or a dataset prepared with other options or from changed sources, unless
    `force`. Raises DataError/UserError on bad input; never leaves a partial dataset at OUT.
    """
    opts = options or PrepOptions()
    src = check_source_folder(Path(src))
    out = Path(out).expanduser()
    workers = default_workers() if workers is None else max(1, int(workers))
    if _is_within(src, out):
        raise DataError(f"OUT {out} contains SRC {src}; preparing there would replace your images. Choose another OUT.")
    state = _out_state(out)
    if state == "other" and not force:
        what = "a file" if out.is_file() else "a folder that is not a ganplug dataset"
        raise DataError(f"{out} already exists and is {what}; choose another OUT, or pass --force to replace it.")

    seed = opts.seed if opts.seed is not None else secrets.randbelow(2**31)
    if state == "dataset":
        old = json.loads((out / META_NAME).read_text())
        seed = opts.seed if opts.seed is not None else int(old.get("options", {}).get("seed", seed))
    tasks, problems, unpaired, ignored = plan_tasks(src, opts, out, seed)
    if not tasks:
        extra = f" ({len(problems)} other file(s), e.g. {problems[0][0]}: {problems[0][1]})" if problems else ""
        raise DataError(
            f"{src} holds no image files{extra}; ganplug reads png, jpg, webp, bmp, tiff and gif (recursively)."
        )
    opts, alpha = resolve_alpha(tasks, opts, workers)
    src_hash = sources_hash(tasks, opts.hash)
    recorded = opts.recorded() | {"seed": seed}

    if state == "dataset":
        old_opts = old.get("options", {})
        diff = differing_options(old_opts, recorded)
        same_src = old.get("source", {}).get("hash") == src_hash
        if not diff and same_src:
            return PrepResult(out, True, old, _read_report(out))
        if not force:
            if diff:
                raise DataError(
                    f"{out} is a dataset prepared with other options:\n  "
                    + "\n  ".join(diff)
                    + "\nRe-run with the same options, choose another OUT, or pass --force to rebuild it."
                )
            raise DataError(
                f"{src} has changed since {out} was prepared (files added, removed or modified); "
                "pass --force to rebuild it, or choose another OUT."
            )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.prep-{os.getpid()}-{secrets.token_hex(4)}"
    t0 = time.perf_counter()
    try:
        tmp.mkdir()
        meta, report = _build(tmp, tasks, problems, unpaired, ignored, opts, seed, workers, progress)
        meta["alpha"] = report["alpha"] = alpha
        meta["source"] = {"path": str(src.resolve()), "hash": src_hash, "hash_method": opts.hash}
        _write_json(tmp / META_NAME, meta)
        _write_json(tmp / REPORT_NAME, report)
        fsync_dir(tmp)
        _install(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in _DISK_FULL:
            raise DataError(
                f"ran out of disk space while writing the dataset next to {out} ({e.strerror}); "
                f"nothing was written to {out}. Free some space or choose an OUT on another disk."
            ) from e
        raise DataError(f"writing the dataset for {out} failed ({e}); {out} was left as it was.") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PrepResult(out, False, meta, report, time.perf_counter() - t0)


def _read_report(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / REPORT_NAME).read_text())
    except (OSError, ValueError):
        return {}
