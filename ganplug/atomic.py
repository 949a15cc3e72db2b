"""Atomic file writes: a path holds either its old content or the complete new one, never half.

Write to a temporary file in the same folder, fsync, rename over the target, fsync the folder. A
failure (disk full, kill) leaves the old file untouched and at most a stray `.tmp` file, removed where
possible; one left by a killed process carries its pid and is removed by `clean_stale_temps` on the next
start. New files get the mode any program's would (0666 less the umask), not mkstemp's 0600. Every
writer of user-visible files (checkpoints, datasets' JSON, caches, images) goes here.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ganplug.errors import UserError

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_TEMP_RE = re.compile(r"^\..+\.pid(\d+)\.[^.]+\.tmp$")  # .NAME.pidPID.RANDOM.tmp, as written below


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux); else the set-and-restore
    dance, which is only racy against threads creating files at that instant."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temps(folder: Path | str, recursive: bool = True) -> list[Path]:
    """Delete temp files that `atomic_write` left behind in a process that no longer runs.

    Only names of our own pattern are touched (`.NAME.pidPID.RANDOM.tmp`), and only when that process is
    gone, so a concurrent writer's file is never removed. Returns what was deleted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp"):
        m = _TEMP_RE.match(path.name)
        if m and path.is_file() and not _pid_alive(int(m.group(1))):
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
    return removed


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def disk_full(path: Path | str, e: OSError) -> UserError | OSError:
    """The user-facing error for a write that failed for lack of space (others are returned unchanged)."""
    if e.errno not in _FULL:
        return e
    return UserError(
        f"could not write {path}: {os.strerror(e.errno)}. The previous version of the file, if any, is "
        "intact; free some disk space and run the command again (training: --resume)."
    )


def unwritable(path: Path | str, e: OSError) -> str | None:
    """Why `path` cannot be written, and what to do, for an OSError the user can fix (None otherwise):
    no permission or a read-only disk, a folder where the file should go, a file where a folder should."""
    path = Path(path)
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{os.strerror(e.errno)}. Choose an output path in a folder you can write to, or change its permissions."
    if e.errno == errno.EISDIR:
        return "that is a folder. Give the name of a file to write (in it or elsewhere)."
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return f"{blocker} is a file, not a folder. Choose another output path."
    return None


def atomic_write(path: Path | str, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(f)` on a temporary binary file, then move it onto `path` atomically."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.pid{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError) and e.errno in _FULL:
            raise disk_full(path, e) from e
        if isinstance(e, OSError) and (problem := unwritable(path, e)) is not None:
            raise UserError(f"could not write {path}: {problem}") from e
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: Path | str, data: bytes | memoryview) -> Path:
    """Atomically write `data` (in 8 MiB chunks, so a full disk is noticed early)."""
    view = memoryview(data)

    def write(f: BinaryIO) -> None:
        for start in range(0, len(view), 8 << 20):
            f.write(view[start : start + (8 << 20)])

    return atomic_write(path, write)


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Atomically write UTF-8 text (config.json and other small documents)."""
    return atomic_write_bytes(path, text.encode("utf-8"))
