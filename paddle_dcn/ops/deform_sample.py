"""Per-channel deformable sampling: bilinear resampling of every channel at its own offsets.

This is the operation of the first public DCN v1 re-implementation (``ConvOffset2D``):
``out[n, c, i, j] = bilinear(x[n, c], i + dy[n, c, i, j], j + dx[n, c, i, j])``. It is
exactly a deformable convolution with a 1x1 kernel, one deformable group per channel and
one conv group per channel whose (depthwise) weight is 1, so it runs on
:func:`paddle_dcn.ops.deform_conv2d` (no gather in Python) and has its gradients.
"""
from __future__ import annotations

from typing import Optional

import paddle
from paddle.jit.marker import unified

from . import _checks
from .deform_conv import deform_conv2d


@unified  # plain Python over shapes: runs as-is in dygraph and under to_static
def deform_sample2d(
    x: paddle.Tensor, offset: paddle.Tensor, name: Optional[str] = None
) -> paddle.Tensor:
    """Bilinearly resamples each channel of ``x`` at its own per-pixel offsets.

    Args:
        x: ``[N, C, H, W]``, float32/float64 (GPU: also float16/bfloat16); C must be known
            (not dynamic) when tracing.
        offset: ``[N, 2*C, H, W]`` in pixels; channel ``2*c`` is the y (height) shift of
            channel c, channel ``2*c + 1`` its x (width) shift (the layout of
            ``deform_conv2d``'s offset with a 1x1 kernel and ``deformable_groups=C``).

    Returns:
        ``[N, C, H, W]``: ``out[n, c, i, j]`` is ``x[n, c]`` sampled at
        ``(i + offset[n, 2c, i, j], j + offset[n, 2c+1, i, j])`` by bilinear interpolation;
        neighbours outside the map count as zero, so a position with ``y <= -1``,
        ``y >= H``, ``x <= -1`` or ``x >= W`` (or a non-finite offset) gives zero. This is
        ``paddle.nn.functional.grid_sample`` with ``mode='bilinear'``,
        ``padding_mode='zeros'``, ``align_corners=True`` at the grid
        ``(2 * (j + dx) / (W - 1) - 1, 2 * (i + dy) / (H - 1) - 1)``, one channel at a time.
    """
    x_shape = _checks.shape_of(x, "x")
    _checks.expect_rank("x", x_shape, 4, "[N, C, H, W]")
    n, c, h, w = x_shape
    if c < 0:
        raise ValueError("x must have a known channel count C (x.shape[1]) for deform_sample2d")
    _checks.expect_shape(
        "offset", _checks.shape_of(offset, "offset"), [n, 2 * c, h, w], "[N, 2*C, H, W]"
    )
    _checks.expect_supported_dtype("x", x)
    _checks.expect_dtype("offset", offset, x, "x")
    identity = paddle.ones([c, 1, 1, 1], dtype=x.dtype)  # depthwise 1x1 weight 1: no mixing
    if not paddle.in_dynamic_mode():
        # a constant; through assign so that a saved model passes
        # paddle_dcn.inference.onednn_safe (op inputs from parameters, feeds or assign only)
        identity = paddle.assign(identity)
    return deform_conv2d(x, offset, identity, deformable_groups=c, groups=c)
