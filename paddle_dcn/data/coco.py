"""COCO-json detection datasets: an annotation file plus an image folder.

Parsing is separate from the dataset (:func:`load_coco`) and strict about structure, lenient
(but loud) about single bad annotations:

- Not a JSON object, or no ``images`` / ``annotations`` / ``categories`` list, or an image
  or category entry without its required keys (image: ``id``, ``file_name``; category:
  ``id``, ``name``), or duplicate ids: ``ValueError`` naming the entry and key.
- An annotation that cannot be used is skipped and counted by reason, and one warning lists
  the counts: missing keys (``image_id``, ``category_id``, ``bbox``), a bbox that is not 4
  finite numbers, zero or negative width/height (after clipping to the image), an unknown
  ``image_id`` or ``category_id``; ``iscrowd=1`` boxes are left out of training and counted.
  ``strict=True`` makes any of these a ``ValueError`` instead.
- An image whose file is missing is skipped (counted, warned); ``strict=True``: error. An image
  whose size differs from its entry's ``height``/``width`` is an error when it is read.

Category ids map to contiguous class indices ``0..C-1`` in the order of ascending id;
``class_names`` follow that order. Boxes are converted from COCO ``[x, y, w, h]`` to
``(x1, y1, x2, y2)``.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from typing import Any, Dict, List, Optional

import numpy as np

from ..registry import DATASETS
from .det_transforms import DetCompose, collate_detection
from .folder import load_rgb

logger = logging.getLogger("paddle_dcn")


class COCOAnnotations:
    """The parsed contents of a COCO annotation file (see the module doc).

    Attributes: ``path``, ``cat_ids`` (category id of class index i), ``class_names``,
    ``records`` (list of dicts ``{'id', 'file', 'height', 'width', 'boxes' [G, 4], 'classes' [G]}``),
    ``skipped`` (Counter reason -> count), ``raw`` (the JSON, for pycocotools).
    """

    def __init__(self, path: str, image_dir: str, strict: bool = False) -> None:
        self.path, self.image_dir, self.strict = path, image_dir, strict
        self.skipped: Counter = Counter()
        if not os.path.isfile(path):
            raise FileNotFoundError(f"annotation file not found: {path}")
        try:
            with open(path, "r", encoding="utf-8") as f:
                raw = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a COCO annotation file is a JSON object, got {type(raw).__name__}")
        for key in ("images", "annotations", "categories"):
            if not isinstance(raw.get(key), list):
                raise ValueError(f"{path}: missing or non-list key {key!r} (a COCO file has 'images', "
                                 f"'annotations' and 'categories' lists)")
        self.raw = raw
        cats = self._entries("categories", ("id", "name"))
        self.cat_ids = sorted(cats)
        self.cat_to_class = {cid: i for i, cid in enumerate(self.cat_ids)}
        self.class_names = [str(cats[cid]["name"]) for cid in self.cat_ids]
        images = self._entries("images", ("id", "file_name"))
        per_image: Dict[Any, List[tuple]] = {iid: [] for iid in images}
        self.valid_annotations: List[dict] = []  # what evaluation compares with (crowd included)
        for k, ann in enumerate(raw["annotations"]):
            parsed = self._annotation(k, ann, images)
            if parsed is not None:
                per_image[ann["image_id"]].append(parsed)
        self.records = []
        for iid, img in images.items():
            file = os.path.join(image_dir, str(img["file_name"]))
            if not os.path.isfile(file):
                self._skip("image file missing", f"image id {iid}: {file} does not exist")
                continue
            anns = per_image[iid]
            self.records.append({
                "id": iid, "file": file, "height": img.get("height"), "width": img.get("width"),
                "boxes": np.array([a[0] for a in anns], np.float32).reshape(-1, 4),
                "classes": np.array([a[1] for a in anns], np.int64)})
        if self.skipped:
            logger.warning(f"{path}: skipped " + ", ".join(f"{n} x {r}" for r, n in sorted(self.skipped.items())))

    def _skip(self, reason: str, detail: str) -> None:
        if self.strict:
            raise ValueError(f"{self.path}: {detail}")
        self.skipped[reason] += 1

    def _entries(self, key: str, required: tuple) -> Dict[Any, dict]:
        out: Dict[Any, dict] = {}
        for k, entry in enumerate(self.raw[key]):
            if not isinstance(entry, dict):
                raise ValueError(f"{self.path}: {key}[{k}] is not an object")
            for r in required:
                if r not in entry:
                    raise ValueError(f"{self.path}: {key}[{k}] has no {r!r} (required: {', '.join(required)})")
            if not isinstance(entry["id"], int) or isinstance(entry["id"], bool):
                raise ValueError(f"{self.path}: {key}[{k}]: id must be an integer, got {entry['id']!r}")
            if entry["id"] in out:
                raise ValueError(f"{self.path}: {key}[{k}]: duplicate id {entry['id']!r}")
            out[entry["id"]] = entry
        return out

    def _annotation(self, k: int, ann: Any, images: Dict[Any, dict]) -> Optional[tuple]:
        if not isinstance(ann, dict):
            self._skip("annotation not an object", f"annotations[{k}] is not an object")
            return None
        missing = [key for key in ("image_id", "category_id", "bbox") if key not in ann]
        if missing:
            self._skip("missing keys", f"annotations[{k}] has no {', '.join(map(repr, missing))}")
            return None
        if ann["image_id"] not in images:
            self._skip("unknown image_id", f"annotations[{k}]: unknown image_id {ann['image_id']!r}")
            return None
        if ann["category_id"] not in self.cat_to_class:
            self._skip("unknown category_id", f"annotations[{k}]: unknown category_id {ann['category_id']!r} "
                                              f"(categories: {self.cat_ids})")
            return None
        bbox = ann["bbox"]
        if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
            self._skip("bad bbox", f"annotations[{k}]: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
            return None
        x, y, w, h = (float(v) for v in bbox)
        x1, y1, x2, y2 = x, y, x + w, y + h
        img = images[ann["image_id"]]
        if img.get("width") and img.get("height"):
            x1, x2 = min(max(x1, 0.0), float(img["width"])), min(max(x2, 0.0), float(img["width"]))
            y1, y2 = min(max(y1, 0.0), float(img["height"])), min(max(y2, 0.0), float(img["height"]))
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            self._skip("zero or negative box size", f"annotations[{k}]: box {bbox!r} has no area")
            return None
        self.valid_annotations.append({**ann, "id": ann.get("id", k + 1), "iscrowd": int(bool(ann.get("iscrowd", 0))),
                                       "area": float(ann.get("area", w * h))})
        if ann.get("iscrowd", 0):
            self.skipped["crowd (not trained on)"] += 1
            return None
        return (x1, y1, x2, y2), self.cat_to_class[ann["category_id"]]


@DATASETS.register()
class COCODetection:
    """Detection dataset over a COCO annotation file and its image folder.

    Args:
        ann_file: the COCO json.
        image_dir: folder the ``file_name`` entries are relative to.
        transforms: detection pipeline (``ResizeKeepRatio``, ``RandomFlip``, ``Normalize``, ``ToCHW``).
        skip_empty: leave out images without (usable) boxes (for training).
        strict: bad annotations are errors instead of counted skips.
        size_divisor: batch padding multiple (see :func:`collate_detection`).

    Items: ``{'image', 'gt_boxes', 'gt_classes', 'im_id', 'scale_factor'}`` (see
    ``det_transforms``); batches come from :meth:`collate_fn`. ``annotations`` holds the parsed file
    (its ``raw`` JSON and ``cat_ids`` are what the COCO metric evaluates against).
    """

    def __init__(self, ann_file: str, image_dir: str, transforms: Optional[List[Dict[str, Any]]] = None,
                 skip_empty: bool = False, strict: bool = False, size_divisor: int = 32) -> None:
        self.annotations = COCOAnnotations(ann_file, image_dir, strict)
        self.records = [r for r in self.annotations.records if not skip_empty or len(r["boxes"])]
        if not self.records:
            raise ValueError(f"{ann_file}: no usable images (skipped: {dict(self.annotations.skipped)})")
        self.class_names = self.annotations.class_names
        self.num_classes = len(self.class_names)
        self.class_source = f"{ann_file}: {self.num_classes} categories"
        self.transforms = DetCompose(transforms or [])
        self.size_divisor = int(size_divisor)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        r = self.records[index]
        image = load_rgb(r["file"])
        if r["height"] and r["width"] and image.shape[:2] != (int(r["height"]), int(r["width"])):
            raise ValueError(f"{r['file']}: the image is {image.shape[0]}x{image.shape[1]} (h x w) but the "
                             f"annotation file says {r['height']}x{r['width']}: boxes would not match")
        sample = {"image": image, "gt_boxes": r["boxes"].copy(), "gt_classes": r["classes"].copy(),
                  "im_id": np.int64(r["id"]), "scale_factor": np.ones(2, np.float32)}
        return self.transforms(sample)

    def collate_fn(self, items: List[Dict[str, Any]]) -> Dict[str, np.ndarray]:
        return collate_detection(items, self.size_divisor)
