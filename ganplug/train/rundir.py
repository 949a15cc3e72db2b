"""A run folder: what makes a folder a ganplug run, and replacing one without touching anyone else's files.

`--force` may only replace a folder that really is a ganplug run (its config.json is one ganplug wrote,
or it holds a checkpoint ganplug can read), and even then it deletes only the files ganplug writes there
(config, log, checkpoints, grids, timelapse, TensorBoard events); anything else in the folder stays.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ganplug import checkpoint as ckpt
from ganplug.atomic import clean_stale_temps
from ganplug.errors import UserError

CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.jsonl"
TIMELAPSE_NAME = "timelapse.gif"
SAMPLES_DIR = "samples"
TENSORBOARD_DIR = "tensorboard"

# Files ganplug writes in a run folder, by sub-folder ("" = the run folder itself).
_OWN_FILES: dict[str, re.Pattern[str]] = {
    "": re.compile(rf"^({re.escape(CONFIG_NAME)}|{re.escape(METRICS_NAME)}|{re.escape(TIMELAPSE_NAME)})$"),
    ckpt.CKPT_DIR: re.compile(r"^(step-\d+\.safetensors|latest)$"),
    SAMPLES_DIR: re.compile(r"^step-\d+\.png$"),
    TENSORBOARD_DIR: re.compile(r"^events\.out\.tfevents\..+$"),
}


def _has_ganplug_config(folder: Path) -> bool:
    try:
        doc = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and isinstance(doc.get("train"), dict) and isinstance(doc.get("arch"), str)


def _has_ganplug_checkpoint(folder: Path) -> bool:
    for path in reversed(ckpt.list_checkpoints(folder)):
        try:
            ckpt.read_meta(path)
            return True
        except UserError:
            continue
    return False


def is_run_dir(path: Path) -> bool:
    """True when ganplug wrote this folder: a ganplug config.json or a readable ganplug checkpoint."""
    path = Path(path)
    return path.is_dir() and (_has_ganplug_config(path) or _has_ganplug_checkpoint(path))


def own_files(run_dir: Path) -> list[Path]:
    """The files in a run folder that ganplug wrote (what `--force` deletes)."""
    found = []
    for sub, pattern in _OWN_FILES.items():
        folder = run_dir / sub if sub else run_dir
        if folder.is_dir() and not folder.is_symlink():
            found += [p for p in sorted(folder.iterdir()) if p.is_file() and not p.is_symlink()
                      and pattern.match(p.name)]
    return found


def clear_run(run_dir: Path) -> list[Path]:
    """Delete ganplug's own files (and its sub-folders once empty); returns the other entries, kept."""
    for path in own_files(run_dir):
        path.unlink()
    clean_stale_temps(run_dir)
    for sub in _OWN_FILES:
        folder = run_dir / sub
        if sub and folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
    return sorted(run_dir.iterdir())


def prepare_run_dir(out: Path, *, resume: bool, force: bool) -> list[Path]:
    """Check (resume) or create/replace (new run) the run folder; returns entries `--force` kept."""
    if resume:
        if not is_run_dir(out):
            raise UserError(f"--resume {out}: no ganplug run there (no ganplug {CONFIG_NAME} or checkpoint).")
        clean_stale_temps(out)
        return []
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the run.")
    kept: list[Path] = []
    if out.is_dir() and any(out.iterdir()):
        if not is_run_dir(out):
            raise UserError(f"--out {out} is a non-empty folder that is not a ganplug run (--force only replaces "
                            "runs ganplug wrote); choose a new or empty folder.")
        if not force:
            raise UserError(
                f"--out {out} already holds a training run. Use --resume {out} to continue it, "
                "or --force to delete it and start again."
            )
        kept = clear_run(out)
    out.mkdir(parents=True, exist_ok=True)
    return kept
