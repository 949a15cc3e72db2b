"""Which models the server offers, by name, and the cache that keeps the loaded ones.

A request names a model; the name is looked up in a table built by scanning the configured paths and
is never joined onto a path, so no request can reach a file outside those paths. A file that cannot be
served (damaged, foreign, absurdly large) is listed as unusable with its reason; it never takes the other
models, or the server, down with it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganplug.checkpoint import CKPT_DIR, model_config_of, read_meta, resolve_checkpoint
from ganplug.errors import UserError
from ganplug.models import get_family
from ganplug.models.registry import ModelSpec
from ganplug.serve.errors import ApiError

log = logging.getLogger("ganplug.serve")

_NAME_OK = re.compile(r"[^A-Za-z0-9._+-]+")
IMAGE_CHANNELS = (1, 3, 4)


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


@dataclass(frozen=True)
class Unusable:
    """A candidate that cannot be served, and why (one sentence, paths shown relative to its --models root)."""

    name: str
    reason: str


def describe_checkpoint(path: Path) -> tuple[ModelSpec, int | None]:
    """What a checkpoint serves, read from its metadata only: no weights are read or allocated."""
    meta = read_meta(path)
    cfg = model_config_of(meta, path)  # validates the options and refuses sizes too large to allocate
    spec = get_family(meta["arch"]).spec(cfg)
    if spec.channels not in IMAGE_CHANNELS:
        raise UserError(f"{path} is a {spec.arch} model of {spec.channels}-channel samples, not images; "
                        "there is nothing to serve.")
    return spec, meta.get("step")


def _shown(reason: str, root: Path) -> str:
    """The reason with the --models root's own location cut off: clients see names, not this machine's paths."""
    base = root if root.is_dir() else root.parent
    return reason.replace(str(base) + os.sep, "")


class ModelCatalog:
    """Names -> checkpoints; rescanned on demand so new runs and newer checkpoints appear."""

    def __init__(self, roots: tuple[Path, ...]):
        self.roots = tuple(Path(r) for r in roots)
        self._lock = threading.Lock()
        # (path, mtime) -> what it serves, or why it cannot: a bad file is judged once, not on every request
        self._meta_cache: dict[tuple[str, int], tuple[ModelSpec, int | None] | str] = {}
        self._entries: dict[str, ModelEntry] = {}
        self._unusable: dict[str, Unusable] = {}
        self.problems: list[str] = []

    def _describe(self, path: Path) -> tuple[ModelSpec, int | None] | str:
        key = (str(path), path.stat().st_mtime_ns)
        if key not in self._meta_cache:
            self._meta_cache[key] = _judge(path)
        return self._meta_cache[key]

    def _outcome(self, target: Path) -> tuple[Path | None, tuple[ModelSpec, int | None] | str]:
        """One candidate's checkpoint (None if there is none) and what it serves, or the reason it cannot."""
        try:
            ckpt = resolve_checkpoint(target)
        except (UserError, OSError) as e:
            return None, str(e)
        try:
            return ckpt, self._describe(ckpt)
        except OSError as e:  # vanished or unreadable between listing and reading
            return ckpt, f"{ckpt}: {e}"

    def scan(self) -> dict[str, ModelEntry]:
        entries: dict[str, ModelEntry] = {}
        unusable: dict[str, Unusable] = {}
        problems = []
        for root in self.roots:
            for raw_name, target in _candidates(root):
                ckpt, outcome = self._outcome(target)
                name = _unique(_NAME_OK.sub("-", raw_name).strip("-.") or "model", entries, unusable)
                if isinstance(outcome, str):
                    problems.append(outcome if outcome.startswith(str(target)) else f"{target}: {outcome}")
                    unusable[name] = Unusable(name=name, reason=_shown(outcome, root))
                    continue
                spec, step = outcome
                entries[name] = ModelEntry(name=name, path=ckpt, spec=spec, step=step)
        with self._lock:
            self._entries = entries
            self._unusable = unusable
            self.problems = problems
        return entries

    def entries(self) -> dict[str, ModelEntry]:
        return self.scan()

    def refuse(self, entry: ModelEntry, reason: str) -> str:
        """Mark a checkpoint that described well but failed to load (truncated weights, wrong shapes) unusable
        until the file changes; returns the reason as clients see it."""
        try:
            self._meta_cache[(str(entry.path), entry.path.stat().st_mtime_ns)] = reason
        except OSError:
            return reason
        root = next((r for r in self.roots if _inside(entry.path, r if r.is_dir() else r.parent)), None)
        return _shown(reason, root) if root is not None else reason

    def unusable(self) -> dict[str, Unusable]:
        """The candidates of the latest scan that cannot be served, by name."""
        with self._lock:
            return dict(self._unusable)

    def resolve(self, name: str | None) -> ModelEntry:
        entries = self.scan()
        bad = self.unusable()
        if name is not None and name in bad:
            raise ApiError(422, "model_unusable", f"model {name!r} cannot be used: {bad[name].reason}")
        if not entries:
            extra = f" ({len(bad)} unusable: see GET /v1/models)" if bad else ""
            raise ApiError(404, "no_models", f"the server has no usable models{extra}; start it with "
                                             "`ganplug serve --models RUN_FOLDER`.")
        if name is None:
            return next(iter(entries.values()))
        try:
            return entries[name]
        except KeyError:
            raise ApiError(404, "model_not_found",
                           f"no model named {name!r}; available: {', '.join(entries)}.") from None


def _judge(path: Path) -> tuple[ModelSpec, int | None] | str:
    """A checkpoint's description, or the sentence saying why it cannot be served."""
    try:
        return describe_checkpoint(path)
    except UserError as e:
        return str(e)
    except Exception as e:  # a bug in reading one file must still not take the other models down
        log.exception("cannot describe %s", path)
        return f"{path}: unexpected error reading it ({type(e).__name__}: {e}); the server log has the details."


def _unique(name: str, *taken: dict) -> str:
    base, n = name, 2
    while any(name in t for t in taken):
        name, n = f"{base}-{n}", n + 1
    return name


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
