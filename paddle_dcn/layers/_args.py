"""What the layers add to ``ops._checks`` (where every argument check and the dtype policy
live): the NCHW-only rule, casting, trace-time shapes, and the one way a layer calls an op
(:func:`run_op` with its non-tensor arguments in an :class:`OpArgs`).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import paddle
from paddle.jit.marker import unified

from ..ops import _checks


def nchw_only(data_format: str) -> None:
    if data_format != "NCHW":
        raise ValueError(
            f"data_format must be 'NCHW' (paddle_dcn layers are NCHW only), got {data_format!r}"
        )


MASK_INITS = (0.5, 1.0)


def mask_init(value) -> float:
    """The initial mask value of a modulated (v2) layer: 0.5 (``sigmoid``, the DCNv2 paper's)
    or 1.0 (``2*sigmoid``, which starts equal to the plain conv or pool)."""
    if value not in MASK_INITS or isinstance(value, bool):
        raise ValueError(
            f"mask_init must be 0.5 (sigmoid, DCNv2 paper) or 1.0 (2*sigmoid, starts "
            f"equal to the conv), got {value!r}"
        )
    return float(value)


def cast(tensor: Optional[paddle.Tensor], dtype) -> Optional[paddle.Tensor]:
    """``tensor`` in ``dtype`` (None stays None; no op when it already is)."""
    if tensor is None or tensor.dtype == dtype:
        return tensor
    return paddle.cast(tensor, dtype)


def known_shape(x) -> list[int]:
    """``x.shape`` with -1 for every dimension unknown at trace time (under to_static a
    dynamic dimension may come back as a Value instead of -1)."""
    return [d if isinstance(d, int) else -1 for d in x.shape]


def check_input_channels(x, channels: int, name: str = "in_channels", any_rank: bool = False,
                         layout_note: str = "") -> None:
    """ValueError ``x must have shape [N, <name>=<channels>, H, W]<layout_note>, got <shape>``
    unless ``x`` is 4-D with ``channels`` channels (or a channel count unknown at trace time).
    ``any_rank``: a tensor that is not 4-D passes (the caller's next step names it)."""
    if len(x.shape) != 4:
        if any_rank:
            return
    elif known_shape(x)[1] in (-1, channels):
        return
    raise ValueError(f"x must have shape [N, {name}={channels}, H, W]{layout_note}, got {list(x.shape)}")


class OpArgs:
    """Non-tensor op arguments held in an object that to_static's SOT mode passes through
    untouched. Read from a layer as plain ints, SOT turns the ints that differ between
    layers of one class (stride 1 here, 2 there) into symbolic values, which our ops cannot
    take as attributes; :func:`run_op` (``@unified``) given this object reads them as Python
    values. (A plain class: SOT rebuilds dataclasses field by field.)"""

    def __init__(self, **values) -> None:
        self.__dict__.update(values)

    def kwargs(self) -> dict:
        """The values as keyword arguments (tuples as lists, as the ops take them)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    def __repr__(self) -> str:
        return f"OpArgs({self.__dict__})"


def _in(tensor, dtype):
    """A floating tensor in ``dtype``; None and integer tensors (``boxes_num``) as they are."""
    if tensor is None or tensor.dtype not in _checks.FLOAT_DTYPES:
        return tensor
    return cast(tensor, dtype)


@unified  # plain Python in dygraph and on static Values under to_static (see OpArgs)
def run_op(op: Callable[..., Any], args: Optional[OpArgs], *tensors, **named) -> paddle.Tensor:
    """``op(*tensors, **named, **args.kwargs())`` with every floating tensor in the dtype the
    op runs in for the first one (``ops._checks.op_dtype``: its own where the op has a kernel
    for it, else float32, e.g. bfloat16 activations on CPU under ``auto_cast``). The one
    wrapper between the layers and the ops."""
    dtype = _checks.op_dtype(tensors[0])
    return op(*[_in(t, dtype) for t in tensors], **{k: _in(v, dtype) for k, v in named.items()},
              **(args.kwargs() if args is not None else {}))
