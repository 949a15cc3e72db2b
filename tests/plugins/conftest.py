"""Fixtures for the plugin and host-application tests (helpers in host_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from host_helpers import start_server


@pytest.fixture(scope="session")
def live_server(tiny_run, tmp_path_factory):
    server = start_server([tiny_run], tmp_path_factory.mktemp("serve-log") / "serve.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def plugin_zips(tmp_path_factory) -> dict[str, Path]:
    from ganplug.serve.plugins import build_plugin

    out = tmp_path_factory.mktemp("plugin-zips")
    return {name: build_plugin(name, out) for name in ("krita", "blender")}
