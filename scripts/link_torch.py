"""Seed a new venv with the torch that another venv already installed, by hard links (core_smoke.sh).

Unpacking torch and its CUDA libraries takes 1-3 minutes of a CI run that has already unpacked the very
same wheels into .venv. Hard-linking torch's files and those of what it requires (nothing else) gives the
core venv an identical torch in seconds; pip then installs ganplug and its other core dependencies there
as usual, so the core smoke still sees exactly what a plain `pip install ganplug` brings.

    .venv/bin/python scripts/link_torch.py .venv-core/bin/python torch==2.14.1

Run with the source venv's python. Exits 1 (and links nothing) when that venv's torch is not the pinned
version or the two venvs' Pythons differ; the caller then installs torch with pip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement


def closure(name: str) -> list[metadata.Distribution]:
    """`name`'s distribution and everything it requires on this platform, transitively."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [name]
    while todo:
        key = todo.pop().lower().replace("_", "-")
        if key in seen:
            continue
        dist = metadata.distribution(key)
        seen[key] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def link_tree(dists: list[metadata.Distribution], target: Path) -> int:
    """Link (or copy, across file systems) every file the distributions installed under site-packages."""
    count = 0
    for dist in dists:
        for rel in dist.files or []:
            if rel.parts and rel.parts[0] == "..":  # console scripts in bin/: their shebangs name the other venv
                continue
            src, dst = Path(dist.locate_file(rel)), target / rel
            if not src.is_file():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            count += 1
    return count


def main() -> int:
    python, pin = sys.argv[1], Requirement(sys.argv[2])
    probe = "import json, sys, sysconfig; print(json.dumps([sys.version, sysconfig.get_paths()['purelib']]))"
    version, purelib = json.loads(subprocess.run([python, "-c", probe], check=True, capture_output=True,
                                                 text=True).stdout)
    if version != sys.version:
        print(f"link_torch: {python} is Python {version.split()[0]}, this one {sys.version.split()[0]}; "
              "not linking", file=sys.stderr)
        return 1
    try:
        have = metadata.version(pin.name)
    except metadata.PackageNotFoundError:
        have = None
    if have is None or not pin.specifier.contains(have, prereleases=True):
        print(f"link_torch: this venv has {pin.name} {have}, not {pin}; not linking", file=sys.stderr)
        return 1
    dists = closure(pin.name)
    n = link_tree(dists, Path(purelib))
    print(f"linked {n} files of {len(dists)} distributions ({pin.name} {have} and what it requires)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
