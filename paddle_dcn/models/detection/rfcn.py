"""R-FCN (Dai et al. 2016) with deformable position-sensitive RoI pooling (Dai et al. 2017).

On one pyramid level (``head_stride``, default 16): a 1x1 conv + ReLU to ``mid_channels``,
then position-sensitive score maps, ``(C+1)*k*k`` channels for classes and ``4*k*k`` for
class-agnostic boxes. Each RoI is pooled position-sensitively into ``k x k`` bins
(``DeformPSRoIPool``) and the bins are averaged (voting) into ``C+1`` logits and 4 deltas.

``deformable: true`` is the DCN v1 paper's head: offsets come from the same pooling, without
offsets, over a zero-initialised conv's ``2*n*k*k``-channel map (n = C+1 offset pairs per
bin for the class maps, one class-agnostic pair for the box maps), scaled by ``trans_std``.
``deformable: false`` is plain R-FCN (PS RoI pooling with the same sampling).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import paddle
import paddle.nn.functional as F
from paddle import nn

from ...layers import DeformPSRoIPool
from ...registry import MODELS
from .two_stage import TwoStageDetector


def _conv1x1(cin: int, cout: int, std: Optional[float] = 0.01) -> nn.Conv2D:
    init = nn.initializer.Constant(0.0) if std is None else nn.initializer.Normal(0.0, std)
    return nn.Conv2D(cin, cout, 1, weight_attr=paddle.ParamAttr(initializer=init),
                     bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)))


@MODELS.register()
class RFCN(TwoStageDetector):
    """R-FCN on the shared backbone + FPN + RPN (see TwoStageDetector for the common args).

    Args:
        head_stride: the FPN level (stride) the position-sensitive maps are computed on.
        mid_channels: width of the 1x1 reduction conv.
        group_size: ``k`` (bins per side).
        deformable: deformable PS RoI pooling (True) or plain (False).
        sample_per_part, trans_std: of ``DeformPSRoIPool``.
    """

    def __init__(self, backbone: Dict[str, Any], num_classes: int, neck: Optional[Dict[str, Any]] = None,
                 rpn: Optional[Dict[str, Any]] = None, roi_sampling: Optional[Dict[str, Any]] = None,
                 test: Optional[Dict[str, Any]] = None, head_stride: int = 16, mid_channels: int = 256,
                 group_size: int = 7, deformable: bool = True, sample_per_part: int = 4,
                 trans_std: float = 0.1, backbone_weights: Optional[str] = None) -> None:
        super().__init__(backbone, num_classes, neck, rpn, roi_sampling, test, backbone_weights)
        if head_stride not in self.neck.out_strides:
            raise ValueError(f"head_stride must be one of the FPN strides {self.neck.out_strides}, got {head_stride}")
        self.level = self.neck.out_strides.index(head_stride)
        k, n = int(group_size), self.num_classes + 1
        self.k, self.deformable = k, bool(deformable)
        scale = 1.0 / head_stride
        self.reduce = nn.Conv2D(self.neck.out_channels, mid_channels, 1)
        self.cls_maps = _conv1x1(mid_channels, n * k * k)
        self.reg_maps = _conv1x1(mid_channels, 4 * k * k, 0.001)
        common = dict(output_size=k, spatial_scale=scale, part_size=k, sample_per_part=sample_per_part,
                      trans_std=trans_std)
        self.cls_pool = DeformPSRoIPool(n, **common)
        self.reg_pool = DeformPSRoIPool(4, **common)
        if self.deformable:
            self.cls_offset_maps = _conv1x1(mid_channels, 2 * n * k * k, None)
            self.reg_offset_maps = _conv1x1(mid_channels, 2 * k * k, None)
            self.cls_offset_pool = DeformPSRoIPool(2 * n, **common)
            self.reg_offset_pool = DeformPSRoIPool(2, **common)

    def box_predictions(self, feats, rois, rois_num):
        x = F.relu(self.reduce(feats[self.level]))
        cls_offset = reg_offset = None
        if self.deformable:
            cls_offset = self.cls_offset_pool(self.cls_offset_maps(x), rois, rois_num)
            reg_offset = self.reg_offset_pool(self.reg_offset_maps(x), rois, rois_num)
        cls = self.cls_pool(self.cls_maps(x), rois, rois_num, cls_offset)
        reg = self.reg_pool(self.reg_maps(x), rois, rois_num, reg_offset)
        return cls.mean(axis=[2, 3]), reg.mean(axis=[2, 3])
