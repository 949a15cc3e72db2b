"""Training data from either a prepared dataset or a raw image folder (prepared once, then cached).

`ganplug train SRC_FOLDER` must not decode PNGs every step, nor every run: the folder is prepared
with prep's defaults into a cache folder named by a hash of the sources (path, size, mtime) and the
options. A second call with unchanged inputs only lists the folder and opens the cached array.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

from ganplug.data.dataset import ImageDataset, is_prepared_dataset, open_dataset
from ganplug.data.options import PrepOptions
from ganplug.data.prep import default_workers, plan_tasks, prepare_dataset, resolve_alpha, sources_hash
from ganplug.data.progress import prep_progress
from ganplug.data.sources import check_source_folder
from ganplug.errors import DataError

CACHE_ENV = "GANPLUG_CACHE"
CACHE_SEED = 0  # no augmentation or holdout on this path, so the seed changes nothing; fixed for the key


def default_cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ganplug" / "datasets"


def cache_folder(src: Path, opts: PrepOptions, cache_root: Path) -> Path:
    """Where the prepared copy of `src` with `opts` lives (lists the folder; decodes nothing)."""
    tasks, *_ = plan_tasks(src, opts, None, CACHE_SEED)
    recipe = json.dumps({"options": opts.recorded(), "sources": sources_hash(tasks, opts.hash)}, sort_keys=True)
    key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", src.resolve().name or "root")[:40]
    return cache_root / f"{name}-{opts.size}px-{key}"


def raw_folder_channels(path: Path, *, background: str = "white", keep_alpha: bool | None = None) -> int:
    """The channels a raw folder would be prepared with (prep's --alpha rule), without preparing it."""
    src = check_source_folder(path)
    opts = PrepOptions(background=background, keep_alpha=keep_alpha, seed=CACHE_SEED)
    tasks, *_ = plan_tasks(src, opts, None, CACHE_SEED)
    return resolve_alpha(tasks, opts, default_workers())[0].channels


def _warn_skipped(ds: ImageDataset, src: Path) -> None:
    skipped = ds.meta.get("skipped", [])
    if not skipped:
        return
    first = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:3])
    more = f" (+{len(skipped) - 3} more)" if len(skipped) > 3 else ""
    where = f" (full list in {ds.path / 'report.json'})" if ds.path else ""
    print(f"ganplug: skipped {len(skipped)} file(s) in {src}: {first}{more}{where}", file=sys.stderr)


def load_training_data(
    path: Path | str,
    *,
    size: int,
    background: str = "white",
    keep_alpha: bool | None = None,
    workers: int | None = None,
    cache_dir: Path | str | None = None,
    progress: bool = True,
) -> ImageDataset:
    """The training set at `path`: a prepared dataset (opened memory-mapped) or a raw image folder.

    A raw folder is prepared with prep's defaults (pad to square, auto sheet split, dedup; no holdout,
    no offline augmentation) into `cache_dir` (default $GANPLUG_CACHE or ~/.cache/ganplug/datasets).
    Skipped files are listed in `meta["skipped"]` and summarised on stderr.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist; give a folder of images or a dataset made by `ganplug prep`.")
    if is_prepared_dataset(path):
        ds = open_dataset(path)
        if ds.size != size:
            raise DataError(
                f"{path} was prepared at {ds.size} px but training asks for {size} px; re-run "
                f"`ganplug prep SRC {path} --size {size} --force`, or train with --size {ds.size}."
            )
        if keep_alpha and ds.channels != 4:
            raise DataError(f"{path} stores RGB (transparency was composited at prep), so --alpha cannot train "
                            f"on RGBA; prepare it again with `ganplug prep SRC {path} --alpha --force`.")
        if keep_alpha is False and ds.channels == 4:
            raise DataError(f"{path} stores RGBA; leave out --no-alpha to train on it, or prepare it again with "
                            f"`ganplug prep SRC {path} --no-alpha --force` to composite it.")
        return ds
    src = check_source_folder(path)
    opts = PrepOptions(size=size, background=background, keep_alpha=keep_alpha, seed=CACHE_SEED)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    target = cache_folder(src, opts, root)
    if not is_prepared_dataset(target):
        with prep_progress(f"preparing {src.name}", enabled=progress) as bar:
            prepare_dataset(src, target, opts, workers=workers, force=True, progress=bar)
    ds = open_dataset(target)
    _warn_skipped(ds, src)
    return ds
