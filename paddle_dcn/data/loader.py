"""Batch sampling that is the same in one process and split across N, and the DataLoader."""
from __future__ import annotations

import json
from typing import Any, Callable, Iterator, List, Optional

import numpy as np
import paddle
from paddle.io.dataloader.collate import default_collate_fn

ERROR_KEY = "__pdcn_loader_error__"


class DataLoadError(RuntimeError):
    """A dataset item (or the batching of items) failed; the message names the dataset, the
    item index and the original error. Raised in the training process, never a hang."""


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


class _ItemError:
    """What a failed ``dataset[index]`` becomes inside the loader (the reader thread or a worker
    process, where an exception would be lost: Paddle 3.3's loader then hangs)."""

    def __init__(self, index: int, error: BaseException) -> None:
        self.index, self.text = int(index), f"{type(error).__name__}: {error}"


class _GuardedDataset(paddle.io.Dataset):
    """``dataset`` whose failing items come back as :class:`_ItemError` instead of raising."""

    def __init__(self, dataset: Any) -> None:
        super().__init__()
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except Exception as error:  # noqa: BLE001 - carried to the main process, re-raised there
            return _ItemError(index, error)


def _error_batch(text: str) -> dict:
    """A batch that only carries an error message (bytes as uint8: survives worker transport)."""
    return {ERROR_KEY: np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()}


def _guarded_collate(collate: Optional[Callable], name: str) -> Callable:
    collate = collate or default_collate_fn

    def run(samples: list) -> Any:
        failed = [s for s in samples if isinstance(s, _ItemError)]
        if failed:
            return _error_batch(json.dumps({"dataset": name, "index": failed[0].index, "error": failed[0].text,
                                            "failed_in_batch": len(failed)}))
        try:
            return collate(samples)
        except Exception as error:  # noqa: BLE001 - e.g. mixed image sizes
            return _error_batch(json.dumps({"dataset": name, "index": None,
                                            "error": f"{type(error).__name__}: {error}"}))

    return run


def _raise_if_error(batch: Any) -> Any:
    if isinstance(batch, dict) and ERROR_KEY in batch:
        data = batch[ERROR_KEY]
        raw = (data.numpy() if hasattr(data, "numpy") else np.asarray(data)).astype(np.uint8).tobytes()
        info = json.loads(raw.decode("utf-8"))
        where = (f"item {info['index']} of {info['dataset']}" if info["index"] is not None
                 else f"a batch of {info['dataset']}")
        more = f" ({info['failed_in_batch']} items of that batch failed)" if info.get("failed_in_batch", 1) > 1 else ""
        raise DataLoadError(f"loading {where} failed{more}: {info['error']}")
    return batch


class GuardedDataLoader:
    """A ``paddle.io.DataLoader`` whose dataset and batching errors stop the iteration at once
    with :class:`DataLoadError` in the calling process (with 0 or more workers), instead of
    Paddle's hang. Exposes ``batch_sampler`` and ``dataset`` (the user's) like the loader."""

    def __init__(self, dataset: Any, sampler: EpochBatchSampler, num_workers: int) -> None:
        self.dataset, self.batch_sampler = dataset, sampler
        name = type(dataset).__name__
        self._loader = paddle.io.DataLoader(_GuardedDataset(dataset), batch_sampler=sampler, num_workers=num_workers,
                                            use_shared_memory=False,
                                            collate_fn=_guarded_collate(getattr(dataset, "collate_fn", None), name))

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[Any]:
        for batch in self._loader:
            yield _raise_if_error(batch)


def build_dataloader(dataset: Any, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0,
                     world_size: int = 1, drop_last: bool = True, num_workers: int = 0) -> GuardedDataLoader:
    """A loader over ``dataset`` with an :class:`EpochBatchSampler` (``loader.batch_sampler``).

    A dataset with a ``collate_fn`` method (detection: images of different sizes, varying
    numbers of boxes) batches with it; others with Paddle's default stacking. A failing item
    or batch raises :class:`DataLoadError` naming the dataset, the index and the error."""
    if drop_last and len(dataset) < batch_size * world_size:
        raise ValueError(f"dataset has {len(dataset)} samples, fewer than one global batch of "
                         f"{batch_size * world_size}: lower loader.batch_size")
    sampler = EpochBatchSampler(len(dataset), batch_size, shuffle, seed, rank, world_size, drop_last)
    return GuardedDataLoader(dataset, sampler, num_workers)
