"""Argument normalisation and shape checks shared by the functional ops.

Every failure is a ValueError (or TypeError) that names the argument and the
expected shape. Dimensions that are unknown (-1, static graphs) are not checked.
"""
from __future__ import annotations

from typing import Sequence, Union

import paddle

IntPair = Union[int, Sequence[int]]

CPU_DTYPES = (paddle.float32, paddle.float64)
GPU_DTYPES = (paddle.float32, paddle.float64, paddle.float16, paddle.bfloat16)


def pair(value: IntPair, name: str, minimum: int) -> list[int]:
    """``value`` as ``[h, w]``; an int means both. Each must be an int >= minimum."""
    if isinstance(value, (list, tuple)):
        values = list(value)
    else:
        values = [value, value]
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in values):
        bound = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return values


def positive_int(value: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def shape_of(tensor: paddle.Tensor, name: str) -> list[int]:
    if not isinstance(tensor, (paddle.Tensor, paddle.pir.Value)):
        raise TypeError(f"{name} must be a paddle.Tensor, got {type(tensor).__name__}")
    return list(tensor.shape)


def expect_shape(name: str, actual: Sequence[int], expected: Sequence[int], layout: str) -> None:
    """Raises unless ``actual`` matches ``expected`` (-1 on either side matches anything)."""
    ok = len(actual) == len(expected) and all(
        a == e or a < 0 or e < 0 for a, e in zip(actual, expected)
    )
    if not ok:
        shown = [("?" if e < 0 else e) for e in expected]
        raise ValueError(
            f"{name} must have shape {layout} = {shown}, got {list(actual)}"
        )


def expect_rank(name: str, shape: Sequence[int], rank: int, layout: str) -> None:
    if len(shape) != rank:
        raise ValueError(f"{name} must be a {rank}-D tensor {layout}, got shape {list(shape)}")


def expect_dtype(name: str, tensor: paddle.Tensor, reference: paddle.Tensor, ref_name: str) -> None:
    if tensor.dtype != reference.dtype:
        raise ValueError(
            f"{name} must have the dtype of {ref_name} ({reference.dtype}), got {tensor.dtype}"
        )


def expect_supported_dtype(name: str, tensor: paddle.Tensor) -> None:
    if isinstance(tensor, paddle.pir.Value):  # static graph: runs on the current device
        on_cpu = not paddle.device.get_device().startswith("gpu")
    else:
        on_cpu = tensor.place.is_cpu_place()
    allowed = CPU_DTYPES if on_cpu else GPU_DTYPES
    if tensor.dtype not in allowed:
        where = "CPU" if on_cpu else "GPU"
        raise ValueError(
            f"{name} has dtype {tensor.dtype}; paddle_dcn ops on {where} support "
            f"{', '.join(str(d).replace('paddle.', '') for d in allowed)}"
        )


def expect_same_place(ref_name: str, reference, **named) -> None:
    """Raises unless every tensor in ``named`` (None skipped) is on the place of ``reference``.

    Only dygraph tensors carry a place; static-graph values are placed by the executor.
    """
    if not isinstance(reference, paddle.Tensor):
        return
    for name, tensor in named.items():
        if tensor is None or not hasattr(tensor, "place"):
            continue
        if tensor.place != reference.place:
            raise ValueError(
                f"{name} is on {tensor.place} but {ref_name} is on {reference.place}: "
                f"paddle_dcn ops need all tensor inputs on one device (use .to() or "
                f"paddle.to_tensor(..., place=...) to move them)"
            )
