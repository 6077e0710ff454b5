"""COCO box AP with pycocotools (registered metric ``COCOMetric``).

``bind_dataset(ds)`` takes the ground truth from a COCO-json dataset (``ds.annotations``:
the annotations the loader accepted, crowd boxes included, and the category ids);
``update(outputs, batch)`` collects ``outputs['bbox']`` rows ``(class, score, x1, y1, x2, y2)``
(original-image pixels) of each ``batch['im_id']``; ``accumulate()`` gathers them from all
processes, runs ``COCOeval`` on the evaluated images, prints pycocotools' standard table and
returns ``AP, AP50, AP75, APs, APm, APl`` in percent (``primary``: ``AP``; NaN for an area
range without ground truth).
"""
from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Dict, List

import numpy as np
import paddle

from ..registry import METRICS
from .distributed import world_size_from_env

logger = logging.getLogger("paddle_dcn")
KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _gather(items: List[Any]) -> List[Any]:
    if world_size_from_env() == 1:
        return items
    gathered: List[Any] = []
    paddle.distributed.all_gather_object(gathered, items)
    return [x for part in gathered for x in part]


@METRICS.register()
class COCOMetric:
    """COCO bbox AP (see the module doc). ``print_table``: log pycocotools' summary table."""

    primary = "AP"

    def __init__(self, print_table: bool = True) -> None:
        self.print_table = bool(print_table)
        self.gt = None
        self.reset()

    def bind_dataset(self, dataset: Any) -> None:
        ann = getattr(dataset, "annotations", None)
        if ann is None or not hasattr(ann, "valid_annotations"):
            raise ValueError("COCOMetric needs a COCO-json eval dataset (COCODetection, ShapesDetection)")
        self.cat_ids = list(ann.cat_ids)
        self.image_ids = [r["id"] for r in dataset.records]
        images = [img for img in ann.raw["images"] if img["id"] in set(self.image_ids)]
        self.gt = {"images": images, "annotations": ann.valid_annotations,
                   "categories": [c for c in ann.raw["categories"]]}

    def reset(self) -> None:
        self.results: List[dict] = []
        self.seen: List[int] = []

    def update(self, outputs: Dict[str, paddle.Tensor], batch: Dict[str, paddle.Tensor]) -> None:
        bbox = outputs["bbox"].numpy().reshape(-1, 6)
        nums = outputs["bbox_num"].numpy().reshape(-1)
        ids = batch["im_id"].numpy().reshape(-1)
        start = 0
        for im_id, n in zip(ids, nums):
            for c, s, x1, y1, x2, y2 in bbox[start: start + n].tolist():
                self.results.append({"image_id": int(im_id), "category_id": self.cat_ids[int(c)],
                                     "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
            start += n
        self.seen += [int(i) for i in ids]

    def accumulate(self) -> Dict[str, float]:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        if self.gt is None:
            raise ValueError("COCOMetric: bind_dataset() was not called (the trainer does it for eval_dataset)")
        results, seen = _gather(self.results), sorted(set(_gather(self.seen)))
        if not results:
            logger.info("COCO eval: no detections")
            return {k: 0.0 for k in KEYS}
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools chatters
            gt = COCO()
            gt.dataset = self.gt
            gt.createIndex()
            dt = gt.loadRes(results)
            ev = COCOeval(gt, dt, "bbox")
            ev.params.imgIds = seen
            ev.evaluate()
            ev.accumulate()
        table = io.StringIO()
        with contextlib.redirect_stdout(table):
            ev.summarize()
        if self.print_table:
            logger.info("COCO bbox evaluation (%d images, %d detections):\n%s", len(seen), len(results),
                        table.getvalue().rstrip())
        # COCOeval's -1 (no ground truth in that area range) becomes NaN, not a fake 0
        return {k: float(100.0 * v) if v >= 0 else float("nan") for k, v in zip(KEYS, np.asarray(ev.stats[:6]))}
