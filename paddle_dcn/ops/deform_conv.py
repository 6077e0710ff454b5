"""Deformable convolution v1/v2, a drop-in for ``paddle.vision.ops.deform_conv2d``."""
from __future__ import annotations

from typing import NamedTuple, Optional

import paddle
from paddle.jit.marker import unified

from . import _checks, workspace
from .channel_bias import add_channel_bias
from ._library import load_library, run_op


class ConvArgs(NamedTuple):
    """The checked non-tensor arguments and derived sizes of a deformable conv call."""
    strides: list
    paddings: list
    dilations: list
    groups: int
    deformable_groups: int
    n: int
    c_out: int
    out_h: int
    out_w: int
    points: int  # deformable_groups * kh * kw


@unified  # plain Python over shapes, as deform_conv2d
def check_conv_args(x, weight, stride, padding, dilation, groups: int,
                    deformable_groups: int) -> ConvArgs:
    """Checks x ``[N, C_in, H, W]``, weight ``[C_out, C_in/groups, kh, kw]`` and the conv
    arguments of ``deform_conv2d`` and its packed form (ValueError naming the argument)."""
    strides = _checks.pair(stride, "stride", 1)
    paddings = _checks.pair(padding, "padding", 0)
    dilations = _checks.pair(dilation, "dilation", 1)
    groups = _checks.positive_int(groups, "groups")
    deformable_groups = _checks.positive_int(deformable_groups, "deformable_groups")

    x_shape = _checks.shape_of(x, "x")
    _checks.expect_rank("x", x_shape, 4, "[N, C_in, H, W]")
    w_shape = _checks.shape_of(weight, "weight")
    _checks.expect_rank("weight", w_shape, 4, "[C_out, C_in/groups, kh, kw]")
    n, c_in, h, w = x_shape
    c_out, _, kh, kw = w_shape
    if c_in == 0:
        raise ValueError(f"x must have at least one channel [N, C_in, H, W], got shape {x_shape}")
    if c_out < 1 or kh < 1 or kw < 1:
        raise ValueError(f"weight must be [C_out, C_in/groups, kh, kw] with C_out, kh, kw >= 1, got shape {w_shape}")
    if c_in >= 0 and c_in % groups:
        raise ValueError(f"x channels (C_in={c_in}) must be divisible by groups={groups}")
    if c_out % groups:
        raise ValueError(f"weight.shape[0] (C_out={c_out}) must be divisible by groups={groups}")
    if c_in >= 0 and c_in % deformable_groups:
        raise ValueError(
            f"x channels (C_in={c_in}) must be divisible by deformable_groups={deformable_groups}"
        )
    if c_in >= 0:
        _checks.expect_shape(
            "weight", w_shape, [c_out, c_in // groups, kh, kw], "[C_out, C_in/groups, kh, kw]"
        )
    out_h, out_w = _checks.conv_out_hw("x", h, w, [kh, kw], strides, paddings, dilations)
    points = deformable_groups * kh * kw
    return ConvArgs(strides, paddings, dilations, groups, deformable_groups, n, c_out, out_h,
                    out_w, points)


@unified  # plain Python over shapes: runs as-is in dygraph and under to_static
def deform_conv2d(
    x: paddle.Tensor,
    offset: paddle.Tensor,
    weight: paddle.Tensor,
    bias: Optional[paddle.Tensor] = None,
    stride: _checks.IntPair = 1,
    padding: _checks.IntPair = 0,
    dilation: _checks.IntPair = 1,
    deformable_groups: int = 1,
    groups: int = 1,
    mask: Optional[paddle.Tensor] = None,
    name: Optional[str] = None,
) -> paddle.Tensor:
    """Deformable convolution; ``mask=None`` is DCN v1, a mask makes it DCN v2 (modulated).

    Same signature and results as ``paddle.vision.ops.deform_conv2d`` (without its rule
    that out_channels divide by deformable_groups).

    Args:
        x: ``[N, C_in, H, W]``, float32/float64 (GPU: also float16/bfloat16).
        offset: ``[N, 2*dg*kh*kw, H_out, W_out]``; for deformable group g and kernel point k
            (row-major over kh x kw), channel ``2*(g*kh*kw + k)`` is the y (height) shift in
            pixels and the next channel the x (width) shift.
        weight: ``[C_out, C_in/groups, kh, kw]``.
        bias: ``[C_out]`` or None.
        stride, padding, dilation: int or ``(h, w)``; padding is zero padding.
        deformable_groups: dg, number of offset fields; C_in must divide by it.
        groups: grouped convolution; C_in and C_out must divide by it.
        mask: ``[N, dg*kh*kw, H_out, W_out]`` modulation scalars, multiplied into each sample
            (apply the sigmoid before calling).

    Returns:
        ``[N, C_out, H_out, W_out]`` with ``H_out = (H + 2*pad_h - (dil_h*(kh-1)+1)) // stride_h + 1``.

    A sample at ``y <= -1 or y >= H or x <= -1 or x >= W`` (also NaN/Inf) is zero.
    """
    (strides, paddings, dilations, groups, deformable_groups, n, c_out, out_h, out_w,
     points) = check_conv_args(x, weight, stride, padding, dilation, groups, deformable_groups)
    _checks.expect_shape(
        "offset", _checks.shape_of(offset, "offset"), [n, 2 * points, out_h, out_w],
        "[N, 2*deformable_groups*kh*kw, H_out, W_out]",
    )
    _checks.expect_supported_dtype("x", x)
    for arg_name, tensor in (("offset", offset), ("weight", weight), ("mask", mask), ("bias", bias)):
        if tensor is not None:
            _checks.expect_dtype(arg_name, tensor, x, "x")
    if mask is not None:
        _checks.expect_shape(
            "mask", _checks.shape_of(mask, "mask"), [n, points, out_h, out_w],
            "[N, deformable_groups*kh*kw, H_out, W_out]",
        )
    if bias is not None:
        _checks.expect_shape("bias", _checks.shape_of(bias, "bias"), [c_out], "[C_out]")
    _checks.expect_same_place("x", x, offset=offset, weight=weight, mask=mask, bias=bias)

    load_library()
    attrs = (strides, paddings, dilations, groups, deformable_groups,
             workspace.get_workspace_limit(), workspace.deterministic())
    if mask is None:
        out = run_op("pdcn_deform_conv2d", x, offset, weight, *attrs)
    else:
        out = run_op("pdcn_modulated_deform_conv2d", x, offset, mask, weight, *attrs)
    if bias is not None:
        out = add_channel_bias(out, bias)
    return out
