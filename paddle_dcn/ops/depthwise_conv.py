"""A channels-last depthwise convolution on paddle_dcn's CPU path: DCNv3's (and DCNv4's)
depthwise conv before the offset/weight projections.

Paddle's CPU conv2d runs a depthwise conv as one tiny GEMM per channel over NCHW, and the
layers work channels-last, so it also needed two transposes: forward+backward 1.8-3.6 ms at
InternImage-T's stages (batch 1), about 10 ms at dcnv3_r50's conv2_x. Here it is one pass
over the channels-last map (``custom_ops/kernels/depthwise_conv_cpu_cl.h``). CPU and dygraph
only: on GPU and under ``to_static``/export the layers keep Paddle's conv2d
(``layers/_aggregate_block.py`` decides), so saved models and ONNX files hold a standard conv.
"""
from __future__ import annotations

import paddle

from . import _checks
from ._library import load_library, run_op


def depthwise_conv2d_nhwc(
    x: paddle.Tensor,
    weight: paddle.Tensor,
    bias: paddle.Tensor,
    stride: _checks.IntPair = 1,
    padding: _checks.IntPair = 0,
    dilation: _checks.IntPair = 1,
) -> paddle.Tensor:
    """``conv2d(x.transpose(NCHW), weight, bias, stride, padding, dilation, groups=C)``
    transposed back, computed channels-last on the CPU; equal to it up to float rounding, with
    gradients for x, weight and bias (bitwise the same for any thread count).

    Args:
        x: ``[N, H, W, C]`` on the CPU, float32 or float64.
        weight: ``[C, 1, kh, kw]`` (nn.Conv2D's layout with ``groups=C``), x's dtype.
        bias: ``[C]``, x's dtype.
        stride, padding, dilation: int or ``(h, w)``; zero padding.

    Returns:
        ``[N, H_out, W_out, C]``, ``H_out = (H + 2*pad_h - (dil_h*(kh-1)+1)) // stride_h + 1``.
    """
    _checks.expect_cpu_float(x, "depthwise_conv2d_nhwc")
    shape = _checks.shape_of(x, "x")
    if len(shape) != 4:
        raise ValueError(f"x must be 4-D [N, H, W, C], got shape {shape}")
    c = shape[3]
    w_shape = _checks.shape_of(weight, "weight")
    if len(w_shape) != 4 or w_shape[0] != c or w_shape[1] != 1:
        raise ValueError(f"weight must be [C, 1, kh, kw] with C = {c} (x's channels), got shape {w_shape}")
    _checks.expect_shape("bias", _checks.shape_of(bias, "bias"), [c], "[C]")
    _checks.expect_dtype("weight", weight, x, "x")
    _checks.expect_dtype("bias", bias, x, "x")
    _checks.expect_same_place("x", x, weight=weight, bias=bias)
    strides = _checks.pair(stride, "stride", 1)
    paddings = _checks.pair(padding, "padding", 0)
    dilations = _checks.pair(dilation, "dilation", 1)
    for axis, (size, k, s, p, d) in enumerate(zip(shape[1:3], w_shape[2:], strides, paddings, dilations)):
        if size + 2 * p - (d * (k - 1) + 1) < 0:
            raise ValueError(f"x's {'HW'[axis]} = {size} is too small for kernel {k} with dilation {d} and "
                             f"padding {p}: the output would be empty")
    load_library()
    return run_op("pdcn_depthwise_conv2d_nhwc", x, weight, bias, strides, paddings, dilations)
