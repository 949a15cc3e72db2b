"""ADA controller (p follows the sign of D on reals) and the non-leaking property of the augmentations."""

from __future__ import annotations

import json

import pytest
import torch

from ganplug.train.augment import OPS, AdaController


def test_p_rises_when_d_always_says_real():
    ada = AdaController(target=0.6, ada_kimg=500, interval=4)
    for i in range(3):
        ada.observe(torch.full((32,), 3.0))
        assert ada.p == 0.0, f"p moved before the interval ended (update {i + 1})"
    ada.observe(torch.full((32,), 3.0))
    assert ada.p == pytest.approx(32 * 4 / (500 * 1000))  # sign(1 - 0.6) * batch * interval / (kimg * 1000)
    last = ada.p
    for _ in range(40):
        ada.observe(torch.full((32,), 0.5))
        assert ada.p >= last
        last = ada.p
    assert ada.p == pytest.approx(11 * 32 * 4 / (500 * 1000))
    assert ada.last_rt == 1.0


def test_p_falls_when_d_always_says_fake_and_stops_at_zero():
    ada = AdaController(p=0.001, ada_kimg=100, interval=1)
    ada.observe(-torch.ones(50))
    assert ada.p == pytest.approx(0.001 - 50 / 100_000)
    for _ in range(5):
        ada.observe(-torch.ones(50))
    assert ada.p == 0.0


def test_p_is_capped_and_holds_at_target():
    ada = AdaController(ada_kimg=0.01, interval=1, max_p=0.7)
    for _ in range(10):
        ada.observe(torch.ones(64))
    assert ada.p == 0.7
    at_target = AdaController(p=0.3, target=0.5, interval=1)
    at_target.observe(torch.tensor([1.0, 1.0, 1.0, -1.0]))  # r_t = 0.5 exactly
    assert at_target.p == 0.3


def test_state_round_trips_through_json_mid_interval():
    a = AdaController(interval=4, ada_kimg=1)
    for _ in range(6):  # one adjustment plus half an interval accumulated
        a.observe(torch.randn(8) + 1.0)
    b = AdaController(interval=4, ada_kimg=1)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.state_dict() == a.state_dict()
    g = torch.Generator().manual_seed(0)
    for _ in range(7):
        logits = torch.randn(8, generator=g) + 0.2
        a.observe(logits)
        b.observe(logits)
        assert a.p == b.p


def _transition_matrix(op: str, p: float, n: int = 20000) -> torch.Tensor:
    """Empirical P(output is transform j | input) for the discrete group the op draws from.

    The input is an asymmetric 4x4 image; each output is matched to the rotation/flip it equals."""
    base = torch.arange(16.0).reshape(1, 1, 4, 4)
    if op == "rot90":
        group = [torch.rot90(base, k, dims=(2, 3)) for k in range(4)]
    else:
        group = [base, base.flip(3)]
    y = OPS[op](base.repeat(n, 1, 1, 1), p, torch.Generator().manual_seed(0))
    freq = torch.stack([(y == g).flatten(1).all(1).float().mean() for g in group])
    assert freq.sum().item() == pytest.approx(1.0)
    # The law of the output orientation is a circulant mixing of the input's: row j is freq shifted by j.
    k = len(group)
    return torch.stack([freq.roll(j) for j in range(k)]).double()


@pytest.mark.parametrize("op", ["rot90", "xflip"])
@pytest.mark.parametrize("p", [0.2, 0.4, 0.6])
def test_discrete_ops_do_not_leak_up_to_p_0_6(op, p):
    """Non-leaking (ADA sec. 2.2): the augmented law must determine the clean law, i.e. the mixing matrix
    is invertible, and the identity stays the single most likely outcome."""
    m = _transition_matrix(op, p)
    freq = m[0]
    assert freq.argmax() == 0 and freq[0] > freq[1:].max() + 0.1
    assert torch.linalg.cond(m) < 10


def test_rotations_at_p_1_would_leak():
    """The check above can fail: with p = 1 the four orientations are equally likely and a dataset of
    upright images is indistinguishable from one rotated at random (the matrix is singular)."""
    m = _transition_matrix("rot90", 1.0)
    assert torch.linalg.cond(m) > 10
