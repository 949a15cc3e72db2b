"""frozen(D): no weight gradients for D inside, each parameter's own flag back afterwards."""

from __future__ import annotations

import torch
from torch import nn

from ganplug.train.frozen import frozen


def test_frozen_blocks_d_grads_passes_g_grads_and_restores_mixed_flags():
    g, d = nn.Linear(3, 3), nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    d[0].requires_grad_(False)  # a Freeze-D block: must stay frozen afterwards
    with frozen(d):
        d(g(torch.randn(4, 3))).sum().backward()
    assert g.weight.grad is not None and all(p.grad is None for p in d.parameters())
    assert [p.requires_grad for p in d.parameters()] == [False, False, True, True]
