"""Atomic file writes: a path holds either its old content or the complete new one, never half.

Write to a temporary file in the same folder, fsync, rename over the target, fsync the folder. A
failure (disk full, kill) leaves the old file untouched and at most a stray `.tmp` file, removed where
possible. Every writer of user-visible files (checkpoints, datasets' JSON, caches, images) goes here.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ganplug.errors import UserError

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


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


def atomic_write(path: Path | str, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(f)` on a temporary binary file, then move it onto `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.errno in _FULL:
            raise UserError(
                f"could not write {path}: {os.strerror(e.errno)}. The previous version of the file, if any, is "
                "intact; free some disk space and run the command again (training: --resume)."
            ) from e
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
