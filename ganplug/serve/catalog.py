"""Which models the server offers, by name, and the cache that keeps the loaded ones.

A request names a model; the name is looked up in a table built by scanning the configured paths and
is never joined onto a path, so no request can reach a file outside those paths.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganplug.checkpoint import CKPT_DIR, read_meta, resolve_checkpoint
from ganplug.errors import CheckpointError
from ganplug.models import config_from_dict, get_family
from ganplug.models.registry import ModelSpec
from ganplug.serve.errors import ApiError

_NAME_OK = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path  # the checkpoint file (a run's latest at scan time)
    spec: ModelSpec
    step: int | None


def _is_run(folder: Path) -> bool:
    return (folder / CKPT_DIR).is_dir()


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _candidates(root: Path) -> list[tuple[str, Path]]:
    """(name, checkpoint-or-run path) pairs under one configured path."""
    root = Path(root)
    if root.is_file():
        name = root.parent.parent.name if root.parent.name == CKPT_DIR else root.stem
        return [(name, root)]
    if _is_run(root):
        return [(root.name, root)]
    found = []
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.name.startswith("."):
                continue
            if not _inside(child, root):  # a symlink leading out of the configured folder
                continue
            if child.is_dir() and _is_run(child):
                found.append((child.name, child))
            elif child.is_file() and child.suffix == ".safetensors":
                found.append((child.stem, child))
    return found


class ModelCatalog:
    """Names -> checkpoints; rescanned on demand so new runs and newer checkpoints appear."""

    def __init__(self, roots: tuple[Path, ...]):
        self.roots = tuple(Path(r) for r in roots)
        self._lock = threading.Lock()
        self._meta_cache: dict[tuple[str, int], tuple[ModelSpec, int | None]] = {}
        self._entries: dict[str, ModelEntry] = {}
        self.problems: list[str] = []

    def _describe(self, path: Path) -> tuple[ModelSpec, int | None]:
        key = (str(path), path.stat().st_mtime_ns)
        if key not in self._meta_cache:
            meta = read_meta(path)
            cfg = config_from_dict(meta["arch"], meta["model"])
            self._meta_cache[key] = (get_family(meta["arch"]).spec(cfg), meta.get("step"))
        return self._meta_cache[key]

    def scan(self) -> dict[str, ModelEntry]:
        entries: dict[str, ModelEntry] = {}
        problems = []
        for root in self.roots:
            for raw_name, target in _candidates(root):
                try:
                    ckpt = resolve_checkpoint(target)
                    spec, step = self._describe(ckpt)
                except (CheckpointError, OSError, KeyError, ValueError) as e:
                    problems.append(f"{target}: {e}")
                    continue
                name = _NAME_OK.sub("-", raw_name).strip("-.") or "model"
                base, n = name, 2
                while name in entries:
                    name, n = f"{base}-{n}", n + 1
                entries[name] = ModelEntry(name=name, path=ckpt, spec=spec, step=step)
        with self._lock:
            self._entries = entries
            self.problems = problems
        return entries

    def entries(self) -> dict[str, ModelEntry]:
        return self.scan()

    def resolve(self, name: str | None) -> ModelEntry:
        entries = self.scan()
        if not entries:
            raise ApiError(404, "no_models",
                           "the server has no models; start it with `ganplug serve --models RUN_FOLDER`.")
        if name is None:
            return next(iter(entries.values()))
        try:
            return entries[name]
        except KeyError:
            raise ApiError(404, "model_not_found",
                           f"no model named {name!r}; available: {', '.join(entries)}.") from None


def module_bytes(module: Any) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


class ModelCache:
    """Loaded generators, least recently used evicted beyond a memory budget (the newest always stays)."""

    def __init__(self, load: Callable[[ModelEntry], Any], budget_bytes: int):
        self._load = load
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[tuple[str, int], tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, int], threading.Lock] = {}
        self.loads = 0  # how many times a checkpoint was read (tests and /v1/health use it)

    @staticmethod
    def key(entry: ModelEntry) -> tuple[str, int]:
        return (str(entry.path), entry.path.stat().st_mtime_ns)

    def is_loaded(self, entry: ModelEntry) -> bool:
        try:
            key = self.key(entry)
        except OSError:
            return False
        with self._lock:
            return key in self._items

    def get(self, entry: ModelEntry) -> Any:
        key = self.key(entry)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            load_lock = self._loading.setdefault(key, threading.Lock())
        with load_lock:  # one load per checkpoint even when many requests arrive at once
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key][0]
            loaded = self._load(entry)
            size = module_bytes(loaded.G)
            with self._lock:
                self.loads += 1
                self._items[key] = (loaded, size)
                self._loading.pop(key, None)
                self._evict()
            return loaded

    def _evict(self) -> None:
        total = sum(size for _, size in self._items.values())
        while total > self.budget_bytes and len(self._items) > 1:
            _, (_, size) = self._items.popitem(last=False)
            total -= size

    def loaded_paths(self) -> list[str]:
        with self._lock:
            return [k[0] for k in self._items]
