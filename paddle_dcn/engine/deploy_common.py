"""What the Paddle and ONNX exports and inference of every task share: the model built with
its weights, the reference data set (checked against the model's classes and
``export.image_shape``) and its class names, and ``infer_cfg.yml``.

Imported by ``deploy`` (classification), ``det_deploy`` (detection) and ``onnx_deploy``;
imports none of them.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

import paddle
import yaml

from .. import data, models  # noqa: F401 - registration
from ..registry import MODELS, build
from ..weights import load_weights
from . import class_check
from .checkpoint import atomic_write
from .input_size import check_export_shape

INFER_CFG = "infer_cfg.yml"
MODEL_PREFIX = "model"


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
    """``cfg``'s model in eval mode with ``weights`` loaded; a checkpoint that is not this
    model's (an entry missing, unused or of another shape) is a ValueError naming them."""
    model = build(MODELS, cfg["model"])
    load_weights(model, weights, strict=True, allow_unused=False,
                 hint=" (build it from the config the checkpoint was trained with)")
    model.eval()
    return model


# Each export format's own entry of infer_cfg.yml: the Paddle model's file prefix, the ONNX
# file's section (file, opset, input/output names, ...). The other keys (config, input shape,
# transforms, classes) describe the model and are shared.
FORMAT_KEYS = ("model_prefix", "onnx")


class NotAPaddleExport(ValueError):
    """An export directory without a Paddle model (``infer_cfg.yml`` has no ``model_prefix``)."""


def _shared_keys(info: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in info.items() if k not in FORMAT_KEYS}


def read_infer_cfg(model_dir: str) -> Dict[str, Any]:
    """``<model_dir>/infer_cfg.yml`` of a Paddle export (FileNotFoundError without the file,
    :class:`NotAPaddleExport` when it describes an ONNX export only)."""
    path = os.path.join(model_dir, INFER_CFG)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: {model_dir} is not an exported model directory "
                                "(tools/export.py writes one)")
    with open(path, "r", encoding="utf-8") as f:
        info = yaml.safe_load(f) or {}
    if "model_prefix" not in info:
        onnx_file = (info.get("onnx") or {}).get("model_file", "model.onnx")
        raise NotAPaddleExport(
            f"{model_dir} holds an ONNX export only ({onnx_file}): --model-dir runs a Paddle export; write "
            f"one beside it (tools/export.py without --format onnx) or run {onnx_file} in onnxruntime "
            "(docs/export.md)")
    return info


def write_infer_cfg(output_dir: str, info: Dict[str, Any]) -> str:
    """Writes ``info`` as ``<output_dir>/infer_cfg.yml`` (atomically); returns the path. An
    existing file of the same model (the keys outside ``FORMAT_KEYS`` equal) keeps the other
    format's entry, so a Paddle and an ONNX export of one checkpoint share the directory (the
    ONNX export once replaced the file, and ``infer.py --model-dir`` lost the Paddle model).
    A file of another model is replaced whole: its other-format entry would name files of
    that model."""
    path = os.path.join(output_dir, INFER_CFG)
    merged = dict(info)
    if os.path.isfile(path):
        try:
            with open(path, "r", encoding="utf-8") as f:
                old = yaml.safe_load(f)
        except (OSError, yaml.YAMLError):
            old = None
        if isinstance(old, dict) and _shared_keys(old) == _shared_keys(info):
            merged.update({k: old[k] for k in FORMAT_KEYS if k in old and k not in info})
    atomic_write(path, yaml.safe_dump(merged, sort_keys=False, default_flow_style=None))
    return path
