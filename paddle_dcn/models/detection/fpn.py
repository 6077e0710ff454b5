"""Feature Pyramid Network neck (Lin et al. 2017)."""
from __future__ import annotations

from typing import List, Sequence

import paddle
import paddle.nn.functional as F
from paddle import nn


class FPN(nn.Layer):
    """Top-down pyramid over backbone maps of strides ``in_strides`` (e.g. C2..C5: 4..32).

    ``forward([C_i])`` -> ``[P_i] + extra``: a 1x1 lateral conv per input, top-down nearest
    upsampling and sum, a 3x3 output conv per level (all ``out_channels``), then
    ``num_extra`` more levels by stride-2 max pooling of the last (P6 for the RPN).
    ``out_strides`` lists the stride of every output.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256,
                 in_strides: Sequence[int] = (4, 8, 16, 32), num_extra: int = 1) -> None:
        super().__init__()
        if len(in_channels) != len(in_strides):
            raise ValueError(f"FPN: in_channels ({len(in_channels)}) and in_strides ({len(in_strides)}) differ")
        init = nn.initializer.KaimingUniform(negative_slope=1.0)  # XavierUniform-like for linear convs
        self.lateral = nn.LayerList([nn.Conv2D(c, out_channels, 1, weight_attr=paddle.ParamAttr(initializer=init))
                                     for c in in_channels])
        self.output = nn.LayerList([nn.Conv2D(out_channels, out_channels, 3, padding=1,
                                              weight_attr=paddle.ParamAttr(initializer=init))
                                    for _ in in_channels])
        self.num_extra = int(num_extra)
        self.out_channels = int(out_channels)
        self.out_strides: List[int] = list(in_strides) + [in_strides[-1] * 2 ** (i + 1) for i in range(num_extra)]

    def forward(self, feats: List[paddle.Tensor]) -> List[paddle.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            up = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
            laterals[i - 1] = laterals[i - 1] + up
        outs = [conv(x) for conv, x in zip(self.output, laterals)]
        for _ in range(self.num_extra):
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return outs
