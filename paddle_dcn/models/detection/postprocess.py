"""From per-RoI class scores and box deltas to detections (decode, clip, class-wise NMS)."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import paddle
import paddle.nn.functional as F

from .boxes import clip_boxes, decode


def detections(logits: paddle.Tensor, deltas: paddle.Tensor, rois: paddle.Tensor, im_shape: paddle.Tensor,
               scale_factor: paddle.Tensor, weights: Sequence[float], score_thresh: float, nms_thresh: float,
               max_det: int) -> paddle.Tensor:
    """Detections of one image.

    Args:
        logits: ``[R, C+1]`` class logits (last column background); deltas ``[R, 4]``
            class-agnostic; rois ``[R, 4]`` in the resized image; im_shape ``[2]`` (h, w) of
            the resized image; scale_factor ``[2]`` (sy, sx) from the original to the resized.

    Returns ``[M, 6]`` rows ``(class, score, x1, y1, x2, y2)`` in original-image pixels,
    best first, at most ``max_det``, scores above ``score_thresh``, NMS per class at ``nms_thresh``.
    """
    num_classes = logits.shape[1] - 1
    probs = F.softmax(logits, axis=1)[:, :num_classes]
    boxes = clip_boxes(decode(deltas, rois, weights), im_shape[0], im_shape[1])
    scores = probs.reshape([-1])
    classes = paddle.tile(paddle.arange(num_classes, dtype="float32"), [paddle.shape(probs)[0]])
    boxes = boxes.unsqueeze(1).expand([-1, num_classes, 4]).reshape([-1, 4])
    keep = paddle.nonzero(scores > score_thresh).reshape([-1])
    scores, classes, boxes = paddle.gather(scores, keep), paddle.gather(classes, keep), paddle.gather(boxes, keep)
    # class-wise NMS as one NMS: boxes of different classes are moved apart so they never overlap
    offset = (classes * (paddle.max(im_shape) + 1.0)).unsqueeze(1)
    order = paddle.vision.ops.nms(boxes + offset, nms_thresh, scores)[:max_det]  # best first
    scores, classes, boxes = paddle.gather(scores, order), paddle.gather(classes, order), paddle.gather(boxes, order)
    sy, sx = scale_factor[0], scale_factor[1]
    boxes = boxes / paddle.stack([sx, sy, sx, sy]).reshape([1, 4])
    return paddle.concat([classes.unsqueeze(1), scores.unsqueeze(1), boxes], axis=1)


def batch_detections(logits: paddle.Tensor, deltas: paddle.Tensor, rois: List[paddle.Tensor],
                     im_shape: paddle.Tensor, scale_factor: paddle.Tensor, **kwargs) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """:func:`detections` for each image of a batch whose RoIs are ``rois`` (one tensor per
    image, concatenated in ``logits``/``deltas``) -> ``(bbox [sum M, 6], bbox_num [N] int32)``."""
    out, nums, start = [], [], 0
    for i, r in enumerate(rois):
        if len(rois) == 1:  # (also the exported, batch-1 case, where the count is dynamic)
            lg, dl = logits, deltas
        else:
            n = r.shape[0]
            lg, dl = logits[start: start + n], deltas[start: start + n]
            start += n
        det = detections(lg, dl, r, im_shape[i], scale_factor[i], **kwargs)
        out.append(det)
        nums.append(paddle.shape(det)[0:1])
    return paddle.concat(out), paddle.concat(nums).astype("int32")
