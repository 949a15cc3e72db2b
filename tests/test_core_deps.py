"""`pip install ganplug` with no extras: the core commands run, and a command needing an extra says which.

`make test` installs every extra, so these tests hide the optional packages from a child Python
(`sys.modules[name] = None` makes `import name` raise ImportError, as if it were not installed).
scripts/core_smoke.sh (`make core-smoke`) checks the same in a real venv with the core dependencies only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_shapes

# every package of the eval, serve and media extras (and the dev ones that could mask a missing import)
EXTRA_MODULES = ["scipy", "cleanfid", "matplotlib", "fastapi", "uvicorn", "starlette", "imageio", "imageio_ffmpeg",
                 "torchvision", "sklearn", "lpips", "pytorch_msssim", "torch_fidelity", "prdc", "httpx"]

CHILD = """
import json, sys
hidden = json.loads(sys.argv[1])
for name in hidden:
    sys.modules[name] = None
from ganplug.cli.app import main
rc = main(json.loads(sys.argv[2]))
leaked = sorted(n for n in hidden if sys.modules.get(n) is not None)
print("LEAKED=" + ",".join(leaked))
sys.exit(rc)
"""


def run_without(hidden: list[str], argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", CHILD, json.dumps(hidden), json.dumps([str(a) for a in argv])],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_normal_quantile_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    import numpy as np

    from ganplug.eval.collapse import normal_quantile

    for p in np.concatenate([np.linspace(1e-6, 1 - 1e-6, 997), [0.975, 0.995, 0.9995, 0.5, 1e-12, 1 - 1e-12]]):
        assert abs(normal_quantile(float(p)) - stats.norm.ppf(p)) < 1e-9, p


def test_train_with_the_watch_needs_no_extra(tmp_path):
    data = write_shapes(tmp_path / "imgs", 24, size=32)
    r = run_without(EXTRA_MODULES, ["train", data, "--out", tmp_path / "run", "--size", "32", "--steps", "2",
                                    "--batch", "8", "--arch", "dcgan", "--base-channels", "8", "--watch-every",
                                    "1", "--device", "cpu",
                                    "--precision", "fp32", "--no-channels-last"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "LEAKED=\n" in r.stdout
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("watch/ndb_over_k" in row for row in rows), "the collapse watch did not run"


@pytest.mark.parametrize("hidden, argv_tail, extra", [
    (["fastapi"], ["serve", "--port", "1"], "serve"),
    (["uvicorn"], ["serve", "--port", "1"], "serve"),
    (["imageio"], ["interpolate", "{run}", "--seeds", "1,2", "--frames", "2", "--out", "m.mp4", "--device", "cpu"],
     "media"),
    (["matplotlib"], ["eval", "{run}", "--real", "{data}", "--metrics", "swd", "--report", "r.html"], "eval"),
])
def test_a_command_needing_an_extra_names_it(hidden, argv_tail, extra, tiny_run, shapes_dir, tmp_path):
    argv = [a.format(run=tiny_run, data=shapes_dir) for a in argv_tail]
    r = run_without(hidden, argv, tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert f"pip install 'ganplug[{extra}]'" in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert not any(tmp_path.iterdir())  # refused before writing anything


def test_eval_verdict_needs_no_extra(tiny_run, shapes_dir, tmp_path):
    r = run_without(EXTRA_MODULES, ["eval", tiny_run, "--real", shapes_dir, "--metrics", "swd", "--n", "24",
                                    "--collapse-n", "24", "--no-cache", "--device", "cpu"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "swd" in r.stdout and ("verdict" in r.stdout or "collapse skipped" in r.stdout), r.stdout


def test_require_names_the_extra():
    from ganplug.errors import UserError
    from ganplug.extras import MissingExtraError, require

    assert require("json", "eval", "x").dumps({}) == "{}"
    with pytest.raises(MissingExtraError, match=r"ganplug serve needs .*'no_such_module_xyz'.*ganplug\[serve\]") as e:
        require("no_such_module_xyz", "serve", "ganplug serve")
    assert isinstance(e.value, UserError) and e.value.exit_code == 2
    with pytest.raises(MissingExtraError, match=r"or use a \.gif\.$"):
        require("no_such_module_xyz.v2", "media", "writing m.mp4", "use a .gif")
