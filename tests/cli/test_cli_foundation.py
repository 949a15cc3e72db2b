"""End-to-end CLI: train, generate, interpolate, rank; every bad input is a message and exit code 2."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganplug.cli.app import main

TINY = ["--size", "32", "--batch", "8", "--arch", "dcgan", "--base-channels", "8", "--device", "cpu",
        "--precision", "fp32",
        "--no-channels-last", "--sample-every", "2", "--ckpt-every", "2"]


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, shapes_dir) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", str(shapes_dir), "--out", str(out), "--steps", "4", *TINY]) == 0
    return out


def test_train_writes_a_run(cli_run):
    assert (cli_run / "checkpoints" / "step-000004.safetensors").is_file()
    assert (cli_run / "samples" / "step-000004.png").is_file()
    assert (cli_run / "timelapse.gif").is_file()


def test_generate_grid_and_files_regenerate_by_seed(cli_run, tmp_path, capsys):
    grid = tmp_path / "grid.png"
    code, _ = run(capsys, "generate", cli_run, "--n", "6", "--seed", "10", "--out", grid, "--nrow", "3",
                  "--device", "cpu")
    assert code == 0
    with Image.open(grid) as im:
        assert im.size == (3 * 34 + 2, 2 * 34 + 2)
    outdir = tmp_path / "imgs"
    assert run(capsys, "generate", cli_run, "--n", "3", "--seed", "10", "--outdir", outdir, "--device", "cpu")[0] == 0
    record = json.loads((outdir / "seeds.json").read_text())
    assert [r["seed"] for r in record["images"]] == [10, 11, 12]
    # the sidecar is enough to regenerate any image: seed 12 alone gives the same pixels
    again = tmp_path / "again"
    assert run(capsys, "generate", cli_run, "--seeds", "12", "--outdir", again, "--device", "cpu")[0] == 0
    a = np.asarray(Image.open(outdir / record["images"][2]["file"]))
    b = np.asarray(Image.open(again / "0000-seed12.png"))
    assert a.shape == (32, 32, 3) and np.array_equal(a, b)
    # and the grid cell of seed 12 (third cell) holds the same image
    cell = np.asarray(Image.open(grid))[2:34, 2 + 2 * 34 : 2 + 2 * 34 + 32]
    assert np.array_equal(cell, a)


def test_generate_refuses_to_overwrite(cli_run, tmp_path, capsys):
    grid = tmp_path / "grid.png"
    grid.write_bytes(b"precious")
    code, err = run(capsys, "generate", cli_run, "--n", "2", "--out", grid, "--device", "cpu")
    assert code == 2 and "--force" in err and grid.read_bytes() == b"precious"
    assert run(capsys, "generate", cli_run, "--n", "2", "--out", grid, "--device", "cpu", "--force")[0] == 0
    assert grid.read_bytes()[:4] == b"\x89PNG"


def test_interpolate_gif_has_the_frames(cli_run, tmp_path, capsys):
    gif = tmp_path / "morph.gif"
    code, _ = run(capsys, "interpolate", cli_run, "--seeds", "3,7,12", "--frames", "9", "--out", gif, "--device",
                  "cpu")
    assert code == 0
    with Image.open(gif) as im:
        assert im.n_frames == 9 and im.size == (32, 32)


def test_interpolate_mp4(cli_run, tmp_path, capsys):
    pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg is an optional extra ([media])")
    mp4 = tmp_path / "morph.mp4"
    code, _ = run(capsys, "interpolate", cli_run, "--seeds", "1,2", "--frames", "6", "--out", mp4, "--device", "cpu")
    assert code == 0
    import imageio.v2 as imageio

    with imageio.get_reader(mp4) as r:
        assert sum(1 for _ in r) == 6


def test_rank_orders_by_discriminator(cli_run, tmp_path, capsys):
    out = tmp_path / "ranked.png"
    code, text = run(capsys, "rank", cli_run, "--n", "12", "--best", "4", "--worst", "4", "--out", out, "--device",
                     "cpu")
    assert code == 0 and "Best seeds" in text
    with Image.open(out) as im:
        assert im.size[0] == 2 * 34 + 2 and im.size[1] == 2 * (2 * 34 + 2) + 12
    # the printed best seed really has the highest D score
    import torch

    from ganplug.checkpoint import load_discriminator, load_generator
    from ganplug.sampling import generate_all

    G = load_generator(cli_run).G
    D, _ = load_discriminator(cli_run)
    scores = D(generate_all(G, range(12)).float() / 127.5 - 1)
    best_seed = int(text.split("Best seeds (D score): ")[1].split(" ")[0])
    assert best_seed == int(torch.argmax(scores))


def test_resume_continues_from_cli(cli_run, tmp_path, capsys):
    run_dir = tmp_path / "resumed"
    shutil.copytree(cli_run, run_dir)
    code, _ = run(capsys, "train", "--resume", run_dir, "--steps", "6", "--device", "cpu")
    assert code == 0
    assert (run_dir / "checkpoints" / "step-000006.safetensors").is_file()


def test_minutes_caps_the_wall_time(shapes_dir, tmp_path, capsys):
    """`--minutes` stops a long run early with a final checkpoint, which `--resume` can continue."""
    out = tmp_path / "timed"
    code, _ = run(capsys, "train", shapes_dir, "--out", out, "--steps", "100000", "--minutes", "0.0001", *TINY)
    assert code == 0
    saved = sorted(p.name for p in (out / "checkpoints").glob("step-*.safetensors"))
    assert saved and saved[-1] < "step-000100"  # far short of --steps; the final state is saved
    code, _ = run(capsys, "train", "--resume", out, "--steps", "3", "--device", "cpu")
    assert code == 0 and (out / "checkpoints" / "step-000003.safetensors").is_file()


# ----------------------------------------------------------------------------- bad input


def test_train_without_data_names_the_demo(capsys):
    code, err = run(capsys, "train", "--out", "x")
    assert code == 2 and "ganplug demo" in err


@pytest.mark.parametrize("args,needle", [(["--size", "48"], "power of two"), (["--steps", "0"], "--steps"),
                                         (["--loss", "minimax"], "--loss"),
                                         (["--minutes", "-5"], "--minutes")])
def test_nonsense_options(shapes_dir, tmp_path, capsys, args, needle):
    code, err = run(capsys, "train", shapes_dir, "--out", tmp_path / "r", *args)
    assert code == 2 and needle in err
    assert not (tmp_path / "r").exists()


def test_empty_and_undecodable_folders(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run(capsys, "train", empty, "--out", tmp_path / "r1", *TINY)
    assert code == 2 and str(empty) in err
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.png").write_bytes(b"this is not a png")
    (junk / "half.png").write_bytes(_png_bytes()[:60])
    code, err = run(capsys, "train", junk, "--out", tmp_path / "r2", *TINY)
    assert code == 2 and "no" in err.lower()
    assert not (tmp_path / "r2").exists()


def _png_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8) + 90).save(buf, "PNG")
    return buf.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming a huge image (the pixel data would decompress to gigabytes)."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def test_corrupt_files_are_skipped_and_counted(shapes_dir, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    shutil.copytree(shapes_dir, mixed)
    (mixed / "broken.png").write_bytes(_png_bytes()[:70])
    (mixed / "fake.jpg").write_text("hello")
    code, err = run(capsys, "train", mixed, "--out", tmp_path / "r", "--steps", "1", *TINY)
    assert code == 0
    assert "skipped 2" in err and "broken.png" in err


def test_decompression_bomb_is_refused(tmp_path, capsys):
    folder = tmp_path / "bomb"
    folder.mkdir()
    (folder / "huge.png").write_bytes(_bomb_png(60_000, 60_000))
    code, err = run(capsys, "train", folder, "--out", tmp_path / "r", *TINY)
    assert code == 2 and "huge.png" in err


def test_existing_run_refused_without_force(cli_run, shapes_dir, capsys):
    before = (cli_run / "checkpoints" / "latest").read_text()
    code, err = run(capsys, "train", shapes_dir, "--out", cli_run, "--steps", "2", *TINY)
    assert code == 2 and "--resume" in err and "--force" in err
    assert (cli_run / "checkpoints" / "latest").read_text() == before


def test_bad_checkpoints(tmp_path, capsys, cli_run):
    foreign = tmp_path / "model.safetensors"
    foreign.write_bytes(b"\x00" * 100)
    code, err = run(capsys, "generate", foreign, "--out", tmp_path / "g.png")
    assert code == 2 and "ganplug checkpoint" in err
    src = next((cli_run / "checkpoints").glob("step-*.safetensors"))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(src.read_bytes()[:5000])
    code, err = run(capsys, "generate", cut, "--out", tmp_path / "g.png")
    assert code == 2 and "truncated" in err
    code, err = run(capsys, "generate", tmp_path / "missing", "--out", tmp_path / "g.png")
    assert code == 2 and "does not exist" in err


def test_console_script_exit_code_and_no_traceback(tmp_path):
    """The installed `ganplug` entry point: exit status 2 and a one-line message, no Python traceback."""
    exe = Path(sys.executable).with_name("ganplug")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ganplug.cli.app"]
    proc = subprocess.run([*cmd, "train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "does not exist" in proc.stderr


@pytest.mark.parametrize("argv,needle", [(["train", "--bogus"], "No such option"),
                                         (["generate", "--truncation", "abc"], "--truncation"),
                                         (["train", "x", "--out", "r", "--watch-every", "0"], "--watch-every")])
def test_usage_errors_are_exit_2_without_traceback(capsys, argv, needle):
    """Option parsing errors (from click, or the copy of click newer typer releases carry) are usage
    messages with exit status 2."""
    code, err = run(capsys, *argv)
    assert code == 2 and needle in err and "Traceback" not in err


def test_prep_then_train_takes_the_dataset_size(shapes_dir, tmp_path, capsys):
    """`ganplug prep SRC OUT --size 32` then `ganplug train OUT` (no --size) trains at 32 px from the memmap."""
    data = tmp_path / "data32"
    assert run(capsys, "prep", shapes_dir, data, "--size", "32")[0] == 0
    args = [a for a in TINY if a not in ("--size", "32")]
    code, _ = run(capsys, "train", data, "--out", tmp_path / "r", "--steps", "1", *args)
    assert code == 0
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["train"]["size"] == 32 and config["model"]["size"] == 32
    assert config["dataset"]["path"] == str(data)


@pytest.mark.parametrize("arch,lr,beta1", [("dcgan", 2e-4, 0.5), ("stylegan", 0.0025, 0.0)])
def test_optimiser_defaults_follow_the_architecture(shapes_dir, tmp_path, capsys, arch, lr, beta1):
    code, out = run(capsys, "train", shapes_dir, "--out", tmp_path / "r", "--arch", arch, "--dry-run")
    cfg = json.loads(out[out.index("{"):])
    assert code == 0 and (cfg["lr_g"], cfg["lr_d"], cfg["beta1"]) == (lr, lr, beta1)
    code, out = run(capsys, "train", shapes_dir, "--out", tmp_path / "r", "--arch", arch, "--lr-d", "1e-3",
                    "--dry-run")
    assert json.loads(out[out.index("{"):])["lr_d"] == 1e-3
