"""DCNv3 (InternImage): grouped deformable aggregation with softmax-normalised weights."""
from __future__ import annotations

from typing import Optional

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from .. import ops
from ..ops import _checks
from ..ops.group_softmax import group_softmax
from . import _aggregate_block as blk
from . import _args
from ._versioning import VersionedLayer


class DCNv3(VersionedLayer):
    """InternImage's DCNv3 operator as a layer (``channels`` in, ``channels`` out).

    ``y = layer(x)``:
      1. ``value = input_proj(x)`` (Linear over channels);
      2. ``f = GELU(LayerNorm(depthwise_conv(x)))`` (``dw_kernel_size``, at the layer's stride);
      3. ``offset = offset(f)`` ``[N, Ho, Wo, G*K*2]`` and ``weight = softmax_K(mask(f))``
         ``[N, Ho, Wo, G*K]`` (softmax over each group's K points);
      4. ``y = output_proj(deform_aggregate(value, offset, weight, ...))``
         (see :func:`paddle_dcn.ops.deform_aggregate` for the sampling and the layouts).
    ``offset`` and ``mask`` start at zero: zero offsets and uniform weights 1/K, so a new layer
    averages each group's kernel window between the two projections. Parameter names follow
    InternImage's (``input_proj``, ``dw_conv``, ``offset``, ``mask``, ``output_proj``).

    Args:
        channels: C, in and out; divisible by ``groups``.
        kernel_size: odd, int or (h, w). stride, dilation: int or (h, w).
        padding: None (default) or ``dilation*(k-1)//2`` (the only value that keeps the
            offset branch on the output grid).
        groups: G (InternImage-T: channels / 16); any group width (no multiple-of-16 rule).
        offset_scale: scale of the offsets (InternImage's ``offset_scale``).
        dw_kernel_size: the depthwise conv's kernel (default: ``kernel_size``'s height).
        offset_lr_mult: learning-rate multiplier of ``offset`` and ``mask``.
        center_feature_scale: InternImage's option (its H and G models): before
            ``output_proj`` the aggregation is blended with ``value`` at each output pixel's
            kernel centre, ``a*(1-s) + value*s``, ``s = sigmoid(f @ W.T + b)`` per group
            (``center_feature_scale_proj_weight [G, C]`` / ``_bias [G]``, zero at first).
        data_format: ``'NCHW'`` (default: ``[N, C, H, W]`` in and out, a drop-in for a conv)
            or ``'NHWC'`` (InternImage's channels-last, no transposes).
    """

    def __init__(self, channels: int, kernel_size: _checks.IntPair = 3, stride: _checks.IntPair = 1,
                 padding: Optional[_checks.IntPair] = None, dilation: _checks.IntPair = 1, groups: int = 4,
                 offset_scale: float = 1.0, dw_kernel_size: Optional[int] = None, offset_lr_mult: float = 1.0,
                 center_feature_scale: bool = False, data_format: str = "NCHW") -> None:
        super().__init__()
        a = blk.check_common(channels, kernel_size, stride, dilation, groups, padding, offset_scale, data_format)
        blk.set_common(self, a, data_format)
        dw = _checks.positive_int(dw_kernel_size if dw_kernel_size is not None else self.kernel_size[0], "dw_kernel_size")
        if dw % 2 == 0:
            raise ValueError(f"dw_kernel_size must be odd, got {dw}")
        lr = _checks.positive_number(offset_lr_mult, "offset_lr_mult")
        points = self.groups * self.kernel_size[0] * self.kernel_size[1]
        c = self.channels
        self.input_proj = blk.projection(c, c)
        self.dw_conv = blk.depthwise(c, dw, self.stride)
        self.dw_norm = blk.LayerNorm(c)
        self.offset = blk.zero_projection(c, 2 * points, lr)
        self.mask = blk.zero_projection(c, points, lr)
        self.output_proj = blk.projection(c, c)
        self.center_feature_scale = _checks.boolean(center_feature_scale, "center_feature_scale")
        if self.center_feature_scale:
            blk.add_centre_feature_scale(self, c, self.groups)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        blk.check_input(x, self.channels, self.data_format, "DCNv3")
        x = blk.input_in_layer_dtype(x, self.offset.weight, "DCNv3")
        nhwc = blk.to_nhwc(x) if self.data_format == "NCHW" else x
        value = self.input_proj(nhwc)
        feat = F.gelu(self.dw_norm(self.dw_conv.forward_nhwc(nhwc, x if self.data_format == "NCHW" else None)))
        offset = self.offset(feat)
        logits = self.mask(feat)
        k = self.kernel_size[0] * self.kernel_size[1]
        weight = group_softmax(logits, k)  # softmax over each group's k points
        out = _args.run_op(ops.deform_aggregate, self._op_args, value, offset, weight)
        if self.center_feature_scale:  # gated by the offset branch's features, as InternImage's
            out = blk.centre_feature_blend(self, out, blk.centre_pixels(value, self._op_args), feat)
        out = self.output_proj(out)
        return blk.to_nchw(out) if self.data_format == "NCHW" else out

    @property
    def offset_predictor(self) -> nn.Layer:
        """The sub-layer whose output holds the offsets (read by :meth:`sampling_offsets`)."""
        return self.offset

    def sampling_offsets(self, prediction: paddle.Tensor) -> np.ndarray:
        """``offset_predictor``'s output as ``[N, G*kh*kw, 2, H_out, W_out]`` (dy, dx) numpy,
        DeformConv2D's layout for the offset tools (``blk.sampling_offsets``)."""
        return blk.sampling_offsets(self, prediction, fused=False)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"dilation={self.dilation}, groups={self.groups}, offset_scale={self.offset_scale}, "
                f"center_feature_scale={self.center_feature_scale}, data_format={self.data_format!r}")
