"""Detection transforms: they take and return a whole sample dict, so boxes follow the image.

A sample is ``{'image': HWC uint8/float32, 'gt_boxes': [G, 4] float32 (x1, y1, x2, y2
pixels), 'gt_classes': [G] int64, 'im_id': int64, 'scale_factor': [2] (sy, sx) float32}``.
:class:`DetCompose` runs a pipeline in which a detection transform (``on_sample = True``)
gets the sample and any other registered transform (``Normalize``, ``ToCHW``, ...) gets only
the image. Geometric image-only transforms (crops, ``Resize``) would desynchronise the boxes
and are refused.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np
from PIL import Image

from ..registry import TRANSFORMS, build

_IMAGE_ONLY_OK = ("Normalize", "ToCHW")


class DetCompose:
    """Applies the transforms built from ``cfgs`` to a sample dict (see the module doc)."""

    def __init__(self, cfgs: List[Dict[str, Any]]) -> None:
        self.transforms = []
        for c in cfgs or []:
            t = build(TRANSFORMS, c) if isinstance(c, dict) else c
            if not getattr(t, "on_sample", False) and type(t).__name__ not in _IMAGE_ONLY_OK:
                raise ValueError(f"detection transforms: {type(t).__name__} changes the image geometry "
                                 f"without the boxes; use ResizeKeepRatio / RandomFlip, or one of "
                                 f"{', '.join(_IMAGE_ONLY_OK)}")
            self.transforms.append(t)

    def __call__(self, sample: Dict[str, Any]) -> Dict[str, Any]:
        for t in self.transforms:
            if getattr(t, "on_sample", False):
                sample = t(sample)
            else:
                sample["image"] = t(sample["image"])
        return sample


@TRANSFORMS.register()
class ResizeKeepRatio:
    """Scales the image (and boxes) so the short side is ``target_size`` and the long side at
    most ``max_size``, keeping the aspect ratio (PaddleDetection's ``Resize(keep_ratio=True)``).
    Multiplies the sample's ``scale_factor`` (sy, sx) by the scale used."""

    on_sample = True

    def __init__(self, target_size: int, max_size: int) -> None:
        if int(target_size) < 1 or int(max_size) < int(target_size):
            raise ValueError(f"ResizeKeepRatio: need 1 <= target_size <= max_size, got {target_size}, {max_size}")
        self.target_size, self.max_size = int(target_size), int(max_size)

    def __call__(self, sample: Dict[str, Any]) -> Dict[str, Any]:
        image = sample["image"]
        h, w = image.shape[:2]
        scale = min(self.target_size / min(h, w), self.max_size / max(h, w))
        nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        if (nh, nw) != (h, w):
            image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
        sy, sx = nh / h, nw / w
        sample["image"] = image
        sample["gt_boxes"] = (sample["gt_boxes"] * np.array([sx, sy, sx, sy], np.float32)).astype(np.float32)
        sample["scale_factor"] = (np.asarray(sample.get("scale_factor", [1.0, 1.0]), np.float32)
                                  * np.array([sy, sx], np.float32))
        return sample


@TRANSFORMS.register()
class RandomFlip:
    """Flips image and boxes left-right with probability ``prob`` (``numpy.random``)."""

    on_sample = True

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = float(prob)

    def __call__(self, sample: Dict[str, Any]) -> Dict[str, Any]:
        if np.random.rand() >= self.prob:
            return sample
        image = sample["image"]
        w = image.shape[1]
        sample["image"] = np.ascontiguousarray(image[:, ::-1])
        b = sample["gt_boxes"].copy()
        sample["gt_boxes"] = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1).astype(np.float32)
        return sample


def collate_detection(items: Sequence[Dict[str, Any]], size_divisor: int = 32) -> Dict[str, np.ndarray]:
    """Batches samples of different sizes: images zero-padded (bottom/right) to the batch's
    largest H and W rounded up to ``size_divisor``; boxes padded to the most boxes of any image.

    Returns ``{'image': [N, C, H, W] float32, 'im_shape': [N, 2] (h, w of the unpadded image)
    float32, 'scale_factor': [N, 2] (sy, sx) float32, 'im_id': [N] int64, 'gt_boxes':
    [N, G, 4] float32, 'gt_classes': [N, G] int64 (-1 padding), 'gt_num': [N] int32}``.
    """
    images = [np.asarray(it["image"], np.float32) for it in items]
    if any(im.ndim != 3 for im in images):
        raise ValueError("collate_detection: images must be CHW float arrays (end the pipeline with ToCHW)")
    c = images[0].shape[0]
    d = max(1, int(size_divisor))
    h = -(-max(im.shape[1] for im in images) // d) * d
    w = -(-max(im.shape[2] for im in images) // d) * d
    batch = np.zeros((len(images), c, h, w), np.float32)
    for i, im in enumerate(images):
        batch[i, :, : im.shape[1], : im.shape[2]] = im
    g = max(1, max(len(it["gt_boxes"]) for it in items))
    boxes = np.zeros((len(items), g, 4), np.float32)
    classes = np.full((len(items), g), -1, np.int64)
    num = np.zeros(len(items), np.int32)
    for i, it in enumerate(items):
        n = len(it["gt_boxes"])
        boxes[i, :n] = it["gt_boxes"]
        classes[i, :n] = it["gt_classes"]
        num[i] = n
    return {"image": batch,
            "im_shape": np.array([im.shape[1:] for im in images], np.float32),
            "scale_factor": np.stack([np.asarray(it["scale_factor"], np.float32) for it in items]),
            "im_id": np.array([it["im_id"] for it in items], np.int64),
            "gt_boxes": boxes, "gt_classes": classes, "gt_num": num}
