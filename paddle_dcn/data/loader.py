"""Batch sampling that is the same in one process and split across N, and the DataLoader."""
from __future__ import annotations

from typing import Any, Iterator, List

import numpy as np
import paddle


class EpochBatchSampler(paddle.io.BatchSampler):
    """Yields per-process index batches of an epoch-seeded permutation.

    The epoch's order is ``permutation(num_samples)`` drawn from ``(seed, epoch)`` (identity
    when ``shuffle`` is False). Global batch ``b`` is ``order[b*G:(b+1)*G]`` with
    ``G = batch_size * world_size``; process ``rank`` takes the ``rank``-th slice of
    ``batch_size`` of it. So one process with ``batch_size = G`` and ``world_size``
    processes with ``batch_size = G / world_size`` see the same global batches.

    With ``drop_last=False`` (evaluation) every sample is visited exactly once over all
    processes: the tail batch is split as evenly as possible (a process may get fewer).
    Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = True) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler arguments: batch_size={batch_size}, rank={rank}, "
                             f"world_size={world_size}")
        self.num_samples, self.batch_size = int(num_samples), int(batch_size)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)

    def __iter__(self) -> Iterator[List[int]]:
        order = self._order()
        g = self.batch_size * self.world_size
        full = self.num_samples // g
        for b in range(full):
            start = b * g + self.rank * self.batch_size
            yield order[start: start + self.batch_size].tolist()
        if not self.drop_last and full * g < self.num_samples:
            tail = order[full * g:]
            part = np.array_split(tail, self.world_size)[self.rank]
            if len(part):
                yield part.tolist()

    def __len__(self) -> int:
        g = self.batch_size * self.world_size
        full = self.num_samples // g
        if self.drop_last or full * g == self.num_samples:
            return full
        tail = self.num_samples - full * g
        return full + int(len(np.array_split(np.arange(tail), self.world_size)[self.rank]) > 0)


def build_dataloader(dataset: Any, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0,
                     world_size: int = 1, drop_last: bool = True,
                     num_workers: int = 0) -> paddle.io.DataLoader:
    """A DataLoader over ``dataset`` with an :class:`EpochBatchSampler` (``loader.batch_sampler``).

    A dataset with a ``collate_fn`` method (detection: images of different sizes, varying
    numbers of boxes) batches with it; others with Paddle's default stacking."""
    if drop_last and len(dataset) < batch_size * world_size:
        raise ValueError(f"dataset has {len(dataset)} samples, fewer than one global batch of "
                         f"{batch_size * world_size}: lower loader.batch_size")
    sampler = EpochBatchSampler(len(dataset), batch_size, shuffle, seed, rank, world_size, drop_last)
    return paddle.io.DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                                use_shared_memory=False, collate_fn=getattr(dataset, "collate_fn", None))
