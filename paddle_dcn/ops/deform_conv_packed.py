"""DCN v2 on the offset branch's packed output: offsets and mask logits in one tensor.

A DCN v2 layer's offset branch is one conv with ``3*dg*kh*kw`` output channels: offsets in
the first ``2*dg*kh*kw``, mask logits in the rest. :func:`deform_conv2d_packed` takes that
tensor as it is and applies ``mask_scale * sigmoid`` to the logits inside the op (forward
and backward), so the layer runs no split, sigmoid or gradient concat around it. At
dcn_r50's res2 shape (32x16x24x24, one thread) those three took about 1.2-2.3 ms of a
24-34 ms layer forward+backward (``docs/benchmarks.md``).

CPU and dygraph (the op library's CPU kernels; the CUDA kernels read the same geometry but
the binding accepts CPU tensors only). ``DeformConv2D`` takes this path in CPU dygraph and
the separate offset/mask op elsewhere, so saved programs and ONNX files hold the standard
op.
"""
from __future__ import annotations

from typing import Optional

import paddle

from . import _checks, workspace
from ._library import load_library, run_op
from .channel_bias import add_channel_bias
from .deform_conv import check_conv_args


def deform_conv2d_packed(
    x: paddle.Tensor,
    offset_mask: paddle.Tensor,
    weight: paddle.Tensor,
    bias: Optional[paddle.Tensor] = None,
    stride: _checks.IntPair = 1,
    padding: _checks.IntPair = 0,
    dilation: _checks.IntPair = 1,
    deformable_groups: int = 1,
    groups: int = 1,
    mask_scale: float = 1.0,
) -> paddle.Tensor:
    """``deform_conv2d(x, offset, weight, bias, ..., mask=mask_scale * sigmoid(logits))``
    with ``offset, logits = split(offset_mask, [2P, P], axis=1)`` (``P = dg*kh*kw``),
    computed without the split: equal to that composition up to float rounding, with
    gradients for ``x``, ``offset_mask`` (offsets and logits), ``weight`` and ``bias``.

    Args:
        x: ``[N, C_in, H, W]`` on the CPU, float32 or float64.
        offset_mask: ``[N, 3P, H_out, W_out]``: channels ``[0, 2P)`` the offsets in
            ``deform_conv2d``'s order, ``[2P, 3P)`` the mask logits.
        weight: ``[C_out, C_in/groups, kh, kw]``; bias ``[C_out]`` or None.
        stride, padding, dilation, deformable_groups, groups: as ``deform_conv2d``.
        mask_scale: the mask is ``mask_scale * sigmoid(logit)``; positive (1.0: the DCNv2
            paper's sigmoid, 2.0: ``2*sigmoid``, which starts equal to the plain conv).

    Returns:
        ``[N, C_out, H_out, W_out]``.
    """
    mask_scale = _checks.positive_number(mask_scale, "mask_scale", float32=True)
    (strides, paddings, dilations, groups, deformable_groups, n, c_out, out_h, out_w,
     points) = check_conv_args(x, weight, stride, padding, dilation, groups, deformable_groups)
    _checks.expect_shape("offset_mask", _checks.shape_of(offset_mask, "offset_mask"),
                         [n, 3 * points, out_h, out_w],
                         "[N, 3*deformable_groups*kh*kw, H_out, W_out]")
    _checks.expect_cpu_float(x, "deform_conv2d_packed")
    for arg_name, tensor in (("offset_mask", offset_mask), ("weight", weight), ("bias", bias)):
        if tensor is not None:
            _checks.expect_dtype(arg_name, tensor, x, "x")
    if bias is not None:
        _checks.expect_shape("bias", _checks.shape_of(bias, "bias"), [c_out], "[C_out]")
    _checks.expect_same_place("x", x, offset_mask=offset_mask, weight=weight, bias=bias)
    load_library()
    out = run_op("pdcn_deform_conv2d_packed", x, offset_mask, weight, strides, paddings,
                 dilations, groups, deformable_groups, mask_scale,
                 workspace.get_workspace_limit(), workspace.deterministic())
    if bias is not None:
        out = add_channel_bias(out, bias)
    return out
