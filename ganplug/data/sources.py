"""Finding the image files under a folder, and fingerprinting the set for caching.

The walk follows symbolic links to folders but visits each real folder once, so a link pointing
back up the tree cannot loop forever; links that loop on themselves are reported, not fatal.
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ganplug.data.decode import IMAGE_EXTENSIONS
from ganplug.errors import DataError

HASH_METHODS = ("stat", "contents")


@dataclass(frozen=True)
class SourceFile:
    path: Path
    rel: str  # path relative to the walked folder, "/"-separated
    size: int
    mtime_ns: int


@dataclass
class Listing:
    files: list[SourceFile]
    problems: list[tuple[str, str]]  # (relative path, reason): unreadable, loops, unsupported types
    ignored: list[str] = field(default_factory=list)  # licences, notes, OS litter: not art, not failures


def _problem_for(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "symlink loop"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, FileNotFoundError):
        return "broken symbolic link"
    return f"cannot be read ({e.strerror or e})"


def check_source_folder(src: Path) -> Path:
    """The folder, or a DataError saying why it cannot be used."""
    src = Path(src).expanduser()
    if not src.exists():
        if src.is_symlink():
            raise DataError(f"{src} is a broken symbolic link; point it at your image folder.")
        raise DataError(f"{src} does not exist; give the folder that holds your images.")
    if not src.is_dir():
        raise DataError(f"{src} is a file, not a folder; give the folder that holds your images.")
    try:
        with os.scandir(src):
            pass
    except PermissionError as e:
        raise DataError(f"{src} cannot be read (permission denied); make it readable (chmod a+rx).") from e
    return src


def list_images(root: Path, *, exclude: tuple[Path, ...] = ()) -> Listing:
    """Every image file under `root` (recursively, sorted by relative path).

    Hidden entries (".name") are ignored; other files with unknown extensions are listed as problems
    so the report says why they were not used. `exclude`: folders to leave out (the output folder).
    """
    from ganplug.data.dataset import is_prepared_dataset  # here, not at the top: that module imports torch

    root = Path(root)
    excluded = set()
    for p in exclude:
        try:
            st = os.stat(p)
            excluded.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    files: list[SourceFile] = []
    problems: list[tuple[str, str]] = []
    ignored: list[str] = []
    st = os.stat(root)
    seen = {(st.st_dev, st.st_ino)}
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            problems.append((prefix.rstrip("/") or ".", _problem_for(e)))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = prefix + entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                st = entry.stat(follow_symlinks=True)
            except OSError as e:
                problems.append((rel, _problem_for(e)))
                continue
            if is_dir:
                key = (st.st_dev, st.st_ino)
                if key in excluded:
                    continue
                if key in seen:
                    if entry.is_symlink():
                        problems.append((rel, "symlink loop (links to a folder already read)"))
                    continue
                if is_prepared_dataset(Path(entry.path)):  # its preview.png is not source art
                    problems.append((rel, "a prepared ganplug dataset, not read as source images"))
                    continue
                seen.add(key)
                stack.append((Path(entry.path), rel + "/"))
            elif Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                files.append(SourceFile(Path(entry.path), rel, st.st_size, st.st_mtime_ns))
            elif _is_companion_file(entry.name):
                ignored.append(rel)  # licences, notes and OS litter sit beside art; they are not failed images
            else:
                ext = Path(entry.name).suffix.lower() or "(no extension)"
                problems.append((rel, f"not an image file type ({ext}); export it as PNG or JPEG"))
    files.sort(key=lambda f: f.rel)
    problems.sort()
    return Listing(files, problems, sorted(ignored))


COMPANION_NAMES = {"notice", "license", "licence", "copying", "readme", "authors", ".ds_store", "thumbs.db",
                   "desktop.ini"}
COMPANION_EXTENSIONS = {".txt", ".md", ".json", ".csv", ".yaml", ".yml", ".toml", ".html", ".pdf"}


def _is_companion_file(name: str) -> bool:
    stem, ext = Path(name).stem.lower(), Path(name).suffix.lower()
    return name.lower() in COMPANION_NAMES or stem in COMPANION_NAMES or ext in COMPANION_EXTENSIONS


def hash_sources(files: list[SourceFile], method: str = "stat") -> str:
    """SHA-256 over the set: relative path + (size, mtime_ns) for "stat", + file bytes for "contents"."""
    if method not in HASH_METHODS:
        raise ValueError(f"hash method must be one of {HASH_METHODS}")
    h = hashlib.sha256()
    for f in files:
        h.update(f.rel.encode("utf-8", "surrogateescape") + b"\0")
        if method == "stat":
            h.update(f"{f.size}:{f.mtime_ns}\n".encode())
        else:
            fh = hashlib.sha256()
            try:
                with open(f.path, "rb") as fp:
                    for chunk in iter(lambda: fp.read(1 << 20), b""):  # noqa: B023 - consumed right here
                        fh.update(chunk)
            except OSError as e:
                fh.update(f"unreadable:{e.errno}".encode())
            h.update(fh.digest() + b"\n")
    return h.hexdigest()
