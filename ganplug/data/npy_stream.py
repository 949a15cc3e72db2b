"""Writing a .npy array one row at a time, without knowing the row count in advance.

Prep cannot know the final count before decoding (broken files, sheet splits, duplicates), and must
not hold the set in memory. So the writer reserves a fixed-size header, streams rows after it, and
writes the real header (with the final count) at the end. The result is a standard .npy file that
`np.load(..., mmap_mode="r")` maps, with data aligned to 64 bytes like numpy's own files.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

_MAGIC = b"\x93NUMPY\x01\x00"
_HEADER_TOTAL = 128  # bytes reserved for magic + length + header dict; a multiple of 64


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """A version 1.0 .npy header of exactly _HEADER_TOTAL bytes."""
    d = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    text = repr(d).encode("latin1")
    room = _HEADER_TOTAL - len(_MAGIC) - 2
    if len(text) + 1 > room:
        raise ValueError(f"shape {shape} too long for the reserved .npy header")
    text = text + b" " * (room - len(text) - 1) + b"\n"
    return _MAGIC + struct.pack("<H", len(text)) + text


class NpyRowWriter:
    """Append uint8 rows of a fixed shape to `path`; `close()` finalises the header and fsyncs."""

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype: np.dtype = np.dtype(np.uint8)):
        self.path = Path(path)
        self.row_shape = tuple(row_shape)
        self.dtype = np.dtype(dtype)
        self.count = 0
        self._f = open(self.path, "wb")  # owned by this object, closed in close()
        self._f.write(npy_header((0,) + self.row_shape, self.dtype))

    def append(self, row: np.ndarray) -> None:
        if row.shape != self.row_shape or row.dtype != self.dtype:
            raise ValueError(f"row {row.dtype}{row.shape} does not match {self.dtype}{self.row_shape}")
        self._f.write(np.ascontiguousarray(row).data)
        self.count += 1

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.flush()
        self._f.seek(0)
        self._f.write(npy_header((self.count,) + self.row_shape, self.dtype))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()

    def abort(self) -> None:
        """Close without finalising (the file is about to be deleted)."""
        try:
            self._f.close()
        except OSError:
            pass
