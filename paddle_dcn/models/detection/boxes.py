"""Box utilities: IoU, delta encoding/decoding, clipping. Boxes are ``(x1, y1, x2, y2)`` in
pixels, width ``x2 - x1`` (no +1: the convention of ``paddle.vision.ops`` with
``pixel_offset=False`` / ``box_normalized=True``).

Delta coding (Faster R-CNN): for a reference box with centre ``(px, py)`` and size
``(pw, ph)`` and a target box ``(tx, ty, tw, th)``::

    dx = wx * (tx - px) / pw     dy = wy * (ty - py) / ph
    dw = ww * log(tw / pw)       dh = wh * log(th / ph)

with ``weights = (wx, wy, ww, wh)`` ((1, 1, 1, 1) for the RPN, (10, 10, 5, 5) for the box
head). This is ``paddle.vision.ops.box_coder(..., prior_box_var=1/weights,
box_normalized=True)`` (the tests hold the two equal). Decoding clamps ``dw, dh`` at
``log(1000/16)`` so that huge deltas cannot overflow; ``box_coder`` does not (a delta of 100
decodes to +-inf there), which is why :func:`decode` is written out here. Targets are computed with NumPy (``*_np``); decoding, which the exported
model runs, is in Paddle.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import paddle

BBOX_CLIP = math.log(1000.0 / 16)


def box_area_np(boxes: np.ndarray) -> np.ndarray:
    """``[N, 4]`` -> ``[N]`` areas (0 for empty boxes)."""
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a [N, 4]`` with every box in ``b [M, 4]`` -> ``[N, M]`` (0 where the
    union is empty)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area_np(a)[:, None] + box_area_np(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def encode_np(boxes: np.ndarray, refs: np.ndarray, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> np.ndarray:
    """Deltas ``[N, 4]`` that move ``refs [N, 4]`` onto ``boxes [N, 4]`` (see the module doc)."""
    boxes = np.asarray(boxes, np.float64)
    refs = np.asarray(refs, np.float64)
    wx, wy, ww, wh = weights
    pw = refs[:, 2] - refs[:, 0]
    ph = refs[:, 3] - refs[:, 1]
    px = refs[:, 0] + 0.5 * pw
    py = refs[:, 1] + 0.5 * ph
    tw = boxes[:, 2] - boxes[:, 0]
    th = boxes[:, 3] - boxes[:, 1]
    tx = boxes[:, 0] + 0.5 * tw
    ty = boxes[:, 1] + 0.5 * th
    if (pw <= 0).any() or (ph <= 0).any() or (tw <= 0).any() or (th <= 0).any():
        raise ValueError("encode_np: boxes and refs need positive width and height")
    return np.stack([wx * (tx - px) / pw, wy * (ty - py) / ph, ww * np.log(tw / pw), wh * np.log(th / ph)],
                    1).astype(np.float32)


def decode(deltas: paddle.Tensor, refs: paddle.Tensor,
           weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> paddle.Tensor:
    """Inverse of :func:`encode_np` in Paddle: ``deltas [N, 4]``, ``refs [N, 4]`` -> boxes ``[N, 4]``."""
    wx, wy, ww, wh = [float(w) for w in weights]
    pw = refs[:, 2] - refs[:, 0]
    ph = refs[:, 3] - refs[:, 1]
    px = refs[:, 0] + 0.5 * pw
    py = refs[:, 1] + 0.5 * ph
    dx = deltas[:, 0] / wx
    dy = deltas[:, 1] / wy
    dw = paddle.clip(deltas[:, 2] / ww, max=BBOX_CLIP)
    dh = paddle.clip(deltas[:, 3] / wh, max=BBOX_CLIP)
    cx = dx * pw + px
    cy = dy * ph + py
    w = paddle.exp(dw) * pw
    h = paddle.exp(dh) * ph
    return paddle.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=1)


def clip_boxes(boxes: paddle.Tensor, height: paddle.Tensor, width: paddle.Tensor) -> paddle.Tensor:
    """Clamps ``boxes [N, 4]`` into the image ``[0, width] x [0, height]`` (scalars or tensors)."""
    x1 = paddle.minimum(paddle.clip(boxes[:, 0], min=0.0), width)
    y1 = paddle.minimum(paddle.clip(boxes[:, 1], min=0.0), height)
    x2 = paddle.minimum(paddle.clip(boxes[:, 2], min=0.0), width)
    y2 = paddle.minimum(paddle.clip(boxes[:, 3], min=0.0), height)
    return paddle.stack([x1, y1, x2, y2], axis=1)
