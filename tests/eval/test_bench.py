"""`ganplug bench` on the CPU at tiny sizes: the table, the JSON, and numbers checked independently."""

from __future__ import annotations

import json

import torch
from torch import nn

from ganplug import checkpoint as ckpt
from ganplug.cli.app import main
from ganplug.eval.bench import gflop_per_image


def _conv_flops_by_hand(G: nn.Module, z_dim: int) -> float:
    """2 * Cin * Cout * k * k * H_in * W_in per transposed convolution, shapes from forward hooks."""
    total = [0]

    def hook(m, inputs, _out):
        _, _, h, w = inputs[0].shape
        total[0] += 2 * m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] * h * w // m.groups

    handles = [m.register_forward_hook(hook) for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    with torch.no_grad():
        G(torch.randn(1, z_dim))
    for h in handles:
        h.remove()
    return total[0] / 1e9


def test_flop_count_equals_the_hand_count(tiny_run):
    G = ckpt.load_generator(tiny_run).G
    assert gflop_per_image(G, (G.z_dim,), torch.device("cpu")) == _conv_flops_by_hand(G, G.z_dim)


def test_bench_cli_table_and_json(tiny_run, tmp_path, capsys, one_thread):
    out = tmp_path / "bench.json"
    code = main(["bench", str(tiny_run), "--device", "cpu", "--batch", "1,4", "--precision", "fp32,bf16",
                 "--warmup", "1", "--iters", "2", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "| precision | mode | batch |" in text and "measured matmul TFLOP/s" in text
    doc = json.loads(out.read_text())
    rows = {(r["precision"], r["batch"]): r for r in doc["rows"]}
    assert set(rows) == {("fp32", 1), ("fp32", 4), ("bf16", 1), ("bf16", 4)}
    for (precision, batch), r in rows.items():
        if r["error"]:
            assert precision == "bf16"  # a CPU without bf16 kernels reports, it does not crash
            continue
        assert r["images_per_s"] > 0 and r["end_to_end_images_per_s"] > 0
        assert abs(r["images_per_s"] - 1000 * batch / r["ms_per_batch"]) < 1e-6 * r["images_per_s"]
        assert abs(r["tflops"] - r["gflop_per_image"] * r["images_per_s"] / 1000) < 1e-9
        assert 0 < r["roofline"] < 5
    assert rows[("fp32", 4)]["max_abs_diff_uint8"] == 0  # fp32 against itself
    if not rows[("bf16", 4)]["error"]:
        assert rows[("bf16", 4)]["max_abs_diff_uint8"] <= 64  # the same image, a few levels off at most


def test_untrained_family_and_refusals(capsys):
    assert main(["bench", "--arch", "dcgan", "--size", "32", "--device", "cpu", "--batch", "2",
                 "--precision", "fp32", "--warmup", "0", "--iters", "1"]) == 0
    assert "untrained dcgan at 32 px" in capsys.readouterr().out
    for argv, said in ((["--cuda-graphs"], "--cuda-graphs needs --device cuda"),
                       (["--precision", "fp64"], "--precision fp64"),
                       (["--batch", "0"], "--batch"),):
        code = main(["bench", "--arch", "dcgan", "--size", "32", "--device", "cpu", *argv])
        err = capsys.readouterr().err
        assert code == 2 and said in " ".join(err.split()) and "Traceback" not in err
    assert main(["bench", "--device", "cpu"]) == 2
