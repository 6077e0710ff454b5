"""Deformable RoI pooling: RoIAlign-based (DCN v2) and position-sensitive (DCN v1 R-FCN).

``deform_roi_pool`` with no offset (or a zero offset) equals
``paddle.vision.ops.roi_align`` for the same arguments; ``deform_psroi_pool`` is
the deformable position-sensitive pooling of the DCN v1 paper. Exact formulas:
docs/ops.md (RoI pooling section).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import paddle
from paddle.jit.marker import unified

from . import _checks, workspace
from ._checks import IntPair
from ._library import load_library, run_op


@unified  # plain Python over shapes: runs as-is in dygraph and under to_static
def deform_roi_pool(
    x: paddle.Tensor,
    boxes: paddle.Tensor,
    boxes_num: paddle.Tensor,
    output_size: IntPair,
    offset: Optional[paddle.Tensor] = None,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    gamma: float = 0.1,
    aligned: bool = True,
    name: Optional[str] = None,
) -> paddle.Tensor:
    """Deformable RoIAlign pooling (DCN v2's deformable RoI pooling).

    Args:
        x: ``[N, C, H, W]`` feature map, float32/float64 (GPU: also float16/bfloat16).
        boxes: ``[K, 4]`` boxes ``(x1, y1, x2, y2)`` in input-image units, boxes of image 0
            first, then image 1, ...
        boxes_num: ``[N]`` int32/int64, number of boxes of each image (sums to K).
        output_size: ``PH`` or ``(PH, PW)``, bins per box.
        offset: ``[K, 2, PH, PW]`` or None. Channel 0 moves a bin along x, channel 1 along y,
            in units of the box size: bin (i, j) moves by ``gamma * offset[k, :, i, j] *
            (roi_w, roi_h)``.
        spatial_scale: feature-map pixels per input-image unit (1/stride).
        sampling_ratio: samples per bin along each axis; ``<= 0`` means
            ``ceil(roi_size / output_size)`` (adaptive, as roi_align).
        gamma: scale of the offsets.
        aligned: shift box corners by -0.5 pixel (as roi_align's ``aligned``); when False a
            box is at least 1x1 pixel.

    Returns:
        ``[K, C, PH, PW]``: each bin is the mean of its bilinear samples (roi_align's edge
        convention: a sample at ``y < -1 or y > H`` (or x) is zero, others are clamped onto
        the map). The modulated form multiplies this by a ``[K, 1, PH, PW]`` mask outside the
        op. Gradients flow to ``x`` and ``offset``; boxes get none. The CPU backward is
        deterministic; on GPU the gradient for ``x`` uses atomics unless
        ``paddle_dcn.ops.set_deterministic(True)`` (or ``FLAGS_cudnn_deterministic``).
    """
    pooled = _checks.pair(output_size, "output_size", 1)
    sampling_ratio = _checks.integer(sampling_ratio, "sampling_ratio")
    spatial_scale = _checks.positive_number(spatial_scale, "spatial_scale", float32=True)
    gamma = _checks.number(gamma, "gamma", float32=True)
    aligned = _checks.boolean(aligned, "aligned")

    x_shape = _checks.shape_of(x, "x")
    _checks.expect_rank("x", x_shape, 4, "[N, C, H, W]")
    _checks.expect_nonempty_map("x", x_shape, "[N, C, H, W]")
    _checks.expect_supported_dtype("x", x)
    _check_grid("sampling_ratio", sampling_ratio, x_shape)
    num_rois = _check_boxes(boxes, boxes_num, x_shape[0])
    _checks.expect_host_or_same_place("x", x, boxes=boxes, boxes_num=boxes_num)
    if offset is not None:
        _checks.expect_shape(
            "offset", _checks.shape_of(offset, "offset"), [num_rois, 2, pooled[0], pooled[1]],
            "[K, 2, PH, PW]",
        )
        _checks.expect_dtype("offset", offset, x, "x")
    _checks.expect_same_place("x", x, offset=offset)

    load_library()
    attrs = (pooled, spatial_scale, sampling_ratio, gamma, aligned,
             workspace.deterministic())
    if offset is None:
        return run_op("pdcn_deform_roi_pool_plain", x, boxes, boxes_num, *attrs)
    return run_op("pdcn_deform_roi_pool", x, boxes, boxes_num, offset, *attrs)


@unified
def deform_psroi_pool(
    x: paddle.Tensor,
    boxes: paddle.Tensor,
    boxes_num: paddle.Tensor,
    output_channels: int,
    output_size: IntPair,
    offset: Optional[paddle.Tensor] = None,
    spatial_scale: float = 1.0,
    part_size: Optional[IntPair] = None,
    sample_per_part: int = 4,
    trans_std: float = 0.1,
    name: Optional[str] = None,
) -> paddle.Tensor:
    """Deformable position-sensitive RoI pooling (the R-FCN head of DCN v1).

    Args:
        x: ``[N, output_channels * PH * PW, H, W]``; input channel ``(c * PH + i) * PW + j``
            feeds bin (i, j) of output channel c.
        boxes: ``[K, 4]`` boxes ``(x1, y1, x2, y2)`` in input-image units (rounded to integers).
        boxes_num: ``[N]`` int32/int64, number of boxes of each image (sums to K).
        output_channels: OC, channels of the output.
        output_size: ``PH`` or ``(PH, PW)``.
        offset: ``[K, 2 * G, PART_H, PART_W]`` or None; G offset groups (G divides OC; G = 1 is
            class-agnostic), each an (x, y) pair per part cell, in units of the box size times
            ``trans_std``. Bin (i, j) uses part cell ``(i * PART_H // PH, j * PART_W // PW)``.
        spatial_scale: feature-map pixels per input-image unit.
        part_size: ``(PART_H, PART_W)`` or an int; None means output_size.
        sample_per_part: S, each bin averages an S x S sub-grid of samples.
        trans_std: scale of the offsets.

    Returns:
        ``[K, output_channels, PH, PW]``. Samples outside ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``
        are skipped (a bin without samples is 0). Gradients flow to ``x`` and ``offset``.
    """
    output_channels = _checks.positive_int(output_channels, "output_channels")
    pooled = _checks.pair(output_size, "output_size", 1)
    parts = pooled if part_size is None else _checks.pair(part_size, "part_size", 1)
    sample_per_part = _checks.positive_int(sample_per_part, "sample_per_part")
    spatial_scale = _checks.positive_number(spatial_scale, "spatial_scale", float32=True)
    trans_std = _checks.number(trans_std, "trans_std", float32=True)

    x_shape = _checks.shape_of(x, "x")
    _checks.expect_rank("x", x_shape, 4, "[N, output_channels*PH*PW, H, W]")
    _checks.expect_nonempty_map("x", x_shape, "[N, output_channels*PH*PW, H, W]")
    _checks.expect_supported_dtype("x", x)
    _check_grid("sample_per_part", sample_per_part, x_shape)
    in_channels = output_channels * pooled[0] * pooled[1]
    _checks.expect_shape(
        "x", x_shape, [x_shape[0], in_channels, x_shape[2], x_shape[3]],
        "[N, output_channels*PH*PW, H, W]",
    )
    num_rois = _check_boxes(boxes, boxes_num, x_shape[0])
    _checks.expect_host_or_same_place("x", x, boxes=boxes, boxes_num=boxes_num)
    if offset is not None:
        o_shape = _checks.shape_of(offset, "offset")
        layout = "[K, 2*G, PART_H, PART_W] with G dividing output_channels"
        _checks.expect_rank("offset", o_shape, 4, layout)
        groups2 = o_shape[1]
        if groups2 >= 0 and (groups2 < 2 or groups2 % 2 or output_channels % (groups2 // 2)):
            raise ValueError(
                f"offset must have shape {layout} = [{num_rois}, 2*G, {parts[0]}, {parts[1]}] "
                f"(output_channels={output_channels}), got {o_shape}"
            )
        _checks.expect_shape("offset", o_shape, [num_rois, groups2, parts[0], parts[1]], layout)
        _checks.expect_dtype("offset", offset, x, "x")
    _checks.expect_same_place("x", x, offset=offset)

    load_library()
    attrs = (output_channels, pooled, parts, spatial_scale, sample_per_part, trans_std,
             workspace.deterministic())
    if offset is None:
        return run_op("pdcn_deform_psroi_pool_plain", x, boxes, boxes_num, *attrs)
    return run_op("pdcn_deform_psroi_pool", x, boxes, boxes_num, offset, *attrs)


def _check_grid(name: str, samples_per_axis: int, x_shape: list) -> None:
    """A fixed sample grid obeys the adaptive grid's cap, max(64, 2 * max(H, W) + 2) per axis
    (custom_ops/kernels/deform_roi_pool.h default_max_grid): the CPU keeps a box's samples in
    memory. Unknown H or W (-1 while tracing) leaves it to the compiled op's check."""
    h, w = x_shape[2], x_shape[3]
    if h < 0 or w < 0:
        return
    cap = max(64, 2 * max(h, w) + 2)
    if samples_per_axis > cap:
        raise ValueError(f"{name} must be at most {cap} (max(64, 2 * max(H, W) + 2)) for a {h}x{w} "
                         f"feature map, got {samples_per_axis}")


def _check_boxes(boxes: paddle.Tensor, boxes_num: paddle.Tensor, batch: int) -> int:
    """Checks boxes ``[K, 4]`` and boxes_num ``[N]`` (summing to K where known); returns K."""
    b_shape = _checks.shape_of(boxes, "boxes")
    if len(b_shape) != 2 or b_shape[1] not in (4, -1):
        raise ValueError(f"boxes must have shape [K, 4] (x1, y1, x2, y2), got {b_shape}")
    if boxes.dtype not in _checks.FLOAT_DTYPES:
        raise ValueError(f"boxes must be a floating-point tensor, got dtype {boxes.dtype}")
    n_shape = _checks.shape_of(boxes_num, "boxes_num")
    _checks.expect_shape("boxes_num", n_shape, [batch], "[N] (boxes per image)")
    if boxes_num.dtype not in (paddle.int32, paddle.int64):
        raise ValueError(f"boxes_num must be int32 or int64, got dtype {boxes_num.dtype}")
    num_rois = b_shape[0]
    # Checked where it costs no device sync: boxes_num in host memory. On GPU the op
    # derives each box's image on the device; boxes that boxes_num leaves uncovered
    # pool to zero (docs/ops.md).
    if (isinstance(boxes_num, paddle.Tensor) and paddle.in_dynamic_mode()
            and boxes_num.place.is_cpu_place()):
        counts = boxes_num.numpy().astype(np.int64)
        if (counts < 0).any() or (num_rois >= 0 and int(counts.sum()) != num_rois):
            raise ValueError(
                f"boxes_num must be non-negative and sum to the number of boxes K={num_rois} "
                f"(boxes shape [K, 4]), got boxes_num={counts.tolist()}"
            )
    return num_rois
