"""Constructor-argument checks and dtype handling shared by the layers.

Every failure is a ValueError that names the argument and says what was expected.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import paddle

IntPair = Union[int, Sequence[int]]

_CPU_DTYPES = (paddle.float32, paddle.float64)
_GPU_DTYPES = (paddle.float32, paddle.float64, paddle.float16, paddle.bfloat16)


def positive_int(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def int_pair(value: IntPair, name: str, minimum: int) -> list[int]:
    """``value`` as ``[h, w]`` (an int means both); each an int >= ``minimum``."""
    values = list(value) if isinstance(value, (list, tuple)) else [value, value]
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints (h, w), got {value!r}")
    if any(v < minimum for v in values):
        bound = "positive" if minimum >= 1 else "non-negative"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return values


def positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def divisible(value: int, name: str, by: int, by_name: str) -> None:
    if value % by:
        raise ValueError(f"{name}={value} must be divisible by {by_name}={by}")


def nchw_only(data_format: str) -> None:
    if data_format != "NCHW":
        raise ValueError(
            f"data_format must be 'NCHW' (paddle_dcn layers are NCHW only), got {data_format!r}"
        )


def op_dtype(x) -> paddle.dtype:
    """The dtype a paddle_dcn op runs in for input ``x``: its own if the op has a kernel for
    it on x's device, else float32 (e.g. bfloat16 activations on CPU under ``auto_cast``)."""
    if x.dtype in _CPU_DTYPES:
        return x.dtype
    if x.dtype in _GPU_DTYPES and _on_gpu(x):
        return x.dtype
    return paddle.float32


def _on_gpu(x) -> bool:
    if not paddle.is_compiled_with_cuda():
        return False
    if isinstance(x, paddle.Tensor):
        return not x.place.is_cpu_place()
    return paddle.device.get_device().startswith("gpu")  # static-graph Value


def plain_layout(tensor: Optional[paddle.Tensor]) -> Optional[paddle.Tensor]:
    """``tensor`` routed through ``paddle.assign`` in a static graph (to_static, export);
    unchanged (no copy) in dygraph.

    Paddle Inference on CPU with oneDNN (its default) gives wrong results when a oneDNN
    kernel's output (conv2d, ...) goes straight into a custom op (measured with Paddle 3.3.1;
    evidently oneDNN's own memory layout reaches the op); through an op without a oneDNN
    kernel, such as ``assign``, first, the results are right. ``paddle_dcn.inference`` checks
    that every input of our ops in a saved model comes through such a copy (or is a
    parameter or a feed) before it leaves oneDNN on.
    """
    if tensor is None or paddle.in_dynamic_mode():
        return tensor
    return paddle.assign(tensor)


def cast(tensor: Optional[paddle.Tensor], dtype) -> Optional[paddle.Tensor]:
    """``tensor`` in ``dtype`` (None stays None; no op when it already is)."""
    if tensor is None or tensor.dtype == dtype:
        return tensor
    return paddle.cast(tensor, dtype)


def known_shape(x) -> list[int]:
    """``x.shape`` with -1 for every dimension unknown at trace time (under to_static a
    dynamic dimension may come back as a Value instead of -1)."""
    return [d if isinstance(d, int) else -1 for d in x.shape]


class OpArgs:
    """Non-tensor op arguments held in an object that to_static's SOT mode passes through
    untouched. Read from a layer as plain ints, SOT turns the ints that differ between
    layers of one class (stride 1 here, 2 there) into symbolic values, which our ops cannot
    take as attributes; a ``@unified`` function given this object reads them as Python values.
    (A plain class: SOT rebuilds dataclasses field by field.)"""

    def __init__(self, **values) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"OpArgs({self.__dict__})"
