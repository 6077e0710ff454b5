"""Argument checks shared by the functional ops and the layers: the one place for them.

Every failure is a ValueError (or TypeError) that names the argument and the
expected shape. Dimensions that are unknown (-1, static graphs) are not checked.
Scalars: :func:`pair`, :func:`positive_int`, :func:`integer`, :func:`number`,
:func:`positive_number`, :func:`boolean`, :func:`divisible`. The dtype policy:
``CPU_DTYPES`` / ``GPU_DTYPES`` (:func:`supported_dtypes`), :func:`expect_supported_dtype`
(ops refuse other dtypes) and :func:`op_dtype` (layers cast to a dtype the op runs in).
"""
from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import paddle

IntPair = Union[int, Sequence[int]]

CPU_DTYPES = (paddle.float32, paddle.float64)
GPU_DTYPES = (paddle.float32, paddle.float64, paddle.float16, paddle.bfloat16)
FLOAT_DTYPES = GPU_DTYPES  # every floating dtype an op input (boxes) may have


# The custom ops' integer attributes are int32.
INT32_MAX = 2**31 - 1


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _within_int32(values: Sequence[int], name: str, value) -> None:
    if any(abs(int(v)) > INT32_MAX for v in values):
        raise ValueError(f"{name} must be at most {INT32_MAX} in magnitude (the ops' int32 attributes), "
                         f"got {value!r}")


def pair(value: IntPair, name: str, minimum: int) -> list[int]:
    """``value`` as ``[h, w]``; an int means both. Each must be an int >= minimum."""
    values = list(value) if isinstance(value, (list, tuple)) else [value, value]
    if len(values) != 2 or not all(_is_int(v) for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints (h, w), got {value!r}")
    if any(v < minimum for v in values):
        bound = "positive" if minimum >= 1 else "non-negative"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    _within_int32(values, name, value)
    return [int(v) for v in values]


def positive_int(value: int, name: str) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    _within_int32([value], name, value)
    return int(value)


def integer(value: int, name: str) -> int:
    if not _is_int(value):
        raise ValueError(f"{name} must be an int, got {value!r}")
    _within_int32([value], name, value)
    return int(value)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def number(value: float, name: str, float32: bool = False) -> float:
    """``value`` as a finite float (ints and numpy scalars too, not bools). ``float32``: the
    op carries it as a float32 attribute, so it must also be within float32's range and, if
    not zero, not round to zero there (else the op would get inf or 0: a silent wrong
    answer)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value_f = float(value)
    if not math.isfinite(value_f):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if float32 and abs(value_f) > _FLOAT32_MAX:
        raise ValueError(f"{name} must be within float32's range (|{name}| <= {_FLOAT32_MAX:.7g}): "
                         f"the op takes it as a float32 attribute; got {value!r}")
    if float32 and value_f != 0 and np.float32(value_f) == 0:
        raise ValueError(f"{name} = {value!r} rounds to zero in float32 (the op takes it as a float32 "
                         "attribute); the smallest nonzero magnitude is about 1.4e-45")
    return value_f


def positive_number(value: float, name: str, float32: bool = False) -> float:
    value_f = number(value, name, float32)
    if value_f <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value_f


def boolean(value: bool, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def divisible(value: int, name: str, by: int, by_name: str) -> None:
    if value % by:
        raise ValueError(f"{name}={value} must be divisible by {by_name}={by}")


def out_size(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    """Conv output length (-1 when ``size`` is unknown)."""
    if size < 0:
        return -1
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def conv_out_hw(name: str, h: int, w: int, kernel: Sequence[int], strides: Sequence[int],
                paddings: Sequence[int], dilations: Sequence[int],
                kernel_name: str = "kernel") -> tuple[int, int]:
    """``(H_out, W_out)`` of a conv over ``name``'s ``h x w`` map (-1 where unknown); a
    ValueError naming the sizes when a known output would be empty."""
    out_h = out_size(h, kernel[0], strides[0], paddings[0], dilations[0])
    out_w = out_size(w, kernel[1], strides[1], paddings[1], dilations[1])
    if (h >= 0 and out_h < 1) or (w >= 0 and out_w < 1):
        raise ValueError(
            f"{name} spatial size {[h, w]} is too small for {kernel_name} {list(kernel)} with "
            f"padding {paddings}, dilation {dilations} and stride {strides}"
        )
    return out_h, out_w


def expect_tensor(tensor, name: str) -> None:
    """TypeError unless ``tensor`` is a paddle.Tensor (or a traced value)."""
    if not isinstance(tensor, (paddle.Tensor, paddle.pir.Value)):
        raise TypeError(f"{name} must be a paddle.Tensor, got {type(tensor).__name__}")


def shape_of(tensor: paddle.Tensor, name: str) -> list[int]:
    expect_tensor(tensor, name)
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


def expect_nonempty_map(name: str, shape: Sequence[int], layout: str) -> None:
    """A [N, C, H, W] shape's H and W are at least 1 (-1, unknown while tracing, passes)."""
    if shape[2] == 0 or shape[3] == 0:
        raise ValueError(f"{name} must have a non-empty feature map (H, W >= 1) {layout}, got shape {list(shape)}")


def expect_dtype(name: str, tensor: paddle.Tensor, reference: paddle.Tensor, ref_name: str) -> None:
    expect_tensor(tensor, name)
    if tensor.dtype != reference.dtype:
        raise ValueError(
            f"{name} must have the dtype of {ref_name} ({reference.dtype}), got {tensor.dtype}"
        )


def on_gpu(tensor) -> bool:
    """Whether ``tensor`` runs on a GPU: its place in dygraph, the current device for a
    static-graph Value."""
    if isinstance(tensor, paddle.pir.Value):  # static graph: runs on the current device
        return paddle.device.get_device().startswith("gpu")
    return not tensor.place.is_cpu_place()


def supported_dtypes(tensor) -> tuple:
    """The dtypes paddle_dcn ops have kernels for where ``tensor`` is."""
    return GPU_DTYPES if on_gpu(tensor) else CPU_DTYPES


def expect_supported_dtype(name: str, tensor: paddle.Tensor) -> None:
    expect_tensor(tensor, name)
    allowed = supported_dtypes(tensor)
    if tensor.dtype not in allowed:
        where = "GPU" if allowed is GPU_DTYPES else "CPU"
        raise ValueError(
            f"{name} has dtype {tensor.dtype}; paddle_dcn ops on {where} support "
            f"{', '.join(str(d).replace('paddle.', '') for d in allowed)}"
        )


def op_dtype(x) -> paddle.dtype:
    """The dtype a paddle_dcn op runs in for input ``x`` (what layers cast to): its own if the
    op has a kernel for it on x's device, else float32 (e.g. bfloat16 activations on CPU under
    ``auto_cast``)."""
    return x.dtype if x.dtype in supported_dtypes(x) else paddle.float32


def _first_foreign(reference, named: dict, host_allowed: bool):
    """``(name, tensor)`` of the first dygraph tensor in ``named`` (None skipped) that is not on
    the place of ``reference`` (nor in host memory, with ``host_allowed``), else None; None for
    a static-graph reference (only dygraph tensors carry a place, the executor places the rest)."""
    if not isinstance(reference, paddle.Tensor):
        return None
    for name, tensor in named.items():
        if tensor is None or not hasattr(tensor, "place"):
            continue
        if tensor.place != reference.place and not (host_allowed and tensor.place.is_cpu_place()):
            return name, tensor
    return None


def expect_same_place(ref_name: str, reference, **named) -> None:
    """Raises unless every tensor in ``named`` (None skipped) is on the place of ``reference``.

    Only dygraph tensors carry a place; static-graph values are placed by the executor.
    """
    foreign = _first_foreign(reference, named, host_allowed=False)
    if foreign is not None:
        name, tensor = foreign
        raise ValueError(
            f"{name} is on {tensor.place} but {ref_name} is on {reference.place}: "
            f"paddle_dcn ops need all tensor inputs on one device (use .to() or "
            f"paddle.to_tensor(..., place=...) to move them)"
        )


def expect_host_or_same_place(ref_name: str, reference, **named) -> None:
    """Raises unless every tensor in ``named`` is in host memory or on the place of ``reference``
    (the RoI ops' boxes and boxes_num: a copy from another GPU would not wait for the streams
    that write them there)."""
    foreign = _first_foreign(reference, named, host_allowed=True)
    if foreign is not None:
        name, tensor = foreign
        raise ValueError(
            f"{name} is on {tensor.place} but {ref_name} is on {reference.place}: {name} must be in "
            f"host memory or on {ref_name}'s device"
        )


def expect_cpu_float(x, op_name: str) -> None:
    """Raises unless ``x`` is a CPU tensor in float32 or float64 (the CPU-only ops)."""
    expect_tensor(x, "x")
    if not x.place.is_cpu_place():
        raise ValueError(f"x must be on the CPU ({op_name} is a CPU op), got {x.place}")
    if x.dtype not in CPU_DTYPES:
        raise ValueError(f"x has dtype {x.dtype}; {op_name} supports float32 and float64")
