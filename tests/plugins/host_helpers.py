"""Helpers for plugin and host-application tests: a real `ganplug serve` subprocess on a free loopback
port serving the lead's `tiny_run`, the built plugin zips, and the skip-or-fail rule for host apps."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "plugins"
DOCS_IMG = REPO / "docs" / "img"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_app(name: str) -> str:
    """Path of a host application; a missing one skips the test, except under CI=true where it fails."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (apt-get install {name}); the host-application test needs it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " and CI=true forbids skipping it")
        pytest.skip(msg)
    return path


def keep_screenshot(src: Path, name: str) -> None:
    """With GANPLUG_DOCS_SCREENSHOTS=1 the screenshots a test took are copied to docs/img for the docs."""
    if os.environ.get("GANPLUG_DOCS_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, DOCS_IMG / name)


def host_env(home: Path, **extra) -> dict:
    """Environment for a host application: headless, with its own HOME so nothing of the user's is touched."""
    env = dict(os.environ)
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"),
               XDG_CACHE_HOME=str(home / ".cache"), XDG_RUNTIME_DIR=str(home / "run"), QT_QPA_PLATFORM="offscreen")
    (home / "run").mkdir(exist_ok=True, mode=0o700)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


class LiveServer:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path):
        self.url, self.proc, self.log = url, proc, log

    def stop(self) -> None:
        """Terminate, and kill if it does not exit within 10 s (a stuck server must not hang the session)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())


def start_server(models: list[Path], log: Path, *extra: str) -> LiveServer:
    port = free_port()
    cmd = [sys.executable, "-m", "ganplug.cli.app", "serve", "--port", str(port), "--device", "cpu",
           "--precision", "fp32", *extra]
    for m in models:
        cmd += ["--models", str(m)]
    out = open(log, "wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ganplug serve exited with {proc.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/v1/health", timeout=2):
                return LiveServer(url, proc, log)
        except urllib.error.HTTPError:  # it answers (e.g. 401 without the token): it is up
            return LiveServer(url, proc, log)
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"ganplug serve did not come up: {log.read_text()}")
