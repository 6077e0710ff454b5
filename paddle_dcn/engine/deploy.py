"""Export to an inference model and run it (Paddle Inference), for tools/export.py and infer.py.

An exported classifier directory (default ``output_inference/<config name>/``) holds
``model.json`` + ``model.pdiparams`` (``paddle.jit.save``, Paddle 3 PIR; ``model.pdmodel``
under the old IR) whose input is ``image [N, C, H, W]`` float32 (already normalised) and
output the class probabilities ``[N, num_classes]``, and ``infer_cfg.yml``: the input shape,
the preprocessing (the eval transforms; the input-size rule of ``input_size``) and the class
names. Export first checks the config's classes and ``export.image_shape`` against the data.
Paddle Inference needs paddle_dcn's op library registered first
(``paddle_dcn.ops.load_library()``); :class:`InferenceClassifier` does it.

Imports flow one way: ``deploy`` (classification, and :func:`export` for every task) ->
``det_deploy`` (detection) -> ``deploy_common`` (what both need: the model with its
weights, the reference data set and its classes, ``infer_cfg.yml``).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence

import numpy as np
import paddle

from .. import inference
from .det_deploy import export_detector
from .deploy_common import (INFER_CFG, MODEL_PREFIX, NotAPaddleExport,  # noqa: F401 - this module's API
                            build_model_with_weights, checked_reference, class_names_of, read_infer_cfg,
                            reference_dataset, write_infer_cfg)
from .input_size import Preprocessor



class _Predict(paddle.nn.Layer):
    """``image -> model.predict(image)``: the exported computation."""

    def __init__(self, model: paddle.nn.Layer) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: paddle.Tensor) -> paddle.Tensor:
        return self.model.predict(image)


def export(cfg: Dict[str, Any], weights: str, output_dir: str) -> Dict[str, str]:
    """Writes the inference model and ``infer_cfg.yml`` to ``output_dir``; returns their paths."""
    if cfg.get("task") == "detection":
        return export_detector(cfg, weights, output_dir)
    dataset = checked_reference(cfg)
    model = build_model_with_weights(cfg, weights)
    shape = [int(v) for v in cfg["export"]["image_shape"]]
    spec = [paddle.static.InputSpec([None] + shape, "float32", "image")]
    model_file, params_file = inference.export_model(_Predict(model), os.path.join(output_dir, MODEL_PREFIX), spec)
    infer_cfg = {**infer_cfg_of(cfg, dataset, weights), "model_prefix": MODEL_PREFIX}
    return {"model": model_file, "params": params_file, "infer_cfg": write_infer_cfg(output_dir, infer_cfg)}


def infer_cfg_of(cfg: Dict[str, Any], dataset: Any, weights: str) -> Dict[str, Any]:
    """The classifier's keys of ``infer_cfg.yml`` that both export formats share: config name,
    the weights exported, input shape, eval transforms, class names (``dataset``: the checked
    reference data)."""
    ds_cfg = cfg.get("eval_dataset") or {}
    return {"config_name": cfg.get("_name_"), "weights": str(weights),
            "image_shape": [int(v) for v in cfg["export"]["image_shape"]],
            "transforms": ds_cfg.get("transforms", []), "class_names": class_names_of(cfg, dataset)}


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
        self.cfg = read_infer_cfg(model_dir)
        self.predictor = inference.create_predictor(os.path.join(model_dir, self.cfg["model_prefix"]), device=device)
        self.preprocess = preprocessor(self.cfg["image_shape"], self.cfg["transforms"])
        self.class_names = self.cfg["class_names"]

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 HWC RGB images -> ``[N, num_classes]`` probabilities."""
        batch = np.stack([self.preprocess(img) for img in images]).astype(np.float32)
        return inference.run_predictor(self.predictor, [batch])[0]
