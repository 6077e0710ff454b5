"""DCNv3 / DCNv4 aggregation: each channel group sums its deformed, weighted samples."""
from __future__ import annotations

from typing import Optional

import numpy as np
import paddle
from paddle.jit.marker import unified

from . import _checks, workspace
from ._library import load_library, run_op


@unified  # plain Python over shapes: runs as-is in dygraph and under to_static
def deform_aggregate(
    value: paddle.Tensor,
    offset: paddle.Tensor,
    weight: paddle.Tensor,
    kernel_size: _checks.IntPair = 3,
    stride: _checks.IntPair = 1,
    padding: _checks.IntPair = 1,
    dilation: _checks.IntPair = 1,
    groups: int = 1,
    offset_scale: float = 1.0,
    name: Optional[str] = None,
) -> paddle.Tensor:
    """The core of DCNv3 (InternImage) and DCNv4: deformable sampling + weighted sum per group.

    For output pixel ``(i, j)``, group ``g`` and kernel point ``k`` (``K = kh*kw`` points,
    ``k = iw*kh + ih``: InternImage's order, the kernel column outer), with
    ``cw = dil_w*(kw-1)//2`` (``ch`` alike) and ``s = offset_scale``, the sample position is
    ``x = j*stride_w - pad_w + cw + s*(iw*dil_w - cw + dx)`` and
    ``y = i*stride_h - pad_h + ch + s*(ih*dil_h - ch + dy)``, and
    ``out[n, i, j, g*C + c] = sum_k weight[n, i, j, g*K + k] * bilinear(value[n, :, :, g*C + c], y, x)``.
    Bilinear sampling as deform_conv2d's: neighbours outside the map count as zero, a sample
    at ``y <= -1``, ``y >= H``, ``x <= -1``, ``x >= W`` or a non-finite position is zero.
    The weights are used as given (DCNv3 softmax-normalises them over the K points in the
    layer, DCNv4 does not).

    Args:
        value: ``[N, H, W, G*C]`` channels-last, float32/float64 (GPU: also float16/bfloat16);
            any group width C.
        offset: ``[N, H_out, W_out, G*K*2]``: per group and kernel point ``(dx, dy)`` in input
            pixels (times ``offset_scale``).
        weight: ``[N, H_out, W_out, G*K]`` aggregation weights.
        kernel_size, stride, padding, dilation: int or ``(h, w)``; zero padding.
        groups: G; the channels of value must divide by it.
        offset_scale: the scale of the offsets (and of the kernel grid around its centre).

    Returns:
        ``[N, H_out, W_out, G*C]`` with ``H_out = (H + 2*pad_h - (dil_h*(kh-1)+1)) // stride_h + 1``.
        Gradients flow to value, offset and weight; on GPU the value gradient follows
        ``paddle_dcn.ops.set_deterministic`` like deform_conv2d's input gradient.
    """
    kernel, strides, paddings, dilations, groups, (n, out_h, out_w) = _check_common(
        value, kernel_size, stride, padding, dilation, groups, offset_scale)
    points = groups * kernel[0] * kernel[1]
    _checks.expect_shape("offset", _checks.shape_of(offset, "offset"), [n, out_h, out_w, 2 * points],
                         "[N, H_out, W_out, G*kh*kw*2]")
    _checks.expect_shape("weight", _checks.shape_of(weight, "weight"), [n, out_h, out_w, points],
                         "[N, H_out, W_out, G*kh*kw]")
    _checks.expect_dtype("offset", offset, value, "value")
    _checks.expect_dtype("weight", weight, value, "value")
    _checks.expect_same_place("value", value, offset=offset, weight=weight)
    load_library()
    return run_op("pdcn_deform_aggregate", value, offset, weight, kernel, strides, paddings, dilations,
                  groups, _scale_pair(offset_scale), workspace.deterministic())


def _scale_pair(offset_scale: float) -> list:
    """``[hi, lo]`` float32 values with ``hi + lo`` = the double (no double op attributes)."""
    hi = float(np.float32(offset_scale))
    return [hi, float(np.float32(float(offset_scale) - hi))]


def _check_common(value, kernel_size, stride, padding, dilation, groups, offset_scale):
    kernel = _checks.pair(kernel_size, "kernel_size", 1)
    strides = _checks.pair(stride, "stride", 1)
    paddings = _checks.pair(padding, "padding", 0)
    dilations = _checks.pair(dilation, "dilation", 1)
    groups = _checks.positive_int(groups, "groups")
    _checks.number(offset_scale, "offset_scale", float32=True)
    v_shape = _checks.shape_of(value, "value")
    _checks.expect_rank("value", v_shape, 4, "[N, H, W, G*C]")
    n, h, w, channels = v_shape
    if channels >= 0 and channels % groups:
        raise ValueError(f"value channels (value.shape[3] = {channels}) must be divisible by groups={groups}")
    out_h, out_w = _checks.conv_out_hw("value", h, w, kernel, strides, paddings, dilations,
                                       kernel_name="kernel_size")
    _checks.expect_supported_dtype("value", value)
    return kernel, strides, paddings, dilations, groups, (n, out_h, out_w)


@unified  # plain Python over shapes: runs as-is in dygraph and under to_static
def deform_aggregate_fused(
    value: paddle.Tensor,
    offset_mask: paddle.Tensor,
    kernel_size: _checks.IntPair = 3,
    stride: _checks.IntPair = 1,
    padding: _checks.IntPair = 1,
    dilation: _checks.IntPair = 1,
    groups: int = 1,
    offset_scale: float = 1.0,
    name: Optional[str] = None,
) -> paddle.Tensor:
    """:func:`deform_aggregate` with DCNv4's fused input: ``offset_mask [N, H_out, W_out, S]``
    holds, per group g, ``2K`` offsets (``(dx, dy)`` per kernel point) then ``K`` weights at
    channels ``[g*3K, (g+1)*3K)``; ``S >= G*3K`` (DCNv4 pads S to a multiple of 8; the
    padding is ignored and gets a zero gradient). Reads the projection's output in place,
    no slicing, and returns the same as ``deform_aggregate`` on the split tensors."""
    kernel, strides, paddings, dilations, groups, (n, out_h, out_w) = _check_common(
        value, kernel_size, stride, padding, dilation, groups, offset_scale)
    om_shape = _checks.shape_of(offset_mask, "offset_mask")
    _checks.expect_rank("offset_mask", om_shape, 4, "[N, H_out, W_out, S]")
    _checks.expect_shape("offset_mask", om_shape[:3], [n, out_h, out_w], "[N, H_out, W_out, S][:3]")
    need = groups * kernel[0] * kernel[1] * 3
    if 0 <= om_shape[3] < need:
        raise ValueError(f"offset_mask has {om_shape[3]} channels; it needs at least G*kh*kw*3 = {need}")
    _checks.expect_dtype("offset_mask", offset_mask, value, "value")
    _checks.expect_same_place("value", value, offset_mask=offset_mask)
    load_library()
    return run_op("pdcn_deform_aggregate_fused", value, offset_mask, kernel, strides, paddings, dilations,
                  groups, _scale_pair(offset_scale), workspace.deterministic())
