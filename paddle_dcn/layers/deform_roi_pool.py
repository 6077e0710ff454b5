"""Deformable RoI pooling layers (RoIAlign-based, DCN v1/v2): plain, pack and modulated pack."""
from __future__ import annotations

from typing import Optional

import paddle
from paddle import nn
from paddle.nn.initializer import Constant

from .. import ops
from ..ops import _checks
from . import _args
from ._versioning import VersionedLayer


class DeformRoIPool(VersionedLayer):
    """Deformable RoI pooling with given offsets (no parameters).

    ``layer(x, boxes, boxes_num, offset=None)`` is ``paddle_dcn.ops.deform_roi_pool``:
    x ``[N, C, H, W]``, boxes ``[K, 4]`` (x1, y1, x2, y2) in input-image coordinates,
    boxes_num ``[N]`` (int32) boxes per image, offset ``[K, 2, ph, pw]`` or None, which
    moves each bin by ``gamma * offset * (roi_w, roi_h)`` (channel 0 along x, 1 along y).
    Returns ``[K, C, ph, pw]``; with no offset it equals ``paddle.vision.ops.roi_align``.
    """

    def __init__(
        self,
        output_size: _checks.IntPair,
        spatial_scale: float = 1.0,
        sampling_ratio: int = -1,
        gamma: float = 0.1,
        aligned: bool = True,
    ) -> None:
        super().__init__()
        self.output_size = _checks.pair(output_size, "output_size", 1)
        self.spatial_scale = _checks.positive_number(spatial_scale, "spatial_scale", float32=True)
        self.sampling_ratio = _checks.integer(sampling_ratio, "sampling_ratio")
        if self.sampling_ratio < 1 and self.sampling_ratio != -1:  # the layer's rule; the op takes any <= 0
            raise ValueError(f"sampling_ratio must be a positive int or -1 (adaptive), got {sampling_ratio!r}")
        self.gamma = _checks.number(gamma, "gamma", float32=True)
        self.aligned = _checks.boolean(aligned, "aligned")
        self._op_args = _args.OpArgs(
            output_size=tuple(self.output_size), spatial_scale=self.spatial_scale,
            sampling_ratio=self.sampling_ratio, gamma=self.gamma, aligned=self.aligned,
        )

    def pool(
        self,
        x: paddle.Tensor,
        boxes: paddle.Tensor,
        boxes_num: paddle.Tensor,
        offset: Optional[paddle.Tensor] = None,
    ) -> paddle.Tensor:
        """``paddle_dcn.ops.deform_roi_pool`` with this layer's configuration."""
        return _args.run_op(ops.deform_roi_pool, self._op_args, x, boxes, boxes_num, offset=offset)

    def forward(
        self,
        x: paddle.Tensor,
        boxes: paddle.Tensor,
        boxes_num: paddle.Tensor,
        offset: Optional[paddle.Tensor] = None,
    ) -> paddle.Tensor:
        return self.pool(x, boxes, boxes_num, offset)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, gamma={self.gamma}, aligned={self.aligned}"
        )


def _fc_head(in_features: int, hidden: int, out_features: int, lr_mult: float,
             hidden_layers: int = 2) -> nn.Sequential:
    """``hidden_layers`` x (Linear-ReLU), then a zero-initialised Linear (output 0 at init);
    every parameter with learning-rate multiplier ``lr_mult``."""
    attr = lambda init=None: paddle.ParamAttr(initializer=init, learning_rate=lr_mult)  # noqa: E731
    layers = []
    for width_in in [in_features] + [hidden] * (hidden_layers - 1):
        layers += [nn.Linear(width_in, hidden, weight_attr=attr(), bias_attr=attr()), nn.ReLU()]
    layers.append(
        nn.Linear(hidden, out_features, weight_attr=attr(Constant(0.0)), bias_attr=attr(Constant(0.0)))
    )
    return nn.Sequential(*layers)


class DeformRoIPoolPack(DeformRoIPool):
    """Deformable RoI pooling that predicts its own offsets (the DCN papers' RoI head).

    ``layer(x, boxes, boxes_num)``: pools each box without offsets, feeds the flattened
    ``[K, C*ph*pw]`` features to ``offset_fc`` (Linear-ReLU-Linear-ReLU-Linear, hidden
    width ``fc_channels``, last Linear zero-initialised), reads the normalised offsets
    ``[K, 2, ph, pw]`` from it and pools again with them. At initialisation the offsets are
    zero, so the output equals ``paddle.vision.ops.roi_align``. ``offset_lr_mult`` is the
    learning-rate multiplier of ``offset_fc`` (the DCN v1 paper used 0.01 for this fc, the
    DCN v2 paper 0.1).

    Args: ``in_channels`` (C of x) and ``output_size`` size the fc; the rest as DeformRoIPool.
    """

    def __init__(
        self,
        in_channels: int,
        output_size: _checks.IntPair,
        spatial_scale: float = 1.0,
        sampling_ratio: int = -1,
        gamma: float = 0.1,
        aligned: bool = True,
        fc_channels: int = 1024,
        offset_lr_mult: float = 1.0,
    ) -> None:
        super().__init__(output_size, spatial_scale, sampling_ratio, gamma, aligned)
        self.in_channels = _checks.positive_int(in_channels, "in_channels")
        self.fc_channels = _checks.positive_int(fc_channels, "fc_channels")
        self.offset_lr_mult = _checks.positive_number(offset_lr_mult, "offset_lr_mult")
        ph, pw = self.output_size
        self.offset_fc = _fc_head(in_channels * ph * pw, fc_channels, 2 * ph * pw, offset_lr_mult)

    def _features(self, x, boxes, boxes_num) -> tuple[paddle.Tensor, paddle.Tensor]:
        plain = self.pool(x, boxes, boxes_num)
        return plain, plain.reshape([-1, self.in_channels * self.output_size[0] * self.output_size[1]])

    def _offsets(self, flat: paddle.Tensor) -> paddle.Tensor:
        return self.offset_fc(flat).reshape([-1, 2, *self.output_size])

    @staticmethod
    def _no_boxes(boxes: paddle.Tensor) -> bool:
        """K = 0 in dygraph: the fc heads are skipped (the empty result needs no offsets, and
        Paddle 3.3.1's Linear backward fails on an empty batch when x needs no gradient)."""
        return paddle.in_dynamic_mode() and boxes.shape[0] == 0

    def forward(self, x, boxes, boxes_num) -> paddle.Tensor:  # type: ignore[override]
        """x ``[N, C, H, W]``, boxes ``[K, 4]``, boxes_num ``[N]`` -> ``[K, C, ph, pw]``."""
        plain, flat = self._features(x, boxes, boxes_num)
        if self._no_boxes(boxes):
            return plain
        return self.pool(x, boxes, boxes_num, self._offsets(flat))

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, " + super().extra_repr()
            + f", fc_channels={self.fc_channels}, offset_lr_mult={self.offset_lr_mult}"
        )


class ModulatedDeformRoIPoolPack(DeformRoIPoolPack):
    """DeformRoIPoolPack plus a modulation mask (DCN v2's RoI head).

    A second head ``mask_fc`` (Linear-ReLU-Linear, last Linear zero-initialised) maps the
    same flattened plain-pooled features to a ``[K, 1, ph, pw]`` mask through a sigmoid
    (``mask_init=0.5``, as in the DCNv2 paper) or ``2*sigmoid`` (``mask_init=1.0``); the
    output is the deformable pooling times the mask. At initialisation it equals
    ``mask_init * roi_align``.
    """

    def __init__(
        self,
        in_channels: int,
        output_size: _checks.IntPair,
        spatial_scale: float = 1.0,
        sampling_ratio: int = -1,
        gamma: float = 0.1,
        aligned: bool = True,
        fc_channels: int = 1024,
        offset_lr_mult: float = 1.0,
        mask_init: float = 0.5,
    ) -> None:
        super().__init__(
            in_channels, output_size, spatial_scale, sampling_ratio, gamma, aligned,
            fc_channels, offset_lr_mult,
        )
        self.mask_init = _args.mask_init(mask_init)
        ph, pw = self.output_size
        self.mask_fc = _fc_head(in_channels * ph * pw, fc_channels, ph * pw, self.offset_lr_mult,
                                hidden_layers=1)

    def forward(self, x, boxes, boxes_num) -> paddle.Tensor:  # type: ignore[override]
        """x ``[N, C, H, W]``, boxes ``[K, 4]``, boxes_num ``[N]`` -> ``[K, C, ph, pw]``."""
        plain, flat = self._features(x, boxes, boxes_num)
        if self._no_boxes(boxes):
            return plain
        pooled = self.pool(x, boxes, boxes_num, self._offsets(flat))
        mask = paddle.nn.functional.sigmoid(self.mask_fc(flat).reshape([-1, 1, *self.output_size]))
        if self.mask_init != 0.5:
            mask = mask * (2.0 * self.mask_init)
        return pooled * _args.cast(mask, pooled.dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mask_init={self.mask_init}"
