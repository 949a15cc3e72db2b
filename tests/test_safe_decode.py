"""Every command that reads a user's image goes through the one safe decoder (ganplug.data.decode).

A decompression bomb, a truncated PNG and a text file named .png given to `translate`, `project` and
`eval --real` end in a one-line error naming the file and exit code 2, never a traceback.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganplug.cli.app import main
from tests.conftest import write_shapes

TINY = ["--batch", "2", "--base-channels", "8", "--device", "cpu", "--precision", "fp32",
        "--no-channels-last",
        "--sample-every", "100", "--ckpt-every", "100"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_bomb_png(path: Path, side: int) -> Path:
    """A real, complete 1-bit PNG of side x side white pixels: tens of KB on disk, side^2 pixels declared."""
    row = b"\x00" + b"\xff" * ((side + 7) // 8)  # filter byte "none" + packed bits
    z = zlib.compressobj(9)
    rows_per_block = 1000
    block = row * rows_per_block
    parts = []
    for start in range(0, side, rows_per_block):
        parts.append(z.compress(block if start + rows_per_block <= side else row * (side - start)))
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts))
                     + _chunk(b"IEND", b""))
    return path


def write_truncated_png(path: Path) -> Path:
    """A noise PNG (incompressible) cut in the middle of its pixel data: the header still reads."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_text_png(path: Path) -> Path:
    path.write_text("these are my notes, not a picture\n")
    return path


BAD_FILES = {
    # 24000^2 = 576 megapixels: over twice Pillow's limit even after the decoder raised it for its own
    "bomb": lambda d: write_bomb_png(d / "bomb.png", 24000),
    "truncated": lambda d: write_truncated_png(d / "truncated.png"),
    "text": lambda d: write_text_png(d / "notes.png"),
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    out = {}
    for kind, make in BAD_FILES.items():
        folder = root / kind
        folder.mkdir()
        out[kind] = make(folder)
    return out


def test_the_bomb_is_a_real_png_over_pillows_limit(bad_files):
    bomb = bad_files["bomb"]
    assert bomb.stat().st_size < 200_000
    assert 24000 * 24000 > 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(Image.DecompressionBombError):  # what the commands used to die of
        Image.open(bomb)


@pytest.fixture(scope="module")
def p2p_run(tmp_path_factory) -> Path:
    """A 2-step pix2pix run on edge pairs: translate only needs a translator checkpoint."""
    root = tmp_path_factory.mktemp("p2p-safe")
    write_shapes(root / "src", 8, size=32)
    assert main(["prep", str(root / "src"), str(root / "data"), "--size", "32", "--pairs", "edges"]) == 0
    run = root / "run"
    assert main(["train", str(root / "data"), "--arch", "pix2pix", "--out", str(run), "--steps", "2", *TINY]) == 0
    return run


@pytest.fixture(scope="module")
def good_shapes(tmp_path_factory) -> Path:
    return write_shapes(tmp_path_factory.mktemp("good") / "imgs", 6, size=32)


def _translate(runs, bad: Path, tmp: Path) -> list[str]:
    return ["translate", str(runs["p2p"]), str(bad), "--out", str(tmp / "out.png"), "--device", "cpu"]


def _project(runs, bad: Path, tmp: Path) -> list[str]:
    return ["project", str(runs["dcgan"]), str(bad), "--steps", "2", "--out", str(tmp / "proj"), "--device", "cpu"]


def _eval(runs, bad: Path, tmp: Path) -> list[str]:
    real = tmp / "real"
    real.mkdir()
    for f in sorted(runs["good"].iterdir()):
        (real / f.name).write_bytes(f.read_bytes())
    (real / bad.name).write_bytes(bad.read_bytes())
    return ["eval", str(runs["dcgan"]), "--real", str(real), "--metrics", "swd", "--n", "8", "--no-collapse",
            "--no-cache", "--device", "cpu"]


COMMANDS = {"translate": _translate, "project": _project, "eval": _eval}


@pytest.fixture(scope="module")
def runs(p2p_run, tiny_run, good_shapes) -> dict[str, Path]:
    return {"p2p": p2p_run, "dcgan": tiny_run, "good": good_shapes}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_bad_image_is_one_line_exit_2_naming_the_file(command, kind, runs, bad_files, tmp_path, capsys, one_thread):
    bad = bad_files[kind]
    argv = COMMANDS[command](runs, bad, tmp_path)
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()  # progress lines may come first (eval reports its passes)
    assert lines[-1].startswith("error:") and sum(x.startswith("error:") for x in lines) == 1, err
    assert not any(x.startswith(" ") for x in lines), err  # no continuation lines: the message is one line
    assert bad.name in lines[-1], err
    reason = {"bomb": "too large", "truncated": "truncated", "text": "not a valid PNG"}[kind]
    assert reason in lines[-1], err
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "proj").exists()


def test_probe_and_open_share_the_checks(bad_files, tmp_path):
    from ganplug.data.decode import ImageReadError, open_image, probe_image

    for kind in ("bomb", "text"):
        with pytest.raises(ImageReadError, match=bad_files[kind].name):
            probe_image(bad_files[kind])
    head = probe_image(bad_files["truncated"])  # the header is intact; the pixels are not
    assert head.size == (64, 64) and head.mode == "RGB" and not head.has_alpha
    with pytest.raises(ImageReadError, match="truncated"):
        open_image(bad_files["truncated"])
    Image.new("RGBA", (5, 3)).save(tmp_path / "a.png")
    assert probe_image(tmp_path / "a.png").has_alpha and probe_image(tmp_path / "a.png").size == (5, 3)
