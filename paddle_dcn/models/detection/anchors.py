"""Anchors: one set of cell anchors per feature level, shifted over the level's grid.

For a level of stride ``s`` with ``sizes`` and ``aspect_ratios`` (``r = h / w``), the cell
anchors are ``(-w/2, -h/2, w/2, h/2)`` with ``w = size / sqrt(r)``, ``h = size * sqrt(r)``
(ordered size-major, then ratio); the anchor of cell ``(i, j)`` is the cell anchor shifted by
``((j + offset) * s, (i + offset) * s)``. ``offset = 0`` is PaddleDetection's and mmdet's
convention. The layout ``[H, W, A, 4]`` is what ``paddle.vision.ops.generate_proposals``
takes; flattened it is ``[H*W*A, 4]`` in that order (the order the RPN head's outputs are
flattened in).
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
import paddle


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
    """``[len(sizes) * len(aspect_ratios), 4]`` anchors centred at the origin."""
    out = []
    for size in sizes:
        for r in aspect_ratios:
            if size <= 0 or r <= 0:
                raise ValueError(f"anchor sizes and aspect_ratios must be positive, got {size}, {r}")
            w = size / np.sqrt(r)
            h = size * np.sqrt(r)
            out.append([-w / 2, -h / 2, w / 2, h / 2])
    return np.asarray(out, np.float32)


def grid_anchors(cell: np.ndarray, height: int, width: int, stride: float, offset: float = 0.0) -> np.ndarray:
    """``[height, width, A, 4]`` anchors of a ``height x width`` map of stride ``stride``."""
    xs = (np.arange(width, dtype=np.float32) + offset) * stride
    ys = (np.arange(height, dtype=np.float32) + offset) * stride
    sx, sy = np.meshgrid(xs, ys)  # [H, W]
    shifts = np.stack([sx, sy, sx, sy], -1)[:, :, None, :]
    return (shifts + cell[None, None]).astype(np.float32)


def grid_anchors_tensor(cell: np.ndarray, feat: paddle.Tensor, stride: float, offset: float = 0.0) -> paddle.Tensor:
    """:func:`grid_anchors` for the map ``feat [N, C, H, W]`` in Paddle (the map size may be
    dynamic, as in an exported model): ``[H, W, A, 4]`` float32."""
    shape = paddle.shape(feat)
    xs = (paddle.arange(0, shape[3], dtype="float32") + offset) * stride
    ys = (paddle.arange(0, shape[2], dtype="float32") + offset) * stride
    sy, sx = paddle.meshgrid(ys, xs)  # [H, W]
    shifts = paddle.stack([sx, sy, sx, sy], -1).unsqueeze(2)
    return shifts + paddle.to_tensor(cell).reshape([1, 1, -1, 4])


class AnchorGenerator:
    """Anchors for a list of feature levels.

    Args:
        sizes: one list of anchor sizes (pixels) per level, e.g. ``[[32], [64], [128], [256], [512]]``.
        aspect_ratios: ratios h/w shared by all levels.
        strides: the stride of each level (same length as ``sizes``).
        offset: cell-centre offset in strides (0 or 0.5).
    """

    def __init__(self, sizes: Sequence[Sequence[float]], aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
                 strides: Sequence[float] = (4, 8, 16, 32, 64), offset: float = 0.0) -> None:
        if len(sizes) != len(strides):
            raise ValueError(f"anchor sizes ({len(sizes)} levels) and strides ({len(strides)}) differ in length")
        self.strides = [float(s) for s in strides]
        self.offset = float(offset)
        self.cells = [cell_anchors(s, aspect_ratios) for s in sizes]
        if len({len(c) for c in self.cells}) != 1:
            raise ValueError("every level needs the same number of anchors per cell (sizes of equal length)")
        self.num_anchors = len(self.cells[0])

    def __call__(self, shapes: Sequence[Sequence[int]]) -> List[np.ndarray]:
        """``[(H, W) per level]`` -> ``[[H, W, A, 4] per level]``."""
        if len(shapes) != len(self.cells):
            raise ValueError(f"got {len(shapes)} feature levels, anchors are configured for {len(self.cells)}")
        return [grid_anchors(c, int(h), int(w), s, self.offset)
                for c, (h, w), s in zip(self.cells, shapes, self.strides)]

    def tensors(self, feats: Sequence[paddle.Tensor]) -> List[paddle.Tensor]:
        """``[[H, W, A, 4] per level]`` as Paddle tensors for the maps ``feats``."""
        if len(feats) != len(self.cells):
            raise ValueError(f"got {len(feats)} feature levels, anchors are configured for {len(self.cells)}")
        return [grid_anchors_tensor(c, f, s, self.offset) for c, f, s in zip(self.cells, feats, self.strides)]
