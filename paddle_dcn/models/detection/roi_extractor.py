"""RoI feature extractor over a feature pyramid, with the pooling chosen in the config.

``kind``:
- ``'RoIAlign'``: ``paddle.vision.ops.roi_align`` (no parameters);
- ``'DeformRoIPoolPack'``: deformable RoI pooling that predicts its offsets (DCN v1/v2 head);
- ``'ModulatedDeformRoIPoolPack'``: the same with a modulation mask (DCN v2).

Each RoI is pooled from one level, chosen as in the FPN paper
(``paddle.vision.ops.distribute_fpn_proposals``: level ``floor(canonical_level +
log2(sqrt(area) / canonical_scale))`` clamped to the available levels). The deformable packs
are one layer shared by all levels (as the box head's fcs are): boxes are given to it in the
level's own coordinates (divided by the stride) with ``spatial_scale = 1``, which is the same
sampling as ``spatial_scale = 1/stride`` on image coordinates, and the offsets are relative
to the RoI size anyway.
"""
from __future__ import annotations

import math
from typing import List, Sequence

import paddle
from paddle import nn

from ...layers import DeformRoIPoolPack, ModulatedDeformRoIPoolPack

KINDS = ("RoIAlign", "DeformRoIPoolPack", "ModulatedDeformRoIPoolPack")


class RoIExtractor(nn.Layer):
    """``forward(feats, rois, rois_num)`` -> ``[R, C, ph, pw]``.

    Args:
        kind: one of ``KINDS``.
        in_channels: channels of the feature maps.
        strides: stride of each feature map given to forward (P2..P5: 4, 8, 16, 32).
        output_size: bins per RoI side.
        sampling_ratio: samples per bin side (<= 0: adaptive).
        canonical_scale, canonical_level: FPN level rule (224, 4).
        fc_channels, gamma, offset_lr_mult, mask_init: options of the deformable packs.
    """

    def __init__(self, kind: str = "RoIAlign", in_channels: int = 256, strides: Sequence[int] = (4, 8, 16, 32),
                 output_size: int = 7, sampling_ratio: int = 2, canonical_scale: int = 224,
                 canonical_level: int = 4, fc_channels: int = 1024, gamma: float = 0.1,
                 offset_lr_mult: float = 1.0, mask_init: float = 0.5) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"RoI extractor kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.kind, self.strides = kind, [int(s) for s in strides]
        self.levels = [int(round(math.log2(s))) for s in self.strides]
        if any(2 ** lv != s for lv, s in zip(self.levels, self.strides)) or \
                self.levels != list(range(self.levels[0], self.levels[0] + len(self.levels))):
            raise ValueError(f"strides must be consecutive powers of two, got {list(strides)}")
        self.output_size, self.sampling_ratio = int(output_size), int(sampling_ratio)
        self.canonical_scale, self.canonical_level = int(canonical_scale), int(canonical_level)
        self.out_channels = int(in_channels)
        if kind == "DeformRoIPoolPack":
            self.pool = DeformRoIPoolPack(in_channels, output_size, 1.0, sampling_ratio, gamma,
                                          fc_channels=fc_channels, offset_lr_mult=offset_lr_mult)
        elif kind == "ModulatedDeformRoIPoolPack":
            self.pool = ModulatedDeformRoIPoolPack(in_channels, output_size, 1.0, sampling_ratio, gamma,
                                                   fc_channels=fc_channels, offset_lr_mult=offset_lr_mult,
                                                   mask_init=mask_init)
        else:
            self.pool = None

    def _pool_level(self, feat: paddle.Tensor, rois: paddle.Tensor, rois_num: paddle.Tensor,
                     stride: int) -> paddle.Tensor:
        if self.pool is None:
            return paddle.vision.ops.roi_align(feat, rois, rois_num, self.output_size, 1.0 / stride,
                                               self.sampling_ratio, aligned=True)
        if paddle.in_dynamic_mode() and rois.shape[0] == 0:
            # no RoI on this level: skip the pack (Paddle 3.3.1's matmul backward fails on its
            # empty offset-fc input when the features need no gradient)
            return paddle.zeros([0, feat.shape[1], self.output_size, self.output_size], feat.dtype)
        return self.pool(feat, rois / float(stride), rois_num)

    def forward(self, feats: List[paddle.Tensor], rois: paddle.Tensor, rois_num: paddle.Tensor) -> paddle.Tensor:
        """feats: one map per stride; rois ``[R, 4]`` image coordinates, image-major;
        rois_num ``[N]`` int32."""
        feats = feats[: len(self.strides)]
        if len(self.strides) == 1:
            return self._pool_level(feats[0], rois, rois_num, self.strides[0])
        multi, restore, nums = paddle.vision.ops.distribute_fpn_proposals(
            rois, self.levels[0], self.levels[-1], self.canonical_level, self.canonical_scale,
            pixel_offset=False, rois_num=rois_num)
        pooled = [self._pool_level(f, r, n, s) for f, r, n, s in zip(feats, multi, nums, self.strides)]
        return paddle.gather(paddle.concat(pooled), restore.reshape([-1]))
