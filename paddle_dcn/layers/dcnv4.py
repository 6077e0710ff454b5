"""DCNv4 (FlashInternImage): deformable aggregation with unbounded weights and one fused
offset/weight projection."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import paddle
from paddle import nn

from .. import ops
from ..ops import _checks
from . import _aggregate_block as blk
from . import _args
from ._versioning import VersionedLayer

MASK_INITS = ("zero", "mean")


class DCNv4(VersionedLayer):
    """The DCNv4 operator as a layer (``channels`` in, ``channels`` out).

    ``y = layer(x)``:
      1. ``value = value_proj(x)`` (skipped with ``without_pointwise``);
      2. ``om = offset_mask(dw_conv(x))`` (the depthwise conv is optional; without it, as in
         FlashInternImage, the projection reads x itself, at stride s the pixels
         ``x[:, ::s, ::s]`` (channels-last), each output pixel's kernel centre): one Linear to
         ``G*K*3`` values (padded to a multiple of 8, as DCNv4's), per group ``2K`` offsets then
         ``K`` aggregation weights, used as they are (no softmax) and read in place by
         ``ops.deform_aggregate_fused``;
      3. ``y = output_proj(deform_aggregate(value, offset, weight, ...))``.
    ``offset_mask`` starts with zero weights: zero offsets, and weights ``0`` (``mask_init=
    'zero'``, DCNv4's: a new layer outputs zero) or ``1/K`` (``'mean'``: it starts averaging
    each group's window, as a new DCNv3 layer does; what a drop-in for a conv wants).

    Args:
        channels, kernel_size, stride, padding, dilation, groups, offset_scale,
        offset_lr_mult, data_format: as :class:`DCNv3`.
        dw_kernel_size: depthwise conv before the offset/weight projection (default 3; None:
            none, FlashInternImage's choice, the fastest form; at a stride the projection then
            reads the input pixel under each output's kernel centre).
        without_pointwise: drop the input and output projections (DCNv4's option).
        output_bias: bias of the output projection.
        mask_init: ``'zero'`` or ``'mean'``, see above.
        center_feature_scale: DCNv4's option: before ``output_proj`` the aggregation ``a`` is
            blended with ``value`` at each output pixel's kernel centre, ``a*(1-s) + value*s``,
            ``s = sigmoid(a @ W.T + b)`` per group (gated by the aggregation itself, as DCNv4's;
            ``center_feature_scale_proj_weight [G, C]`` / ``_bias [G]``, zero at first).
    """

    def __init__(self, channels: int, kernel_size: _checks.IntPair = 3, stride: _checks.IntPair = 1,
                 padding: Optional[_checks.IntPair] = None, dilation: _checks.IntPair = 1, groups: int = 4,
                 offset_scale: float = 1.0, dw_kernel_size: Optional[int] = 3, without_pointwise: bool = False,
                 output_bias: bool = True, mask_init: str = "zero", offset_lr_mult: float = 1.0,
                 center_feature_scale: bool = False, data_format: str = "NCHW") -> None:
        super().__init__()
        a = blk.check_common(channels, kernel_size, stride, dilation, groups, padding, offset_scale, data_format)
        blk.set_common(self, a, data_format)
        if mask_init not in MASK_INITS:
            raise ValueError(f"mask_init must be one of {MASK_INITS}, got {mask_init!r}")
        lr = _checks.positive_number(offset_lr_mult, "offset_lr_mult")
        c = self.channels
        k = self.kernel_size[0] * self.kernel_size[1]
        self.points = self.groups * k
        self.without_pointwise = bool(without_pointwise)
        if not self.without_pointwise:
            self.value_proj = blk.projection(c, c)
            self.output_proj = blk.projection(c, c, bias=bool(output_bias))
        self.offset_mask_dw = None
        if dw_kernel_size is not None:
            dw = _checks.positive_int(dw_kernel_size, "dw_kernel_size")
            if dw % 2 == 0:
                raise ValueError(f"dw_kernel_size must be odd, got {dw}")
            self.offset_mask_dw = blk.depthwise(c, dw, self.stride)
        width = int(math.ceil(self.points * 3 / 8) * 8)
        self.offset_mask = blk.zero_projection(c, width, lr)
        if mask_init == "mean":
            bias = paddle.zeros([width], dtype=self.offset_mask.bias.dtype)
            per_group = paddle.concat([paddle.zeros([2 * k]), paddle.full([k], 1.0 / k)]).astype(bias.dtype)
            bias[: self.points * 3] = paddle.tile(per_group, [self.groups])
            self.offset_mask.bias.set_value(bias)
        self.mask_init = mask_init
        self.center_feature_scale = _checks.boolean(center_feature_scale, "center_feature_scale")
        if self.center_feature_scale:
            blk.add_centre_feature_scale(self, c, self.groups)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        blk.check_input(x, self.channels, self.data_format, "DCNv4")
        x = blk.input_in_layer_dtype(x, self.offset_mask.weight, "DCNv4")
        nhwc = blk.to_nhwc(x) if self.data_format == "NCHW" else x
        value = nhwc if self.without_pointwise else self.value_proj(nhwc)
        if self.offset_mask_dw is not None:
            om_in = self.offset_mask_dw.forward_nhwc(nhwc, x if self.data_format == "NCHW" else None)
        else:
            # output pixel (i, j)'s kernel centre is input pixel (s*i, s*j): padding is
            # dilation*(k-1)//2, so there are ceil(H/s) of them, the output size
            om_in = blk.centre_pixels(nhwc, self._op_args)
        out = _args.run_op(ops.deform_aggregate_fused, self._op_args, value, self.offset_mask(om_in))
        if self.center_feature_scale:  # gated by the aggregation, as DCNv4's
            out = blk.centre_feature_blend(self, out, blk.centre_pixels(value, self._op_args), out)
        if not self.without_pointwise:
            out = self.output_proj(out)
        return blk.to_nchw(out) if self.data_format == "NCHW" else out

    @property
    def offset_predictor(self) -> nn.Layer:
        """The sub-layer whose output holds the offsets (read by :meth:`sampling_offsets`)."""
        return self.offset_mask

    def sampling_offsets(self, prediction: paddle.Tensor) -> np.ndarray:
        """``offset_predictor``'s output (the fused tensor) as ``[N, G*kh*kw, 2, H_out, W_out]``
        (dy, dx) numpy, DeformConv2D's layout for the offset tools (``blk.sampling_offsets``)."""
        return blk.sampling_offsets(self, prediction, fused=True)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"dilation={self.dilation}, groups={self.groups}, offset_scale={self.offset_scale}, "
                f"without_pointwise={self.without_pointwise}, mask_init={self.mask_init!r}, "
                f"center_feature_scale={self.center_feature_scale}, data_format={self.data_format!r}")
