"""Export to an inference model and run it (Paddle Inference), for tools/export.py and infer.py.

An exported classifier directory (default ``output_inference/<config name>/``) holds
``model.json`` + ``model.pdiparams`` (``paddle.jit.save``, Paddle 3 PIR; ``model.pdmodel``
under the old IR) whose input is ``image [N, C, H, W]`` float32 (already normalised) and
output the class probabilities ``[N, num_classes]``, and ``infer_cfg.yml``: the input shape,
the preprocessing (the eval transforms; the input-size rule of ``input_size``) and the class
names. Export first checks the config's classes and ``export.image_shape`` against the data.
Paddle Inference needs paddle_dcn's op library registered first
(``paddle_dcn.ops.load_library()``); :class:`InferenceClassifier` does it.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import yaml

from .. import data, models  # noqa: F401 - registration
from .. import inference
from ..registry import MODELS, build
from ..weights import load_weights
from . import class_check
from .input_size import Preprocessor, check_export_shape

INFER_CFG = "infer_cfg.yml"
MODEL_PREFIX = "model"


class _Predict(paddle.nn.Layer):
    """``image -> model.predict(image)``: the exported computation."""

    def __init__(self, model: paddle.nn.Layer) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: paddle.Tensor) -> paddle.Tensor:
        return self.model.predict(image)


def reference_dataset(cfg: Dict[str, Any]) -> Tuple[Optional[Any], str]:
    """``(dataset, config key)``: the eval set (given the train set's classes, as in training),
    else the train set, else ``(None, '')``; its classes are checked against the model's
    (``class_check``)."""
    for key in ("eval_dataset", "train_dataset"):
        if cfg.get(key):
            names = class_check.train_class_names(cfg) if key == "eval_dataset" else None
            dataset = class_check.build_dataset(cfg, key, names)
            class_check.check_classes(cfg, dataset if key == "train_dataset" else None,
                                      dataset if key == "eval_dataset" else None, names)
            return dataset, key
    return None, ""


def class_names_of(cfg: Dict[str, Any], dataset: Optional[Any] = None) -> List[str]:
    """The ``class_names`` of ``dataset`` (default: :func:`reference_dataset`);
    ``['0', '1', ...]`` when it has none."""
    if dataset is None:
        dataset, _ = reference_dataset(cfg)
    names = getattr(dataset, "class_names", None) if dataset is not None else None
    return list(names) if names else [str(i) for i in range(int(cfg["model"].get("num_classes", 0)))]


def checked_reference(cfg: Dict[str, Any]) -> Optional[Any]:
    """:func:`reference_dataset`, with ``export.image_shape`` checked against it (ValueError on
    a mismatch: see ``input_size``); what export and ``infer.py -c`` build first."""
    dataset, key = reference_dataset(cfg)
    if dataset is not None:
        check_export_shape(cfg, dataset, key, strict=True)
    return dataset


def build_model_with_weights(cfg: Dict[str, Any], weights: str) -> paddle.nn.Layer:
    model = build(MODELS, cfg["model"])
    load_weights(model, weights)
    model.eval()
    return model


def export(cfg: Dict[str, Any], weights: str, output_dir: str) -> Dict[str, str]:
    """Writes the inference model and ``infer_cfg.yml`` to ``output_dir``; returns their paths."""
    if cfg.get("task") == "detection":
        from .det_deploy import export_detector

        return export_detector(cfg, weights, output_dir)
    dataset = checked_reference(cfg)
    model = build_model_with_weights(cfg, weights)
    shape = [int(v) for v in cfg["export"]["image_shape"]]
    spec = [paddle.static.InputSpec([None] + shape, "float32", "image")]
    model_file, params_file = inference.export_model(_Predict(model), os.path.join(output_dir, MODEL_PREFIX), spec)
    ds_cfg = cfg.get("eval_dataset") or {}
    infer_cfg = {"config_name": cfg.get("_name_"), "model_prefix": MODEL_PREFIX, "image_shape": shape,
                 "transforms": ds_cfg.get("transforms", []), "class_names": class_names_of(cfg, dataset)}
    cfg_path = os.path.join(output_dir, INFER_CFG)
    with open(cfg_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(infer_cfg, f, sort_keys=False, default_flow_style=None)
    return {"model": model_file, "params": params_file, "infer_cfg": cfg_path}


def preprocessor(image_shape: Sequence[int], transforms: List[Dict[str, Any]]) -> Preprocessor:
    """uint8 HWC RGB image -> float32 CHW model input of ``image_shape`` (the eval transforms;
    an image they do not bring to that size is resized first, with a warning: ``input_size``)."""
    return Preprocessor(image_shape, transforms)


def top_k(probs: np.ndarray, class_names: Sequence[str], k: int) -> List[List[tuple]]:
    """``[N, C]`` probabilities -> per image ``[(class name, class id, probability), ...]``."""
    out = []
    for row in probs:
        order = np.argsort(-row)[: max(1, k)]
        out.append([(class_names[i] if i < len(class_names) else str(i), int(i), float(row[i])) for i in order])
    return out


class InferenceClassifier:
    """Runs an exported classifier directory with Paddle Inference."""

    def __init__(self, model_dir: str, device: str = "cpu") -> None:
        with open(os.path.join(model_dir, INFER_CFG), "r", encoding="utf-8") as f:
            self.cfg = yaml.safe_load(f)
        self.predictor = inference.create_predictor(os.path.join(model_dir, self.cfg["model_prefix"]), device=device)
        self.preprocess = preprocessor(self.cfg["image_shape"], self.cfg["transforms"])
        self.class_names = self.cfg["class_names"]

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 HWC RGB images -> ``[N, num_classes]`` probabilities."""
        batch = np.stack([self.preprocess(img) for img in images]).astype(np.float32)
        return inference.run_predictor(self.predictor, [batch])[0]
