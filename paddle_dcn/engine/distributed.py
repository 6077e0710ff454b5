"""Process-group set-up for ``python -m paddle.distributed.launch`` (CPU gloo or GPU NCCL)."""
from __future__ import annotations

import os
from typing import Tuple

import paddle
import paddle.distributed as dist

_initialised = False


def world_size_from_env() -> int:
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def init_distributed() -> Tuple[int, int]:
    """Initialises the parallel environment when launched with several processes.

    Returns ``(rank, world_size)``; ``(0, 1)`` for a plain ``python tools/train.py``.
    """
    global _initialised
    world = world_size_from_env()
    if world > 1 and not _initialised:
        dist.init_parallel_env()
        _initialised = True
    return (dist.get_rank() if world > 1 else 0), world


def is_main_process() -> bool:
    return world_size_from_env() == 1 or dist.get_rank() == 0


def all_reduce_sum(values: list) -> list:
    """Sums a list of floats over all processes (identity in a single process)."""
    if world_size_from_env() == 1:
        return list(values)
    t = paddle.to_tensor(values, dtype="float64")
    dist.all_reduce(t)
    return t.numpy().tolist()
