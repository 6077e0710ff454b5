"""A plain 2-D convolution on paddle_dcn's CPU path: DeformConv2D's offset/mask branch.

On the CPU that branch (``C_in -> 3*dg*kh*kw`` channels, 3x3) costs more in Paddle's own
``conv2d`` than the layer's main conv (per-image im2col and GEMMs, a broadcast bias add and
its reduction): here it runs through the deformable op's chunk loop instead (channels-last
copy, integer-tap columns by contiguous copies, one GEMM per chunk, the bias folded in;
``custom_ops/kernels/conv_cpu_cl.h``). CPU and dygraph only: on GPU and under
``to_static``/export the layer keeps Paddle's conv2d (``layers/_offset_conv.py`` decides), so
saved models and ONNX files hold a standard conv.
"""
from __future__ import annotations

from typing import Optional

import paddle

from . import _checks, workspace
from ._library import load_library, run_op
from .deform_conv import check_conv_args


def conv2d_cpu(
    x: paddle.Tensor,
    weight: paddle.Tensor,
    bias: Optional[paddle.Tensor] = None,
    stride: _checks.IntPair = 1,
    padding: _checks.IntPair = 0,
    dilation: _checks.IntPair = 1,
) -> paddle.Tensor:
    """``paddle.nn.functional.conv2d(x, weight, bias, stride, padding, dilation)`` (groups 1,
    zero padding, NCHW) on the CPU, equal to it up to float rounding; gradients for x, weight
    and bias.

    Args:
        x: ``[N, C_in, H, W]`` on the CPU, float32 or float64.
        weight: ``[C_out, C_in, kh, kw]``, x's dtype.
        bias: ``[C_out]`` or None (zeros).
        stride, padding, dilation: int or ``(h, w)``.

    Returns:
        ``[N, C_out, H_out, W_out]``.
    """
    # deform_conv2d's argument checks with one group (weight [C_out, C_in, kh, kw])
    args = check_conv_args(x, weight, stride, padding, dilation, 1, 1)
    strides, paddings, dilations, c_out = args.strides, args.paddings, args.dilations, args.c_out
    _checks.expect_cpu_float(x, "conv2d_cpu")
    _checks.expect_dtype("weight", weight, x, "x")
    if bias is None:
        bias = paddle.zeros([c_out], dtype=x.dtype)
    else:
        _checks.expect_shape("bias", _checks.shape_of(bias, "bias"), [c_out], "[C_out]")
        _checks.expect_dtype("bias", bias, x, "x")
    _checks.expect_same_place("x", x, weight=weight, bias=bias)
    load_library()
    return run_op("pdcn_conv2d", x, weight, bias, strides, paddings, dilations, 1,
                  workspace.get_workspace_limit())
