"""Packaging of the Krita plugin and the Blender add-on that talk to `ganplug serve`.

The plugin sources live in the repository's `plugins/` folder; the one HTTP client
(`plugins/common/ganplug_client.py`) is copied into each package here, so both hosts run the same
client without either importing ganplug.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from ganplug import __version__
from ganplug.atomic import atomic_write_bytes
from ganplug.errors import UserError

PACKAGES = {"krita": "ganplug_krita", "blender": "ganplug_blender"}
CLIENT = Path("common") / "ganplug_client.py"
ZIP_TIME = (2024, 1, 1, 0, 0, 0)  # fixed: the same sources give a byte-identical zip


def plugins_root() -> Path:
    root = Path(__file__).resolve().parents[2] / "plugins"
    if not (root / CLIENT).is_file():
        raise UserError(f"the plugin sources are not at {root}; plugins are built from a ganplug source checkout "
                        "(git clone, then `pip install -e .`).")
    return root


def plugin_files(name: str) -> dict[str, bytes]:
    """Archive path -> contents of one plugin, with the shared client vendored into its package."""
    if name not in PACKAGES:
        raise UserError(f"unknown plugin {name!r}; choose {' or '.join(PACKAGES)}.")
    root = plugins_root()
    pkg = PACKAGES[name]
    src = root / name
    files: dict[str, bytes] = {}
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir() or "__pycache__" in rel.parts or path.suffix == ".pyc":
            continue
        files[rel.as_posix()] = path.read_bytes()
    files[f"{pkg}/ganplug_client.py"] = (root / CLIENT).read_bytes()
    return files


def build_zip(name: str) -> bytes:
    """The installable zip: Krita's "Import Python Plugin from File" and Blender's "Install add-on" take it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for arc, data in plugin_files(name).items():
            info = zipfile.ZipInfo(arc, date_time=ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def build_plugin(name: str, out: Path | None = None, force: bool = False) -> Path:
    out = Path(out) if out is not None else Path("dist") / f"ganplug-{name}-{__version__}.zip"
    if out.is_dir() or out.suffix.lower() != ".zip":  # a folder (existing or not)
        out = out / f"ganplug-{name}-{__version__}.zip"
    if out.exists() and not force:
        raise UserError(f"{out} already exists; pass --force to overwrite it or choose another --out.")
    atomic_write_bytes(out, build_zip(name))
    return out


def krita_resource_dir() -> Path:
    """Where Krita looks for Python plugins for this user (its `pykrita` folder)."""
    if sys.platform.startswith("win"):
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "krita" / "pykrita"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "krita" / "pykrita"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "krita" / "pykrita"


def install_krita(dest: Path | None = None, force: bool = False) -> list[Path]:
    """Copy the plugin into Krita's pykrita folder; returns what was written. An install is replaced only
    with `force`, and then in one step (new files beside, then swapped), so a failure leaves the old one."""
    dest = Path(dest) if dest is not None else krita_resource_dir()
    files = plugin_files("krita")
    pkg = PACKAGES["krita"]
    targets = sorted({dest / Path(arc).parts[0] for arc in files})
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise UserError(f"the ganplug Krita plugin is already installed ({existing[0]}); pass --force to replace it.")
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ganplug-install-", dir=dest))
    try:
        for arc, data in files.items():
            p = staging / arc
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        for t in targets:
            if t.is_dir():
                shutil.rmtree(t)
            elif t.exists():
                t.unlink()
            os.replace(staging / t.name, t)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [dest / f"{pkg}.desktop", dest / pkg]
