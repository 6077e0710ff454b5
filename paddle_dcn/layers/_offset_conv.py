"""The offset/mask branch conv of DeformConv2D: a ``paddle.nn.Conv2D`` that runs on
``ops.plain_conv.conv2d_cpu`` in CPU dygraph.

Same parameters, state-dict keys, hooks and ``isinstance(..., nn.Conv2D)`` as the Conv2D it
replaces; only the kernel differs, and only where :func:`takes_cpu_path` says so. Under
``to_static`` (AST or SOT) and on GPU it is Paddle's conv2d, so saved programs and ONNX files
hold a standard conv.
"""
from __future__ import annotations

from typing import Optional

import paddle
from paddle import nn

from ..ops.channel_bias import in_cpu_dygraph
from ..ops.plain_conv import conv2d_cpu
from . import _args


def int_padding(conv: nn.Conv2D) -> Optional[list]:
    """nn.Conv2D's padding as ``[pad_h, pad_w]`` when it is one int or two ints, else None
    (``'same'``, per-side lists)."""
    pad = conv._padding
    if isinstance(pad, int) and not isinstance(pad, bool):
        return [pad, pad]
    if isinstance(pad, (list, tuple)) and len(pad) == 2 and all(
            isinstance(p, int) and not isinstance(p, bool) for p in pad):
        return list(pad)
    return None


def takes_cpu_path(conv: nn.Conv2D, x: paddle.Tensor) -> bool:
    """Whether ``conv(x)`` may run as ``conv2d_cpu``: dygraph (not traced by ``to_static``),
    x on the CPU in float32 or float64 (the weight's dtype), groups 1, zero padding given as
    ints, NCHW."""
    return (
        in_cpu_dygraph(x)
        and conv.weight.dtype == x.dtype
        and conv._groups == 1
        and conv._padding_mode == "zeros"
        and conv._data_format == "NCHW"
        and int_padding(conv) is not None
    )


class OffsetConv2D(nn.Conv2D):
    """``paddle.nn.Conv2D`` (same arguments) whose CPU dygraph forward is ``conv2d_cpu``."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if not takes_cpu_path(self, x):
            return super().forward(x)
        args = _args.OpArgs(stride=tuple(self._stride), padding=tuple(int_padding(self)),
                            dilation=tuple(self._dilation))
        return _args.run_op(conv2d_cpu, args, x, self.weight, self.bias)
