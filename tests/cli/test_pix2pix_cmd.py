"""pix2pix as a user runs it: prep pairs, train, translate on the command line and through the server."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganplug.cli.app import main
from tests.conftest import write_shapes

TINY = ["--batch", "8", "--base-channels", "8", "--device", "cpu", "--precision", "fp32", "--no-channels-last",
        "--sample-every", "100", "--ckpt-every", "100"]


def _on_white(path: Path) -> np.ndarray:
    """The test shapes are RGBA on transparency; training and translation see them on white."""
    with Image.open(path) as im:
        return np.asarray(Image.alpha_composite(Image.new("RGBA", im.size, (255,) * 4), im.convert("RGBA"))
                          .convert("RGB"))


def _inverted_copies(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        Image.fromarray(255 - _on_white(f)).save(dst / f.name)
    return dst


@pytest.fixture(scope="module")
def p2p_run(tmp_path_factory) -> Path:
    """A pix2pix model trained for 150 steps to turn shapes on white into their colour negatives."""
    root = tmp_path_factory.mktemp("p2p")
    write_shapes(root / "src" / "a", 48, size=32, seed=0)
    _inverted_copies(root / "src" / "a", root / "src" / "b")
    assert main(["prep", str(root / "src"), str(root / "data"), "--size", "32", "--pairs", "a,b"]) == 0
    run = root / "run"
    assert main(["train", str(root / "data"), "--arch", "pix2pix", "--out", str(run), "--steps", "150", *TINY]) == 0
    return run


def _fresh_input(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A shape the model never saw, and the negative it should produce."""
    folder = write_shapes(tmp_path / "new", 1, size=32, seed=99)
    path = next(folder.iterdir())
    return path, 255 - _on_white(path).astype(np.float64)


def test_translate_learns_the_mapping_for_an_unseen_input(p2p_run, tmp_path, capsys):
    src, want = _fresh_input(tmp_path)
    out = tmp_path / "neg.png"
    assert main(["translate", str(p2p_run), str(src), "--out", str(out), "--device", "cpu"]) == 0
    got = np.asarray(Image.open(out)).astype(np.float64)
    err = np.abs(got - want).mean()
    copy_err = np.abs(_on_white(src) - want).mean()  # what a model that copies its input would score
    assert err < 0.25 * copy_err and err < 40
    grid = sorted((p2p_run / "samples").glob("step-*.png"))[-1]
    assert Image.open(grid).size == (2 + 6 * 34, 2 + 8 * 34)  # 16 (input, output, target) triplets, 2 a row


def test_server_translates_like_the_command_line(p2p_run, tmp_path):
    from tests.serve.serve_helpers import make_client

    src, _ = _fresh_input(tmp_path)
    assert main(["translate", str(p2p_run), str(src), "--out", str(tmp_path / "cli.png"), "--device", "cpu"]) == 0
    with make_client(models=(p2p_run,)) as client:
        info = client.get("/v1/models").json()["models"][0]
        assert info["arch"] == "pix2pix" and info["supports"]["translate"] and not info["supports"]["generate"]
        r = client.post("/v1/translate", json={"image": base64.b64encode(src.read_bytes()).decode()})
        for kind, body in (("generate", {"seeds": [1]}), ("variations", {"seed": 1}),
                           ("interpolate", {"seeds": [1, 2], "frames": 3})):
            refused = client.post(f"/v1/{kind}", json=body)
            assert refused.status_code == 422 and "/v1/translate" in refused.json()["error"], kind
    assert r.status_code == 200, r.text
    served = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]["png"]))))
    np.testing.assert_array_equal(served, np.asarray(Image.open(tmp_path / "cli.png")))


def test_translate_several_inputs_into_a_folder(p2p_run, tmp_path):
    folder = write_shapes(tmp_path / "many", 3, size=40, seed=5)
    outdir = tmp_path / "outs"
    assert main(["translate", str(p2p_run), *map(str, sorted(folder.iterdir())), "--outdir", str(outdir),
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in outdir.iterdir()) == sorted(p.name for p in folder.iterdir())
    assert {Image.open(p).size for p in outdir.iterdir()} == {(32, 32)}  # the model's size
    # again without --force: refused, nothing overwritten
    before = {p: p.read_bytes() for p in outdir.iterdir()}
    assert main(["translate", str(p2p_run), *map(str, sorted(folder.iterdir())), "--outdir", str(outdir)]) == 2
    assert all(p.read_bytes() == b for p, b in before.items())


def test_wrong_model_kinds_and_inputs_are_exit_2(p2p_run, tiny_run, shapes_dir, tmp_path, capsys):
    src, _ = _fresh_input(tmp_path)
    cases = [
        (["translate", tiny_run, src, "--out", tmp_path / "x.png"], "--arch pix2pix"),
        (["generate", p2p_run, "--out", tmp_path / "g.png"], "ganplug translate"),
        (["translate", p2p_run, src, src, "--out", tmp_path / "y.png"], "--outdir"),
        (["translate", p2p_run, shapes_dir / "nope.png", "--out", tmp_path / "z.png"], "does not exist"),
        (["train", shapes_dir, "--arch", "pix2pix", "--out", tmp_path / "r", "--steps", "1", *TINY], "--pairs edges"),
    ]
    for argv, needle in cases:
        code = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert code == 2 and needle in err, (argv, err)
    assert not any((tmp_path / n).exists() for n in ("x.png", "g.png", "y.png", "z.png"))
