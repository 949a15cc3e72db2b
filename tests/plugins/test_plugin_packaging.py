"""`ganplug plugin build|install`: what goes into the zips and into Krita's folder."""

from __future__ import annotations

import io
import zipfile

import pytest
from host_helpers import PLUGINS

from ganplug.cli.app import main
from ganplug.errors import UserError
from ganplug.serve.plugins import build_zip, install_krita


def test_zips_vendor_the_shared_client_and_are_reproducible(plugin_zips):
    client_src = (PLUGINS / "common" / "ganplug_client.py").read_bytes()
    for name, pkg, extra in (("krita", "ganplug_krita", "ganplug_krita.desktop"),
                             ("blender", "ganplug_blender", "ganplug_blender/blender_manifest.toml")):
        zf = zipfile.ZipFile(plugin_zips[name])
        names = zf.namelist()
        assert f"{pkg}/__init__.py" in names and extra in names
        assert zf.read(f"{pkg}/ganplug_client.py") == client_src
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        assert build_zip(name) == build_zip(name)  # fixed timestamps: same sources, same bytes
    blender = zipfile.ZipFile(plugin_zips["blender"])
    init = blender.read("ganplug_blender/__init__.py").decode()
    assert "bl_info" in init and '"blender": (3, 4, 0)' in init
    import tomllib

    manifest = tomllib.loads(blender.read("ganplug_blender/blender_manifest.toml").decode())
    assert manifest["id"] == "ganplug_blender" and manifest["type"] == "add-on"


def test_plugins_import_nothing_outside_the_standard_library_and_their_host():
    allowed = {"krita", "PyQt5", "bpy", "addon_utils"}
    import ast
    import sys

    for path in list((PLUGINS / "krita").rglob("*.py")) + list((PLUGINS / "blender").rglob("*.py")) + [
            PLUGINS / "common" / "ganplug_client.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [node.module.split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in sys.stdlib_module_names or root in allowed or root == "__future__", (path, root)


def test_install_krita_refuses_to_replace_without_force(tmp_path):
    written = install_krita(tmp_path)
    assert (tmp_path / "ganplug_krita.desktop").is_file() and (tmp_path / "ganplug_krita" / "state.py").is_file()
    assert written == [tmp_path / "ganplug_krita.desktop", tmp_path / "ganplug_krita"]
    (tmp_path / "ganplug_krita" / "stale.py").write_text("old")
    with pytest.raises(UserError, match="already installed"):
        install_krita(tmp_path)
    assert (tmp_path / "ganplug_krita" / "stale.py").exists()  # nothing touched
    install_krita(tmp_path, force=True)
    assert not (tmp_path / "ganplug_krita" / "stale.py").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ganplug-install")]


def test_cli_build_and_refusals(tmp_path, capsys):
    assert main(["plugin", "build", "blender", "--out", str(tmp_path)]) == 0
    out = tmp_path / "ganplug-blender-0.1.0.zip"
    assert zipfile.ZipFile(io.BytesIO(out.read_bytes())).testzip() is None
    assert main(["plugin", "build", "blender", "--out", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["plugin", "build", "gimp", "--out", str(tmp_path)]) == 2
    assert main(["plugin", "install", "krita", "--dest", str(tmp_path / "pykrita")]) == 0
    assert "installed" in capsys.readouterr().out
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "refusing to listen on 0.0.0.0" in capsys.readouterr().err
