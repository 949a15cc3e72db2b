"""Every bad input is one clear line naming the option or file, and exit code 2, never a traceback.

One table of (command line, fragment the message must hold), run through the real entry point. Paths in
the table are placeholders filled from one shared workspace: {run} a tiny trained run, {imgs} its images,
{tmp} a scratch folder, and the broken files and runs made once below. Nothing here trains.
"""

from __future__ import annotations

import errno
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from ganplug import checkpoint as ckpt
from ganplug.cli.app import main
from ganplug.errors import CheckpointError


def _rewrite_meta(path: Path, edit) -> None:
    """Rewrite a checkpoint in place with edit(doc) applied to its ganplug metadata."""
    with safe_open(str(path), framework="pt") as f:
        doc = json.loads(f.metadata()[ckpt.META_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    edit(doc)
    save_file(tensors, str(path), metadata={ckpt.META_KEY: json.dumps(doc)})


def _broken_run(tiny_run: Path, dest: Path, edit=None, latest: bytes | None = None) -> Path:
    shutil.copytree(tiny_run, dest)
    if edit is not None:
        _rewrite_meta(ckpt.resolve_checkpoint(dest), edit)
    if latest is not None:
        (dest / ckpt.CKPT_DIR / ckpt.LATEST).write_bytes(latest)
    return dest


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_run, shapes_dir) -> dict[str, str]:
    """The placeholders of the table: a run, its images, and one of each kind of broken file."""
    tmp = tmp_path_factory.mktemp("bad-values")
    (tmp / "afile").write_text("not a folder")
    (tmp / "adir.png").mkdir()
    np.savez(tmp / "x.npz", a=np.zeros(100, np.float32))
    np.save(tmp / "strings.npy", np.array(["a"] * 100))
    (tmp / "text.npy").write_text("0.1 0.2 0.3")
    buf = io.BytesIO()
    np.save(buf, np.array([1.0, float("nan")], np.float32))
    (tmp / "nan.npy").write_bytes(buf.getvalue())
    proj = tmp / "proj"
    proj.mkdir()
    np.save(proj / "latent.npy", np.zeros(100, np.float32))  # a z of the tiny DCGAN (z_dim 100)
    (proj / "noise.safetensors").write_bytes(b"damaged")
    places = {"run": tiny_run, "imgs": shapes_dir, "tmp": tmp, "image": next(shapes_dir.glob("*.png"))}
    places["no_train"] = _broken_run(tiny_run, tmp / "no-train", edit=lambda d: d.pop("train"))
    places["step_abc"] = _broken_run(tiny_run, tmp / "step-abc", edit=lambda d: d.update(step="abc"))
    places["step_neg"] = _broken_run(tiny_run, tmp / "step-neg", edit=lambda d: d.update(step=-3))
    places["bad_latest"] = _broken_run(tiny_run, tmp / "bad-latest", latest=b"\xff\xfe\x00step")
    return {k: str(v) for k, v in places.items()}


CPU = ["--device", "cpu"]
TRAIN = ["train", "{imgs}", "--out", "{tmp}/t", "--dry-run"]
GEN = ["generate", "{run}", *CPU]
INTERP = ["interpolate", "{run}", "--out", "{tmp}/m.gif", *CPU]
PROJ = ["project", "{run}", "{image}", "--loss", "pixel", *CPU]
EVAL = ["eval", "{run}", "--real", "{imgs}", "--metrics", "swd", *CPU]

CASES = [
    # train: floats must be finite, counts non-negative
    ([*TRAIN, "--lr-g", "nan"], "'--lr-g': must be a finite number greater than 0, not nan"),
    ([*TRAIN, "--lr-g", "inf"], "'--lr-g': must be a finite number greater than 0, not inf"),
    ([*TRAIN, "--lr-d", "-1"], "'--lr-d'"),
    ([*TRAIN, "--beta1", "1"], "'--beta1': must be a finite number in [0, 1)"),
    ([*TRAIN, "--label-smoothing", "nan"], "'--label-smoothing'"),
    ([*TRAIN, "--minutes", "nan"], "'--minutes'"),
    ([*TRAIN, "--ckpt-every", "-1"], "'--ckpt-every'"),
    ([*TRAIN, "--sample-every", "-5"], "'--sample-every'"),
    ([*TRAIN, "--keep-checkpoints", "-1"], "'--keep-checkpoints'"),
    ([*TRAIN, "--ema-kimg", "-1"], "'--ema-kimg': must be a finite number 0 or more"),
    ([*TRAIN, "--aug-p", "inf"], "'--aug-p'"),
    ([*TRAIN, "--seed", "-1"], "'--seed': a seed is a whole number from 0 to 4294967295"),
    (["train", "{imgs}", "--out", "{tmp}/afile/run"], "afile is a file"),
    (["train", "--resume", "{bad_latest}"], "latest is damaged"),
    pytest.param(["train", "--resume", "{no_train}"], "no 'train' section", id="resume-no-train"),
    (["train", "--resume", "{step_abc}"], "'step'"),
    pytest.param(["train", "--resume", "{step_neg}"], "step -3", id="resume-step-negative"),
    # generate
    ([*GEN, "--out", "{tmp}/g.png", "--batch-size", "0"], "'--batch-size'"),
    ([*GEN, "--out", "{tmp}/g.png", "--nrow", "-1"], "'--nrow'"),
    ([*GEN, "--out", "{tmp}/g.png", "--n", "0"], "'--n'"),
    ([*GEN, "--out", "{tmp}/g.png", "--seeds", "0-99999999999"], "more than 1,000,000 seeds"),
    ([*GEN, "--out", "{tmp}/g.png", "--seeds", "4294967296"], "a seed is at most 4294967295"),
    ([*GEN, "--out", "{tmp}/g.png", "--seeds", "-5"], "'--seeds': seeds must be non-negative"),
    ([*GEN, "--out", "{tmp}/g.png", "--seed", "-5"], "'--seed': a seed is a whole number"),
    ([*GEN, "--out", "{tmp}/g.png", "--truncation", "nan"], "'--truncation': must be a finite number in [0, 2]"),
    ([*GEN, "--out", "{tmp}/g.png", "--latent", "{tmp}/x.npz"], "as a .npy array: it is an .npz archive"),
    ([*GEN, "--out", "{tmp}/g.png", "--latent", "{tmp}/strings.npy"], "holds <U1 values, not numbers"),
    ([*GEN, "--out", "{tmp}/g.png", "--latent", "{tmp}/text.npy"], "as a .npy array: it is not a .npy file"),
    ([*GEN, "--out", "{tmp}/g.png", "--latent", "{tmp}/nan.npy"], "nan.npy holds nan"),
    ([*GEN, "--out", "{tmp}/g.png", "--latent", "{tmp}/proj/latent.npy"], "noise.safetensors (the noise maps"),
    ([*GEN, "--out", "{tmp}/adir.png", "--force"], "adir.png is a folder"),
    ([*GEN, "--out", "{tmp}/afile/g.png"], "afile is a file"),
    ([*GEN, "--outdir", "{tmp}/afile"], "afile is a file"),
    (["generate", "{bad_latest}", "--out", "{tmp}/g.png", *CPU], "latest is damaged"),
    # interpolate, mix, rank, translate
    ([*INTERP, "--fps", "0"], "'--fps': must be a finite number in [0.1, 240], not 0.0"),
    ([*INTERP, "--fps", "-1"], "'--fps'"),
    ([*INTERP, "--truncation", "nan"], "'--truncation'"),
    ([*INTERP, "--frames", "1"], "'--frames'"),
    ([*INTERP, "--seeds", "1,x"], "cannot read seeds"),
    (["interpolate", "{run}", "--out", "{tmp}/afile/m.gif"], "afile is a file"),
    (["mix", "{run}", "--truncation", "inf", "--out", "{tmp}/mix.png"], "'--truncation'"),
    (["rank", "{run}", "--n", "0", "--out", "{tmp}/r.png"], "'--n'"),
    (["rank", "{run}", "--best", "0", "--worst", "0", "--out", "{tmp}/r.png"], "show at least one image"),
    (["translate", "{run}", "{image}", "--out", "{tmp}/adir.png"], "adir.png is a folder"),
    # project
    ([*PROJ, "--out", "{tmp}/p", "--lr", "nan"], "'--lr': must be a finite number greater than 0, not nan"),
    ([*PROJ, "--out", "{tmp}/p", "--steps", "0"], "'--steps'"),
    ([*PROJ, "--out", "{tmp}/afile"], "afile is a file; give a folder"),
    # eval
    ([*EVAL, "--truncation", "nan"], "'--truncation'"),
    ([*EVAL, "--seed", "-1"], "'--seed'"),
    ([*EVAL, "--n", "0"], "'--n'"),
    ([*EVAL, "--json", "{tmp}/adir.png"], "adir.png is a folder"),
    # demo, prep, serve
    (["demo", "--minutes", "nan"], "'--minutes': must be a finite number greater than 0"),
    (["demo", "--minutes", "0"], "'--minutes'"),
    (["demo", "--batch", "0"], "'--batch'"),
    (["prep", "{imgs}", "{tmp}/ds", "--holdout", "nan"], "'--holdout'"),
    (["prep", "{imgs}", "{tmp}/ds", "--dedup-threshold", "inf"], "'--dedup-threshold'"),
    (["prep", "{imgs}", "{tmp}/ds", "--seed", "-1"], "'--seed'"),
    (["prep", "{imgs}", "{tmp}/afile"], "afile is a file"),
    (["serve", "--max-upload-mb", "nan"], "'--max-upload-mb'"),
    (["serve", "--port", "70000"], "'--port'"),
]


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_clear_line(code: int, out: str, err: str, fragment: str) -> None:
    assert "Traceback" not in out + err
    assert code == 2, out + err
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert last.startswith("error: "), err
    assert fragment in last, err


def _case_id(case) -> str:
    argv = case.values[0] if hasattr(case, "values") else case[0]
    return "-".join(a for a in argv if not a.startswith("{") and a not in ("--device", "cpu"))[:60]


@pytest.mark.parametrize("argv,fragment", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_value_is_one_line_and_exit_2(ws, capsys, one_thread, argv, fragment):
    code, out, err = _run(capsys, [a.format(**ws) for a in argv])
    _assert_one_clear_line(code, out, err, fragment)
    assert not (Path(ws["tmp"]) / "g.png").exists()  # nothing was written on the way to the error


# Read-only output folders. Tests run as root, where chmod does not stop a write, so both layers are
# exercised by making the operating system's answer the one a user without permission gets.

def test_output_folder_without_permission_is_refused_where_declared(ws, capsys, monkeypatch):
    """Non-root users: the option's validator asks the OS (os.access) before anything runs."""
    import ganplug.cli.validate as validate

    locked = Path(ws["tmp"]) / "locked"
    locked.mkdir(exist_ok=True)
    real_access = validate.os.access
    monkeypatch.setattr(validate.os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    for argv in (["generate", ws["run"], "--out", f"{locked}/g.png", *CPU],
                 ["train", ws["imgs"], "--out", f"{locked}/run", "--dry-run"],
                 ["project", ws["run"], ws["image"], "--out", f"{locked}/p", *CPU],
                 ["eval", ws["run"], "--real", ws["imgs"], "--json", f"{locked}/e.json", *CPU]):
        code, out, err = _run(capsys, argv)
        _assert_one_clear_line(code, out, err, f"no permission to write in {locked}")


@pytest.mark.parametrize("err_no", [errno.EACCES, errno.EROFS])
def test_write_refused_by_the_os_is_one_line(ws, capsys, monkeypatch, err_no):
    """Whatever the validator missed (root on a read-only mount, permissions changed mid-run): the one
    atomic writer turns the OS's refusal into a message naming the file."""
    import ganplug.atomic as atomic

    def refuse(*args, **kwargs):
        raise OSError(err_no, errno.errorcode[err_no], kwargs.get("dir"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    target = Path(ws["tmp"]) / "denied.png"
    code, out, err = _run(capsys, ["generate", ws["run"], "--n", "2", "--out", str(target), *CPU])
    _assert_one_clear_line(code, out, err, f"could not write {target}")
    assert "Choose an output path in a folder you can write to" in err


def test_atomic_write_names_the_file_in_the_way(tmp_path):
    from ganplug.atomic import atomic_write_bytes
    from ganplug.errors import UserError

    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    with pytest.raises(UserError, match="afile is a file, not a folder"):
        atomic_write_bytes(tmp_path / "afile" / "sub" / "x.bin", b"1")
    with pytest.raises(UserError, match="that is a folder"):
        atomic_write_bytes(tmp_path / "adir", b"1")
    assert list((tmp_path / "adir").iterdir()) == []  # no stray temporary file


def test_read_resume_meta(ws):
    path = ckpt.resolve_checkpoint(ws["run"])
    train, step = ckpt.read_resume_meta(path)
    assert step == 6 and train["data"] == ws["imgs"]
    for broken, message in (("no_train", "no 'train' section"), ("step_neg", "step -3"), ("step_abc", "'step'")):
        with pytest.raises(CheckpointError, match=message):
            ckpt.read_resume_meta(ckpt.resolve_checkpoint(ws[broken]))


def test_latest_pointer_naming_no_checkpoint_falls_back_to_the_newest(ws, tmp_path):
    run = _broken_run(Path(ws["run"]), tmp_path / "run", latest=b"../../elsewhere.safetensors\n")
    assert ckpt.resolve_checkpoint(run) == ckpt.list_checkpoints(run)[-1]
