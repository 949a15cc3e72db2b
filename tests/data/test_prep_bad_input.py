"""Bad input to prep: a clear DataError (exit 2 in the CLI), and nothing the user had is lost."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prep_assets import distinct_designs, huge_png

from ganplug.data import PrepOptions, is_prepared_dataset, npy_stream, open_dataset, prepare_dataset
from ganplug.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def drop_file_permission_override() -> None:
    """In a child about to exec: remove root's power to ignore file permissions (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH) from the capability bounding set, so the new program gets EACCES like a user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP failed")


def run_python(code: str, *, cwd: Path, as_user: bool = False, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter; as_user: with permission checks enforced even for root."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        preexec_fn=drop_file_permission_override if as_user and os.geteuid() == 0 else None,
    )


def test_src_missing_empty_or_a_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        prepare_dataset(tmp_path / "nothing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no image files"):
        prepare_dataset(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.md").write_text("notes beside art are ignored")
    (tmp_path / "docs" / "armour.psd").write_bytes(b"8BPS")
    with pytest.raises(DataError, match=r"holds no image files \(1 other file"):
        prepare_dataset(tmp_path / "docs", tmp_path / "out")
    (tmp_path / "one.png").write_bytes(b"x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        prepare_dataset(tmp_path / "one.png", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_out_that_is_not_a_dataset_is_refused_unless_forced(tmp_path: Path) -> None:
    distinct_designs(tmp_path / "src", 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "my_notes.txt").write_text("precious")
    with pytest.raises(DataError, match="not a ganplug dataset.*--force"):
        prepare_dataset(tmp_path / "src", out, PrepOptions(size=16))
    assert (out / "my_notes.txt").read_text() == "precious"
    prepare_dataset(tmp_path / "src", out, PrepOptions(size=16), force=True)
    assert is_prepared_dataset(out) and not (out / "my_notes.txt").exists()
    # an existing empty folder is fine without --force
    (tmp_path / "empty_out").mkdir()
    prepare_dataset(tmp_path / "src", tmp_path / "empty_out", PrepOptions(size=16))
    assert is_prepared_dataset(tmp_path / "empty_out")


def test_out_dataset_with_other_options_says_which_differ(tmp_path: Path) -> None:
    distinct_designs(tmp_path / "src", 2)
    out = tmp_path / "out"
    prepare_dataset(tmp_path / "src", out, PrepOptions(size=16, seed=0))
    before = (out / "images.npy").read_bytes()
    with pytest.raises(DataError) as e:
        prepare_dataset(tmp_path / "src", out, PrepOptions(size=32, fit="crop", seed=0))
    msg = str(e.value)
    assert "size: 16 -> 32" in msg and "fit: 'pad' -> 'crop'" in msg and "--force" in msg
    assert "seed" not in msg and "background" not in msg  # only what differs
    assert (out / "images.npy").read_bytes() == before
    prepare_dataset(tmp_path / "src", out, PrepOptions(size=32, fit="crop", seed=0), force=True)
    assert open_dataset(out).size == 32


def test_out_containing_src_is_refused_even_with_force(tmp_path: Path) -> None:
    distinct_designs(tmp_path / "art" / "src", 2)
    with pytest.raises(DataError, match="contains SRC"):
        prepare_dataset(tmp_path / "art" / "src", tmp_path / "art", force=True)
    assert len(list((tmp_path / "art" / "src").iterdir())) == 2


def test_out_inside_src_is_not_read_as_input(tmp_path: Path) -> None:
    src = tmp_path / "src"
    distinct_designs(src, 3)
    prepare_dataset(src, src / "prepared", PrepOptions(size=16, seed=0))
    again = prepare_dataset(src, src / "prepared", PrepOptions(size=16, seed=0))
    assert again.noop and again.counts["files"] == 3  # its preview.png was not picked up
    # nor is another prepared dataset inside SRC read as art
    res = prepare_dataset(src, tmp_path / "third", PrepOptions(size=16, seed=0))
    assert res.counts["files"] == 3
    assert {"file": "prepared", "reason": "a prepared ganplug dataset, not read as source images"} in res.meta[
        "skipped"]


def test_fake_png(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "fake.png").write_bytes(b"GIF89a but really just text")
    with pytest.raises(DataError, match=r"no usable image.*fake\.png: not a valid PNG"):
        prepare_dataset(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    distinct_designs(src, 1)
    res = prepare_dataset(src, tmp_path / "out", PrepOptions(size=16))
    assert res.counts["train"] == 1 and res.meta["skipped"][0]["file"] == "fake.png"


def test_huge_image_is_refused_without_decoding_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    huge_png(src / "huge.png")  # 20,000 x 20,000: 400 MB as 8-bit gray, 1.2 GB as RGB
    assert (src / "huge.png").stat().st_size < 200_000
    code = f"""
        import resource, json
        from ganplug.data import prepare_dataset, PrepOptions
        from ganplug.errors import DataError
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            prepare_dataset({str(src)!r}, {str(tmp_path / "out")!r}, PrepOptions(size=32))
            outcome = "prepared"
        except DataError as e:
            outcome = str(e)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"outcome": outcome, "grew_kb": after - before}}))
    """
    proc = run_python(code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "huge.png: too large: 20000x20000 is 400 megapixels" in result["outcome"]
    assert result["grew_kb"] < 60_000, f"memory grew by {result['grew_kb'] / 1e3:.0f} MB"
    # with a good image beside it, prep skips it and says why
    distinct_designs(src, 1)
    res = prepare_dataset(src, tmp_path / "out", PrepOptions(size=16))
    [skip] = res.meta["skipped"]
    assert skip["file"] == "huge.png" and "--max-pixels" not in skip["reason"] and "too large" in skip["reason"]


def test_max_pixels_option_lets_big_images_through(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (1200, 1000), (10, 20, 30)).save(src / "big.png")
    with pytest.raises(DataError, match="too large"):
        prepare_dataset(src, tmp_path / "a", PrepOptions(size=16, max_pixels=1_000_000))
    res = prepare_dataset(src, tmp_path / "b", PrepOptions(size=16, max_pixels=1_200_000))
    assert res.counts["train"] == 1


def test_symlink_loops_are_reported_not_followed_forever(tmp_path: Path) -> None:
    src = tmp_path / "src"
    distinct_designs(src / "sub", 2)
    (src / "sub" / "back_up").symlink_to(src, target_is_directory=True)  # folder loop
    (src / "a.png").symlink_to(src / "b.png")
    (src / "b.png").symlink_to(src / "a.png")  # file loop
    res = prepare_dataset(src, tmp_path / "out", PrepOptions(size=16, seed=0))
    assert res.counts["train"] == 2
    reasons = {s["file"]: s["reason"] for s in res.meta["skipped"]}
    assert reasons["a.png"] == "symlink loop" and reasons["b.png"] == "symlink loop"
    assert reasons["sub/back_up"].startswith("symlink loop")


def test_unreadable_files_are_skipped_with_permission_denied(tmp_path: Path) -> None:
    """Root reads everything, so the check runs in a child without root's permission override."""
    src = tmp_path / "src"
    distinct_designs(src, 2)
    Image.new("RGB", (8, 8)).save(src / "secret.png")
    (src / "secret.png").chmod(0o000)
    (src / "locked").mkdir()
    Image.new("RGB", (8, 8)).save(src / "locked" / "x.png")
    (src / "locked").chmod(0o000)
    code = f"""
        import json
        from ganplug.data import prepare_dataset, PrepOptions
        res = prepare_dataset({str(src)!r}, {str(tmp_path / "ds")!r}, PrepOptions(size=16, seed=0))
        print(json.dumps({{"train": res.counts["train"], "skipped": res.meta["skipped"]}}))
    """
    proc = run_python(code, cwd=tmp_path, as_user=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["train"] == 2
    reasons = {s["file"]: s["reason"] for s in result["skipped"]}
    assert reasons == {"secret.png": "permission denied", "locked": "permission denied"}
    # an unreadable SRC is a clear error
    src.chmod(0o000)
    code = f"""
        from ganplug.data import prepare_dataset
        from ganplug.errors import DataError
        try:
            prepare_dataset({str(src)!r}, {str(tmp_path / "ds2")!r})
        except DataError as e:
            print("DataError:", e)
    """
    proc = run_python(code, cwd=tmp_path, as_user=True)
    assert "DataError:" in proc.stdout and "permission denied" in proc.stdout, proc.stderr
    src.chmod(0o755)
    (src / "locked").chmod(0o755)


def test_disk_full_midway_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    distinct_designs(src, 8)
    out = tmp_path / "out"
    real_append = npy_stream.NpyRowWriter.append

    def append(self, row: np.ndarray) -> None:
        if self.count == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_append(self, row)

    monkeypatch.setattr(npy_stream.NpyRowWriter, "append", append)
    with pytest.raises(DataError, match="ran out of disk space.*nothing was written"):
        prepare_dataset(src, out, PrepOptions(size=16, seed=0))
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["src"]

    # an existing dataset being rebuilt with --force survives a failed rebuild untouched
    monkeypatch.setattr(npy_stream.NpyRowWriter, "append", real_append)
    prepare_dataset(src, out, PrepOptions(size=16, seed=0))
    before = (out / "images.npy").read_bytes()
    monkeypatch.setattr(npy_stream.NpyRowWriter, "append", append)
    with pytest.raises(DataError, match="ran out of disk space"):
        prepare_dataset(src, out, PrepOptions(size=24, seed=0), force=True)
    assert (out / "images.npy").read_bytes() == before and open_dataset(out).size == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_real_file_size_limit_in_a_child_process(tmp_path: Path) -> None:
    """The kernel refuses writes past RLIMIT_FSIZE (EFBIG), like a disk filling up mid-write."""
    src = tmp_path / "src"
    distinct_designs(src, 30)
    out = tmp_path / "out"
    code = f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))
        from ganplug.cli.app import main
        sys.exit(main(["prep", {str(src)!r}, {str(out)!r}, "--size", "32", "--quiet", "--no-dedup"]))
    """
    proc = run_python(code, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "ran out of disk space" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not is_prepared_dataset(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_interrupt_leaves_no_temp_folder(tmp_path: Path) -> None:
    distinct_designs(tmp_path / "src", 6)
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(tmp_path / "src", tmp_path / "out", PrepOptions(size=16), progress=progress)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_notes_beside_art_are_listed_as_ignored_not_skipped(tmp_path: Path) -> None:
    """docs/data.md: a user's notes.txt is not art and not a failure, and report.json says so."""
    src = tmp_path / "src"
    src.mkdir()
    distinct_designs(src, 2)
    (src / "notes.txt").write_text("palette ideas")
    (src / "sub").mkdir()
    (src / "sub" / "LICENSE").write_text("CC-BY")
    out = tmp_path / "out"
    res = prepare_dataset(src, out, PrepOptions(size=16))
    report = json.loads((out / "report.json").read_text())
    assert [x["file"] for x in report["ignored"]] == ["notes.txt", "sub/LICENSE"]
    assert all("not art" in x["reason"] for x in report["ignored"])
    assert not any(x["file"] in ("notes.txt", "sub/LICENSE") for x in report["skipped"])
    assert res.counts["train"] == 2
