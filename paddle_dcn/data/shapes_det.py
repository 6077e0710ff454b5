"""The built-in detection set: several distorted shapes per image, written as COCO json.

Each image (size varies around ``image_size``, aspect 3:4 to 4:3) has a textured background
with clutter strokes and 1..``max_objects`` shapes of the classification set's classes
(``geometric.SHAPES``), each under its own rotation, scale (about 10%-45% of the image side),
aspect ratio, shear and smooth elastic warp, in its own colour. Later shapes are painted over
earlier ones (partial occlusion); a shape's box is the box of its *visible* pixels, and a shape
left with less than 35% of its area visible is dropped from the annotations (but stays in the
image, as clutter). Sample ``i`` of a split is a pure function of ``(seed, split, i)`` and the
generator version.

Written once, on first use, to ``<cache_dir>/shapes_det_<split>_<hash>/`` (``images/*.png``
and ``annotations.json``; a temp folder renamed into place), then read through the ordinary
COCO loader, so the built-in data exercises exactly the code path of user data.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any, Dict, List, Optional

import numpy as np
from PIL import Image, ImageDraw

from ..registry import DATASETS
from .coco import COCODetection
from .geometric import CLASS_NAMES, SHAPES, SPLIT_CODES, _background, _bilinear, _smooth_field, default_cache_dir

GENERATOR_VERSION = 1
SUPERSAMPLE = 2
MIN_VISIBLE = 0.35


def _shape_mask(rng: np.random.Generator, label: int, h: int, w: int) -> np.ndarray:
    """A soft mask ``[h, w]`` in [0, 1] of one distorted shape at a random place."""
    side = min(h, w)
    scale = rng.uniform(0.05, 0.23) * side  # half-size: objects of ~10%..45% of the short side
    angle = rng.uniform(0, 2 * np.pi)
    aspect = np.exp(rng.uniform(-0.45, 0.45))
    shear = rng.uniform(-0.4, 0.4)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    lin = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([aspect, 1 / aspect]) * scale * SUPERSAMPLE
    centre = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h]) * SUPERSAMPLE
    big = Image.new("L", (w * SUPERSAMPLE, h * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(big)
    for poly, fill in SHAPES[CLASS_NAMES[label]]:
        draw.polygon([tuple(p) for p in poly @ lin.T + centre], fill=fill)
    mask = np.asarray(big.resize((w, h), Image.BOX), np.float32) / 255.0
    # non-rigid warp: a smooth displacement field of amplitude ~ 8-20% of the object size
    alpha = rng.uniform(0.08, 0.2) * scale
    size = max(h, w)
    dy = _smooth_field(rng, size, 5)[:h, :w] * alpha
    dx = _smooth_field(rng, size, 5)[:h, :w] * alpha
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    return _bilinear(mask, gy + dy, gx + dx)


def render_image(seed: int, split: str, index: int, image_size: int, num_classes: int,
                 max_objects: int) -> tuple:
    """``(image uint8 [H, W, 3], boxes [G, 4] (x1, y1, x2, y2), labels [G])``; pure function."""
    rng = np.random.default_rng([GENERATOR_VERSION, seed, SPLIT_CODES[split], index])
    ar = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    h = int(round(image_size * np.sqrt(ar)))
    w = int(round(image_size / np.sqrt(ar)))
    side = max(h, w)
    bg = _background(rng, side)[:h, :w]
    clutter = Image.new("L", (w, h), 0)
    cdraw = ImageDraw.Draw(clutter)
    for _ in range(int(rng.integers(2, 6))):
        p = rng.uniform(0, 1, size=4) * [w, h, w, h]
        cdraw.line([tuple(p[:2]), tuple(p[2:])], fill=255, width=int(rng.integers(1, 3)))
    cmask = np.asarray(clutter, np.float32)[..., None] / 255.0 * rng.uniform(0.3, 0.6)
    img = bg * (1 - cmask) + rng.uniform(0, 1, 3) * cmask

    n = int(rng.integers(1, max_objects + 1))
    labels = rng.integers(num_classes, size=n)
    masks, drawn = [], []
    for k in range(n):
        mask = _shape_mask(rng, int(labels[k]), h, w)
        under = mask > 0.5
        mean = img[under].mean(0) if under.any() else img.mean((0, 1))
        fg = rng.uniform(0, 1, 3)
        if np.abs(fg - mean).max() < 0.45:  # clearly separable from what is under it
            fg = np.where(mean < 0.5, np.minimum(mean + 0.5, 1.0), np.maximum(mean - 0.5, 0.0))
        shade = fg * (0.85 + 0.15 * _smooth_field(rng, side, 6)[:h, :w, None])
        img = img * (1 - mask[..., None]) + np.clip(shade, 0, 1) * mask[..., None]
        masks = [m * (1 - mask) for m in masks]  # the new shape hides what it covers
        masks.append(mask)
        drawn.append(float(under.sum()))
    boxes, classes = [], []
    for k, m in enumerate(masks):
        visible = m > 0.5
        if drawn[k] == 0 or visible.sum() < MIN_VISIBLE * drawn[k]:
            continue  # (almost) hidden: stays in the image as clutter, not annotated
        ys, xs = np.nonzero(visible)
        box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        if min(box[2] - box[0], box[3] - box[1]) < 2:
            continue
        boxes.append(box)
        classes.append(int(labels[k]))
    img = img + rng.normal(0, 0.02, size=img.shape)
    image = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return image, np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64)


def write_coco(directory: str, seed: int, split: str, num_images: int, image_size: int,
               num_classes: int, max_objects: int) -> str:
    """Renders the split into ``directory`` (``images/``, ``annotations.json``); returns the json path."""
    os.makedirs(os.path.join(directory, "images"), exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        image, boxes, classes = render_image(seed, split, i, image_size, num_classes, max_objects)
        name = f"{i:06d}.png"
        Image.fromarray(image).save(os.path.join(directory, "images", name))
        images.append({"id": i + 1, "file_name": name, "height": int(image.shape[0]), "width": int(image.shape[1])})
        for box, cls in zip(boxes.tolist(), classes.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cls + 1,
                                "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
    categories = [{"id": c + 1, "name": CLASS_NAMES[c], "supercategory": "shape"} for c in range(num_classes)]
    path = os.path.join(directory, "annotations.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"info": {"description": "paddle_dcn built-in shapes detection set", "version": GENERATOR_VERSION},
                   "images": images, "annotations": annotations, "categories": categories}, f)
    return path


@DATASETS.register()
class ShapesDetection(COCODetection):
    """The built-in detection set (see the module doc), read through :class:`COCODetection`.

    Args:
        split: 'train', 'val' or 'test' (independent images).
        num_images: images in the split.
        image_size: typical side (each image is about ``image_size`` on its mean side, aspect 3:4..4:3).
        num_classes: shape classes used (2..12).
        max_objects: objects per image are 1..max_objects.
        seed: generator seed.
        cache_dir: default ``$PDCN_DATA_HOME`` or ~/.cache/paddle_dcn.
        transforms, skip_empty, size_divisor: as COCODetection.
    """

    def __init__(self, split: str = "train", num_images: int = 1000, image_size: int = 128,
                 num_classes: int = 6, max_objects: int = 4, seed: int = 0, cache_dir: Optional[str] = None,
                 transforms: Optional[List[Dict[str, Any]]] = None, skip_empty: bool = False,
                 size_divisor: int = 32) -> None:
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {list(SPLIT_CODES)}, got {split!r}")
        if not 2 <= int(num_classes) <= len(CLASS_NAMES):
            raise ValueError(f"num_classes must be in [2, {len(CLASS_NAMES)}], got {num_classes}")
        if int(num_images) < 1 or int(image_size) < 32 or int(max_objects) < 1:
            raise ValueError(f"need num_images >= 1, image_size >= 32, max_objects >= 1; got "
                             f"{num_images}, {image_size}, {max_objects}")
        key = json.dumps([GENERATOR_VERSION, seed, split, num_images, image_size, num_classes, max_objects])
        digest = hashlib.sha1(key.encode()).hexdigest()[:12]
        self.directory = os.path.join(cache_dir or default_cache_dir(), f"shapes_det_{split}_{digest}")
        ann_file = os.path.join(self.directory, "annotations.json")
        if not os.path.isfile(ann_file):
            tmp = f"{self.directory}.tmp{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            write_coco(tmp, int(seed), split, int(num_images), int(image_size), int(num_classes), int(max_objects))
            try:
                os.replace(tmp, self.directory)
            except OSError:  # another process finished first: use theirs
                shutil.rmtree(tmp, ignore_errors=True)
        super().__init__(ann_file, os.path.join(self.directory, "images"), transforms, skip_empty,
                         strict=True, size_divisor=size_divisor)
