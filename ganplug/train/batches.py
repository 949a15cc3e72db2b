"""Minibatches from a prepared dataset: index gathers, never file decoding.

Batch k is a pure function of (seed, k): epochs are permutations drawn from (seed, epoch), flips from
(seed, k). Resuming at step k therefore continues with exactly the batches an uninterrupted run sees,
with no sampler state to save. In a multi-process run (ganplug.train.distributed) each rank computes the
global batch's indices and flips and gathers only its own rows (`shard`), so the W shards of batch k are,
row for row, the one-process batch k.
"""

from __future__ import annotations

import numpy as np
import torch

from ganplug.data.dataset import ImageDataset
from ganplug.device import Runtime

IN_RAM_LIMIT = 2 << 30  # datasets up to 2 GiB are copied into RAM; larger ones stay memory-mapped


class BatchSource:
    """`pairs=True` (image-to-image): each batch is cat([A, B], dim=1), both sides flipped together."""

    def __init__(self, dataset: ImageDataset, batch: int, *, seed: int, mirror: bool, runtime: Runtime,
                 pairs: bool = False, shard: slice | torch.Tensor | None = None):
        """`shard`: the rows of each global batch this process trains on (None: all of them)."""
        self.n = len(dataset)
        self.shard = shard
        self.batch, self.seed, self.mirror, self.rt = batch, seed, mirror, runtime
        self.dataset = dataset
        self.pairs = pairs
        self.ram: torch.Tensor | None = None
        arrays = [dataset.pairs_a, dataset.images] if pairs else [dataset.images]
        if sum(a.nbytes for a in arrays) <= IN_RAM_LIMIT:  # writable copies, A channels first
            self.ram = torch.cat([torch.from_numpy(np.array(a)).permute(0, 3, 1, 2) for a in arrays], dim=1)
        self._perm_epoch = -1
        self._perm: torch.Tensor | None = None

    def _epoch_perm(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=g), epoch
        return self._perm

    def indices(self, k: int) -> torch.Tensor:
        """Row indices of batch k (wrapping across epoch boundaries)."""
        start = k * self.batch
        out, filled = [], 0
        while filled < self.batch:
            epoch, pos = divmod(start + filled, self.n)
            take = min(self.batch - filled, self.n - pos)
            out.append(self._epoch_perm(epoch)[pos : pos + take])
            filled += take
        return torch.cat(out)

    def get(self, k: int) -> torch.Tensor:
        """Batch k (this process's shard of it) as float images in [-1, 1] on the run's device."""
        idx = self.indices(k)
        flip = None
        if self.mirror:  # drawn for the whole batch, whatever the shard
            g = torch.Generator().manual_seed(self.seed * 7_919 + k)
            flip = torch.rand(len(idx), generator=g) < 0.5
        if self.shard is not None:
            idx = idx[self.shard]
            flip = None if flip is None else flip[self.shard]
        if self.ram is not None:
            x = self.ram.index_select(0, idx)
        elif self.pairs:
            x = torch.cat(self.dataset.batch_pairs(idx.numpy()), dim=1)
        else:
            x = self.dataset.batch(idx.numpy())
        x = self.rt.prepare_images(x)
        x = x.float().mul_(1 / 127.5).sub_(1.0)
        if flip is not None:
            x = torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)
        if self.rt.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x
