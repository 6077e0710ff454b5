"""Position-sensitive deformable RoI pooling layer (the DCN v1 paper's R-FCN head)."""
from __future__ import annotations

from typing import Optional

import paddle
from paddle.jit.marker import unified

from .. import ops
from . import _args
from ._versioning import VersionedLayer


@unified  # plain Python in dygraph and on static Values (see _args.OpArgs)
def _deform_psroi_pool(args: _args.OpArgs, x, boxes, boxes_num, offset) -> paddle.Tensor:
    dtype = _args.op_dtype(x)
    return ops.deform_psroi_pool(
        _args.plain_layout(_args.cast(x, dtype)),
        _args.plain_layout(_args.cast(boxes, dtype)),
        _args.plain_layout(boxes_num),
        args.output_channels,
        list(args.output_size),
        offset=_args.plain_layout(_args.cast(offset, dtype)),
        spatial_scale=args.spatial_scale,
        part_size=list(args.part_size),
        sample_per_part=args.sample_per_part,
        trans_std=args.trans_std,
    )


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
        output_size: _args.IntPair,
        spatial_scale: float = 1.0,
        part_size: Optional[_args.IntPair] = None,
        sample_per_part: int = 4,
        trans_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.output_channels = _args.positive_int(output_channels, "output_channels")
        self.output_size = _args.int_pair(output_size, "output_size", 1)
        self.spatial_scale = _args.positive_float(spatial_scale, "spatial_scale")
        self.part_size = (
            list(self.output_size) if part_size is None else _args.int_pair(part_size, "part_size", 1)
        )
        self.sample_per_part = _args.positive_int(sample_per_part, "sample_per_part")
        if isinstance(trans_std, bool) or not isinstance(trans_std, (int, float)):
            raise ValueError(f"trans_std must be a number, got {trans_std!r}")
        self.trans_std = float(trans_std)
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
        return _deform_psroi_pool(self._op_args, x, boxes, boxes_num, offset)

    def extra_repr(self) -> str:
        return (
            f"output_channels={self.output_channels}, output_size={self.output_size}, "
            f"spatial_scale={self.spatial_scale}, part_size={self.part_size}, "
            f"sample_per_part={self.sample_per_part}, trans_std={self.trans_std}"
        )
