"""Detection export and inference (tools/export.py, tools/infer.py for ``task: detection``).

An exported detector directory holds ``model.json`` + ``model.pdiparams`` whose inputs are
``image [1, 3, H, W]`` (normalised, zero-padded to a multiple of ``size_divisor``),
``im_shape [1, 2]`` (h, w before padding) and ``scale_factor [1, 2]`` (sy, sx: original ->
resized), and whose outputs are ``bbox [M, 6]`` rows ``(class, score, x1, y1, x2, y2)`` in
original-image pixels and ``bbox_num [1]``; and ``infer_cfg.yml`` with the preprocessing (the
eval dataset's transforms), ``size_divisor`` and the class names. One image per call.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import paddle
from PIL import Image, ImageDraw

from .. import inference
from ..data.det_transforms import DetCompose, collate_detection
from . import deploy_common as common
from .deploy_common import MODEL_PREFIX


class _PredictDetection(paddle.nn.Layer):
    """``(image, im_shape, scale_factor) -> model.predict(...)``: the exported computation."""

    def __init__(self, model: paddle.nn.Layer) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: paddle.Tensor, im_shape: paddle.Tensor, scale_factor: paddle.Tensor):
        return self.model.predict(image, im_shape, scale_factor)


def input_spec() -> List[paddle.static.InputSpec]:
    return [paddle.static.InputSpec([1, 3, None, None], "float32", "image"),
            paddle.static.InputSpec([1, 2], "float32", "im_shape"),
            paddle.static.InputSpec([1, 2], "float32", "scale_factor")]


def _dataset_cfg(cfg: Dict[str, Any]) -> Dict[str, Any]:
    return cfg.get("eval_dataset") or cfg.get("train_dataset") or {}


def export_detector(cfg: Dict[str, Any], weights: str, output_dir: str) -> Dict[str, str]:
    """Writes the inference model and ``infer_cfg.yml``; returns their paths."""
    model = common.build_model_with_weights(cfg, weights)
    model_file, params_file = inference.export_model(_PredictDetection(model), os.path.join(output_dir, MODEL_PREFIX),
                                                     input_spec())
    infer_cfg = {**infer_cfg_of(cfg, weights), "model_prefix": MODEL_PREFIX}
    return {"model": model_file, "params": params_file, "infer_cfg": common.write_infer_cfg(output_dir, infer_cfg)}


def infer_cfg_of(cfg: Dict[str, Any], weights: str) -> Dict[str, Any]:
    """The detector's keys of ``infer_cfg.yml`` that both export formats share: task, config
    name, the weights exported, transforms, size divisor, class names."""
    ds = _dataset_cfg(cfg)
    return {"task": "detection", "config_name": cfg.get("_name_"), "weights": str(weights),
            "transforms": ds.get("transforms", []),
            "size_divisor": int(ds.get("size_divisor", 32)), "class_names": common.class_names_of(cfg)}


class Preprocessor:
    """uint8 HWC RGB image -> the model's three inputs (numpy, batch of one)."""

    def __init__(self, transforms: List[Dict[str, Any]], size_divisor: int = 32) -> None:
        self.pipeline = DetCompose([t for t in transforms if t.get("type") != "RandomFlip"])
        self.size_divisor = int(size_divisor)

    def __call__(self, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        sample = self.pipeline({"image": image, "gt_boxes": np.zeros((0, 4), np.float32),
                                "gt_classes": np.zeros(0, np.int64), "im_id": 0,
                                "scale_factor": np.ones(2, np.float32)})
        batch = collate_detection([sample], self.size_divisor)
        return batch["image"], batch["im_shape"], batch["scale_factor"]


class DygraphDetector:
    """A config + weights, run in dygraph: ``detect(image) -> bbox [M, 6]``."""

    def __init__(self, cfg: Dict[str, Any], weights: str) -> None:
        self.model = common.build_model_with_weights(cfg, weights)
        ds = _dataset_cfg(cfg)
        self.preprocess = Preprocessor(ds.get("transforms", []), int(ds.get("size_divisor", 32)))
        self.class_names = common.class_names_of(cfg)

    def detect(self, image: np.ndarray) -> np.ndarray:
        inputs = [paddle.to_tensor(a) for a in self.preprocess(image)]
        with paddle.no_grad():
            bbox, _ = self.model.predict(*inputs)
        return bbox.numpy().reshape(-1, 6)


class InferenceDetector:
    """An exported detector directory run with Paddle Inference: ``detect(image) -> bbox [M, 6]``.

    oneDNN stays off: with it on, Paddle 3.3.1's CPU executor fails on this graph
    ("ConvertPirAttribute2RuntimeAttribute not support ArrayAttribute<Double>"), and our ops
    need plain layouts anyway (see ``inference.create_predictor``)."""

    def __init__(self, model_dir: str, device: str = "cpu") -> None:
        self.cfg = common.read_infer_cfg(model_dir)
        self.predictor = inference.create_predictor(os.path.join(model_dir, self.cfg["model_prefix"]),
                                                    device=device, onednn=False)
        self.preprocess = Preprocessor(self.cfg["transforms"], self.cfg.get("size_divisor", 32))
        self.class_names = self.cfg["class_names"]

    def detect(self, image: np.ndarray) -> np.ndarray:
        bbox = inference.run_predictor(self.predictor, list(self.preprocess(image)))[0]
        return bbox.reshape(-1, 6)


_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]


def draw_detections(image: np.ndarray, bbox: np.ndarray, class_names: Sequence[str],
                    threshold: float = 0.5) -> np.ndarray:
    """A copy of ``image`` (uint8 HWC) with the boxes of ``bbox [M, 6]`` scoring at least
    ``threshold`` drawn, each labelled ``name score``."""
    picture = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    draw = ImageDraw.Draw(picture)
    rows = np.asarray(bbox).reshape(-1, 6)
    for c, s, x1, y1, x2, y2 in rows[np.argsort(rows[:, 1], kind="stable")].tolist():  # best drawn last, on top
        if s < threshold:
            continue
        colour = _COLOURS[int(c) % len(_COLOURS)]
        name = class_names[int(c)] if int(c) < len(class_names) else str(int(c))
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
        text = f"{name} {s:.2f}"
        tw = draw.textlength(text)
        ty = max(0.0, y1 - 11)
        draw.rectangle([x1, ty, x1 + tw + 2, ty + 11], fill=colour)
        draw.text((x1 + 1, ty), text, fill=(0, 0, 0))
    return np.asarray(picture)


def _class_label(names: Sequence[str], c: int) -> str:
    return f"class {c} {names[c]}" if c < len(names) else f"class {c}"


def detection_summary(bbox: np.ndarray, class_names: Sequence[str], threshold: float, best: int = 3) -> str:
    """What infer prints for one image: ``'2 detections >= 0.5'`` and one line per box; with
    none at the threshold, the ``best`` highest scores instead (``'0 detections >= 0.5; best
    0.13 (class 3 star), 0.08 (class 0 triangle)'``), so a weak model does not look broken.
    ``bbox``: rows ``(class, score, x1, y1, x2, y2)``."""
    rows = np.asarray(bbox).reshape(-1, 6)
    kept = rows[rows[:, 1] >= threshold]
    if len(kept):
        return f"{len(kept)} detections >= {threshold}" + "".join(
            f"\n  {_class_label(class_names, int(c))} {s:.3f} [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]"
            for c, s, x1, y1, x2, y2 in kept.tolist())
    if not len(rows):
        return (f"0 detections >= {threshold}; no box at all (none scored above the model's "
                f"test.score_thresh)")
    top = rows[np.argsort(-rows[:, 1], kind="stable")[:best]]
    return (f"0 detections >= {threshold}; best " + ", ".join(
        f"{s:.2f} ({_class_label(class_names, int(c))})" for c, s in top[:, :2].tolist())
        + " (lower --threshold to draw them)")


def run_infer(detector: Any, files: Sequence[str], output_dir: str, threshold: float,
              load_rgb: Any, visualdl: bool = True) -> List[Tuple[str, np.ndarray]]:
    """Detects, prints and draws every file into ``output_dir`` (same file name, .png), and into
    a VisualDL log ``output_dir/vdl`` (images ``infer/<name>``); returns ``[(file, bbox)]``.
    ``load_rgb(path)`` reads an image; a file for which it returns None is skipped."""
    os.makedirs(output_dir, exist_ok=True)
    writer = None
    if visualdl:
        try:
            from visualdl import LogWriter
            writer = LogWriter(logdir=os.path.join(output_dir, "vdl"))
        except ImportError:
            writer = None
    results = []
    for path in files:
        image = load_rgb(path)
        if image is None:  # skipped by the reader (tools/infer.py --bad-images skip)
            continue
        bbox = detector.detect(image)
        results.append((path, bbox))
        print(f"{path}: {detection_summary(bbox, detector.class_names, threshold)}")
        names = detector.class_names
        drawn = draw_detections(image, bbox, names, threshold)
        stem = os.path.splitext(os.path.basename(path))[0]
        Image.fromarray(drawn).save(os.path.join(output_dir, f"{stem}.png"))
        if writer is not None:
            writer.add_image(f"infer/{stem}", drawn, 0)
    if writer is not None:
        writer.close()
    print(f"drawn images: {output_dir}")
    return results
