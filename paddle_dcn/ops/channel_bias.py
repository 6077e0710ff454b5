"""A per-channel bias add, ``x + bias.reshape([1, C, 1, ...])``: the deformable op's bias.

In CPU dygraph it runs as ``pdcn_add_channel_bias``, one pass forward and one backward (the
bias gradient a fixed-order sum, so independent of the thread count), where Paddle's
broadcast add and its gradient took about as long as a third of the op itself at dcn_r50's
shapes (4.1 ms forward+backward for a 32x16x24x24 output, one thread). On GPU and under
``to_static``/export it is Paddle's add, so saved programs and ONNX files hold a standard add.
"""
from __future__ import annotations

import paddle
from paddle.base.dygraph.base import in_sot_simulation_mode, in_to_static_mode

from . import _checks
from ._library import load_library, run_op


def eager_on_cpu(x: paddle.Tensor) -> bool:
    """Whether ``x`` is a CPU tensor in plain dygraph: not traced by ``to_static``, neither AST
    (static mode) nor SOT (which traces in dynamic mode). The traced checks come first, so SOT
    never reads a place, which breaks its graph."""
    return (
        not in_sot_simulation_mode()
        and not in_to_static_mode()
        and paddle.in_dynamic_mode()
        and isinstance(x, paddle.Tensor)
        and x.place.is_cpu_place()
    )


def in_cpu_dygraph(x: paddle.Tensor) -> bool:
    """Whether ``x`` is a CPU tensor of a supported dtype in plain dygraph (:func:`eager_on_cpu`),
    so a CPU-only library op may stand in for Paddle's own."""
    return eager_on_cpu(x) and x.dtype in _checks.CPU_DTYPES


def add_channel_bias(x: paddle.Tensor, bias: paddle.Tensor) -> paddle.Tensor:
    """``x`` ``[N, C, ...]`` plus ``bias`` ``[C]`` (x's dtype and place) on every channel's
    plane; gradients for both. The caller has checked the shapes."""
    if in_cpu_dygraph(x) and bias.dtype == x.dtype:
        load_library()
        return run_op("pdcn_add_channel_bias", x, bias)
    return x + bias.reshape([1, -1] + [1] * (len(x.shape) - 2))
