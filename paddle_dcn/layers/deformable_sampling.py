"""DeformableSampling2D (alias ConvOffset2D): per-channel deformable resampling of a feature map."""
from __future__ import annotations

from typing import Optional

import paddle
from paddle import nn
from paddle.nn.initializer import Constant

from .. import ops
from ..ops import _checks
from . import _args, _offset_bound
from ._versioning import VersionedLayer


class DeformableSampling2D(VersionedLayer):
    """Per-channel deformable sampling: every channel is resampled at its own learned offsets.

    The layer of the first public DCN v1 re-implementation (Keras/PyTorch ``ConvOffset2D``):
    a conv ``conv_offset`` (``offset_kernel_size`` x ``offset_kernel_size``, 'same' padding,
    weight and bias initialised to zero) predicts an offset ``(dy, dx)`` in pixels for every
    pixel of every input channel, and the layer returns the input bilinearly resampled at
    those positions, same shape as the input. Follow it with any ordinary conv.

    ``out[n, c, i, j] = bilinear(x[n, c], i + dy[n, c, i, j], j + dx[n, c, i, j])``, computed
    by :func:`paddle_dcn.ops.deform_sample2d` (our deformable conv with a 1x1 kernel,
    ``deformable_groups = groups = C`` and a constant depthwise weight of 1 that is not a
    parameter). At initialisation the offsets are zero and the layer returns its input.

    Borders: a neighbour outside the map counts as zero (``grid_sample``'s
    ``padding_mode='zeros'``, ``align_corners=True``); the original ConvOffset2D clamped
    sample coordinates to the border instead.

    Offset layout (``conv_offset`` output and the explicit ``offset``): ``[N, 2*C, H, W]``,
    channel ``2*c`` the y (height) shift of channel c, ``2*c + 1`` its x (width) shift.

    Args:
        in_channels: C, channels of the input (and of the output).
        offset_kernel_size: odd kernel size of ``conv_offset`` (3 as in ConvOffset2D).
        offset_lr_mult: learning-rate multiplier of ``conv_offset``.
        offset_bound: None (unbounded) or a bound in pixels: the predicted offsets are squashed
            by ``offset_bound_fn`` into ``(-offset_bound, offset_bound)``.
        offset_bound_fn: ``'tanh'`` (``bound * tanh(o)``) or ``'sigmoid'``
            (``bound * (2 * sigmoid(o) - 1)``).
        data_format: only ``'NCHW'``.

    ``layer(x)`` uses the predicted offsets; ``layer(x, offset)`` samples at the given
    ``offset`` ``[N, 2*C, H, W]`` (used as is: not bounded).
    """

    def __init__(
        self,
        in_channels: int,
        offset_kernel_size: int = 3,
        offset_lr_mult: float = 1.0,
        offset_bound: Optional[float] = None,
        offset_bound_fn: str = "tanh",
        data_format: str = "NCHW",
    ) -> None:
        super().__init__()
        self.in_channels = _checks.positive_int(in_channels, "in_channels")
        k = _checks.positive_int(offset_kernel_size, "offset_kernel_size")
        if k % 2 == 0:
            raise ValueError(f"offset_kernel_size must be odd ('same' padding), got {k}")
        self.offset_kernel_size = k
        self.offset_lr_mult = _checks.positive_number(offset_lr_mult, "offset_lr_mult")
        self.offset_bound, self.offset_bound_fn = _offset_bound.check(offset_bound, offset_bound_fn)
        _args.nchw_only(data_format)
        branch_attr = lambda: paddle.ParamAttr(  # noqa: E731 - two fresh attrs
            initializer=Constant(0.0), learning_rate=self.offset_lr_mult
        )
        self.conv_offset = nn.Conv2D(
            in_channels, 2 * in_channels, k, padding=k // 2,
            weight_attr=branch_attr(), bias_attr=branch_attr(),
        )

    def predict_offsets(self, x: paddle.Tensor) -> paddle.Tensor:
        """Offsets ``[N, 2*C, H, W]`` (pixels, bounded when ``offset_bound`` is set)."""
        return _offset_bound.apply(self.conv_offset(x), self.offset_bound, self.offset_bound_fn)

    def forward(self, x: paddle.Tensor, offset: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        """``x`` ``[N, C, H, W]`` -> ``[N, C, H, W]`` resampled at the predicted (or given) offsets."""
        _args.check_input_channels(x, self.in_channels, name="C")
        if offset is None:
            offset = self.predict_offsets(x)
        return _args.run_op(ops.deform_sample2d, None, x, offset)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, offset_kernel_size={self.offset_kernel_size}, "
            f"offset_lr_mult={self.offset_lr_mult}"
            + _offset_bound.describe(self.offset_bound, self.offset_bound_fn)
        )


ConvOffset2D = DeformableSampling2D
"""Alias with the name of the Keras/PyTorch layer it reproduces (``ConvOffset2D(filters)``)."""
