"""Position-sensitive deformable RoI pooling layer (the DCN v1 paper's R-FCN head)."""
from __future__ import annotations

from typing import Optional

import paddle

from .. import ops
from ..ops import _checks
from . import _args
from ._versioning import VersionedLayer


class DeformPSRoIPool(VersionedLayer):
    """Position-sensitive deformable RoI pooling with given offsets (no parameters).

    ``layer(x, boxes, boxes_num, offset=None)`` is ``paddle_dcn.ops.deform_psroi_pool``:
    x ``[N, output_channels*ph*pw, H, W]`` (channels laid out ``(c, gh, gw)``), boxes
    ``[K, 4]`` (x1, y1, x2, y2) in input-image coordinates, boxes_num ``[N]``, offset
    ``[K, 2*n_cls, part_h, part_w]`` (class-agnostic n_cls=1, or one (x, y) pair per
    class group) scaled by ``trans_std * (roi_w, roi_h)``; None means no deformation.
    Returns ``[K, output_channels, ph, pw]``.

    In R-FCN the offsets come from the same op run without offsets over a conv's
    ``2*n_cls*ph*pw``-channel map: ``DeformPSRoIPool(2*n_cls, ...)(offset_map, boxes, boxes_num)``.
    """

    def __init__(
        self,
        output_channels: int,
        output_size: _checks.IntPair,
        spatial_scale: float = 1.0,
        part_size: Optional[_checks.IntPair] = None,
        sample_per_part: int = 4,
        trans_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.output_channels = _checks.positive_int(output_channels, "output_channels")
        self.output_size = _checks.pair(output_size, "output_size", 1)
        self.spatial_scale = _checks.positive_number(spatial_scale, "spatial_scale", float32=True)
        self.part_size = (
            list(self.output_size) if part_size is None else _checks.pair(part_size, "part_size", 1)
        )
        self.sample_per_part = _checks.positive_int(sample_per_part, "sample_per_part")
        self.trans_std = _checks.number(trans_std, "trans_std", float32=True)
        self._op_args = _args.OpArgs(
            output_channels=self.output_channels, output_size=tuple(self.output_size),
            spatial_scale=self.spatial_scale, part_size=tuple(self.part_size),
            sample_per_part=self.sample_per_part, trans_std=self.trans_std,
        )

    def forward(
        self,
        x: paddle.Tensor,
        boxes: paddle.Tensor,
        boxes_num: paddle.Tensor,
        offset: Optional[paddle.Tensor] = None,
    ) -> paddle.Tensor:
        return _args.run_op(ops.deform_psroi_pool, self._op_args, x, boxes, boxes_num, offset=offset)

    def extra_repr(self) -> str:
        return (
            f"output_channels={self.output_channels}, output_size={self.output_size}, "
            f"spatial_scale={self.spatial_scale}, part_size={self.part_size}, "
            f"sample_per_part={self.sample_per_part}, trans_std={self.trans_std}"
        )
