"""`ganplug --help` and every `ganplug CMD --help` answer without importing torch (seconds on a cold start):
the command modules import torch and the heavy library modules inside the command functions."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import contextlib, io, json, sys
from ganplug.cli.app import app, main
names = [c.name for c in app.registered_commands]
seen = {}
for argv in [["--help"]] + [[n, "--help"] for n in names]:
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    seen[" ".join(argv)] = {"code": code, "torch": "torch" in sys.modules}
print(json.dumps({"names": names, "seen": seen}))
"""


def test_help_never_imports_torch():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"generate", "variations", "interpolate", "mix", "train", "serve"} <= set(report["names"])
    for argv, got in report["seen"].items():
        assert got["code"] == 0, argv
        assert not got["torch"], f"`ganplug {argv}` imported torch"


def test_generate_refuses_an_existing_output_before_importing_torch(tmp_path):
    """A refusal should be instant: it came 5 s late, after torch and the checkpoint were loaded."""
    import subprocess
    import sys

    existing = tmp_path / "grid.png"
    existing.write_bytes(b"mine")
    code = ("import sys; from ganplug.cli.app import main; rc = main(['generate', sys.argv[1], '--out', sys.argv[2]]); "
            "print('torch' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "no-run"), str(existing)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert proc.stdout.strip() == "False"
    assert existing.read_bytes() == b"mine"
