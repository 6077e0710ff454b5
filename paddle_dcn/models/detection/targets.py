"""Training targets (NumPy): IoU matching, balanced sampling, RPN and box-head targets.

Label convention: ``1`` foreground, ``0`` background, ``-1`` ignored. Sampling draws from
``numpy.random`` (seeded per epoch by the trainer) unless a Generator is given.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .boxes import box_iou_np, encode_np


def match(iou: np.ndarray, pos_thr: float, neg_thr: float,
          allow_low_quality: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Assigns each candidate (column of ``iou [G, A]``) to its best ground truth.

    Returns ``(labels [A], matched [A])``: label 1 when the best IoU is ``>= pos_thr``, 0 when
    it is ``< neg_thr``, -1 between; ``matched`` is the best gt's index (0 when G == 0).
    ``allow_low_quality``: each gt's best candidates (all ties) are positives too, even below
    ``pos_thr`` (Faster R-CNN's RPN rule), when that IoU is > 0.
    """
    num_gt, num = iou.shape
    if num_gt == 0:
        return np.zeros(num, np.int64), np.zeros(num, np.int64)
    matched = iou.argmax(0)
    best = iou.max(0)
    labels = np.full(num, -1, np.int64)
    labels[best < neg_thr] = 0
    labels[best >= pos_thr] = 1
    if allow_low_quality:
        gt_best = iou.max(1, keepdims=True)
        g, a = np.nonzero((iou == gt_best) & (gt_best > 0))
        labels[a] = 1
        matched[a] = g
    return labels, matched


def sample(labels: np.ndarray, num: int, pos_fraction: float,
           rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, np.ndarray]:
    """At most ``num * pos_fraction`` positives and ``num - #positives`` negatives, at random.

    Returns ``(pos_idx, neg_idx)`` (sorted index arrays into ``labels``).
    """
    pos = np.nonzero(labels == 1)[0]
    neg = np.nonzero(labels == 0)[0]
    num_pos = min(len(pos), int(num * pos_fraction))
    num_neg = min(len(neg), num - num_pos)
    perm = (rng.permutation if rng is not None else np.random.permutation)
    pos = np.sort(pos[perm(len(pos))[:num_pos]])
    neg = np.sort(neg[perm(len(neg))[:num_neg]])
    return pos, neg


def rpn_targets(anchors: np.ndarray, gt_boxes: np.ndarray, batch_size_per_im: int = 256,
                pos_fraction: float = 0.5, pos_thr: float = 0.7, neg_thr: float = 0.3,
                weights=(1.0, 1.0, 1.0, 1.0), straddle_thr: float = -1.0,
                image_hw: Optional[Tuple[float, float]] = None,
                rng: Optional[np.random.Generator] = None) -> dict:
    """RPN targets of one image.

    Args:
        anchors: ``[A, 4]`` all anchors of all levels (flattened in the head's order).
        gt_boxes: ``[G, 4]`` the image's boxes.
        straddle_thr: with ``image_hw``, anchors sticking out of the image by more than this
            many pixels are ignored (< 0: keep all).

    Returns ``{'pos': idx, 'neg': idx, 'deltas': [len(pos), 4]}``: the sampled anchors and the
    regression targets of the positives.
    """
    iou = box_iou_np(gt_boxes, anchors)
    labels, matched = match(iou, pos_thr, neg_thr, allow_low_quality=True)
    if straddle_thr >= 0 and image_hw is not None:
        h, w = image_hw
        outside = ((anchors[:, 0] < -straddle_thr) | (anchors[:, 1] < -straddle_thr)
                   | (anchors[:, 2] > w + straddle_thr) | (anchors[:, 3] > h + straddle_thr))
        labels[outside] = -1
    pos, neg = sample(labels, batch_size_per_im, pos_fraction, rng)
    deltas = (encode_np(gt_boxes[matched[pos]], anchors[pos], weights) if len(pos)
              else np.zeros((0, 4), np.float32))
    return {"pos": pos, "neg": neg, "deltas": deltas}


def roi_targets(proposals: np.ndarray, gt_boxes: np.ndarray, gt_classes: np.ndarray,
                batch_size_per_im: int = 512, pos_fraction: float = 0.25, fg_thr: float = 0.5,
                bg_thr: float = 0.5, weights=(10.0, 10.0, 5.0, 5.0), add_gt: bool = True,
                rng: Optional[np.random.Generator] = None) -> dict:
    """Box-head targets of one image.

    The ground-truth boxes are added to the proposals (``add_gt``); a proposal is foreground
    when its best IoU is ``>= fg_thr``, background when ``< bg_thr``.

    Returns ``{'rois': [R, 4], 'labels': [R] (class 0..C-1, -1 for background),
    'deltas': [R, 4] (zeros for background), 'num_fg': int}``; foreground rows first.
    """
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    proposals = np.asarray(proposals, np.float32).reshape(-1, 4)
    if add_gt and len(gt_boxes):
        proposals = np.concatenate([proposals, gt_boxes], 0)
    iou = box_iou_np(gt_boxes, proposals)
    labels, matched = match(iou, fg_thr, bg_thr)
    pos, neg = sample(labels, batch_size_per_im, pos_fraction, rng)
    rois = np.concatenate([proposals[pos], proposals[neg]], 0)
    classes = np.concatenate([np.asarray(gt_classes, np.int64)[matched[pos]],
                              np.full(len(neg), -1, np.int64)])
    deltas = np.zeros((len(rois), 4), np.float32)
    if len(pos):
        deltas[: len(pos)] = encode_np(gt_boxes[matched[pos]], proposals[pos], weights)
    return {"rois": rois.astype(np.float32), "labels": classes, "deltas": deltas, "num_fg": len(pos)}
