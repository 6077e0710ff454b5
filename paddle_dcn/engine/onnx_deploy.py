"""ONNX export of the engine's models (``tools/export.py --format onnx``).

Classifiers export whole: ``<output_dir>/model.onnx`` with input ``image [batch, C, H, W]``
(float32, already normalised: the ``infer_cfg.yml`` transforms) and output ``probs
[batch, num_classes]``, the batch dimension dynamic.

Detectors export their dense part: backbone + FPN + RPN head, input ``image [batch, 3, H, W]``
(H, W dynamic; normalised and padded like the Paddle export's input) and outputs the FPN
levels ``fpn_<i>`` and, per level, the RPN objectness logits ``rpn_logits_<i>`` and box deltas
``rpn_deltas_<i>``. The rest cannot be standard ONNX: deformable RoI pooling has no ONNX
operator; the ops found in the full model are listed in ``infer_cfg.yml`` (``not_exported``)
and printed by tools/export.py.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List

import paddle

from .. import onnx_export
from . import deploy, det_deploy, deploy_common as common
from .det_deploy import _PredictDetection, input_spec

ONNX_FILE = "model.onnx"


class _DetectorDense(paddle.nn.Layer):
    """``image -> FPN levels + RPN logits + RPN deltas`` (one flat list)."""

    def __init__(self, model: paddle.nn.Layer) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: paddle.Tensor) -> List[paddle.Tensor]:
        feats = self.model.features(image)
        logits, deltas = self.model.rpn.head(feats)
        return list(feats) + list(logits) + list(deltas)


def export(cfg: Dict[str, Any], weights: str, output_dir: str, opset: int = onnx_export.DEFAULT_OPSET
           ) -> Dict[str, Any]:
    """Writes ``model.onnx`` and ``infer_cfg.yml`` to ``output_dir``; returns their paths
    (``onnx``, ``infer_cfg``), the graph's ``inputs``/``outputs`` names and, for detectors,
    ``not_exported``: ``[(Paddle op, layer path), ...]`` of the full model's unexportable ops."""
    detection = cfg.get("task") == "detection"
    # the checks of the Paddle export: classes against the data, export.image_shape against it
    dataset = common.reference_dataset(cfg)[0] if detection else common.checked_reference(cfg)
    model = common.build_model_with_weights(cfg, weights)
    path = os.path.join(output_dir, ONNX_FILE)
    ds_cfg = cfg.get("eval_dataset") or cfg.get("train_dataset") or {}
    # the ONNX file's own section of infer_cfg.yml (the model's keys, shared with the Paddle
    # export, come from the task's infer_cfg_of below)
    onnx_info: Dict[str, Any] = {"model_file": ONNX_FILE, "opset": int(opset)}
    result: Dict[str, Any] = {}
    if detection:
        result["not_exported"] = onnx_export.unsupported_ops(_PredictDetection(model), input_spec())
        levels = len(model.neck.out_strides)
        names = ([f"fpn_{i}" for i in range(levels)] + [f"rpn_logits_{i}" for i in range(levels)]
                 + [f"rpn_deltas_{i}" for i in range(levels)])
        spec = [paddle.static.InputSpec([None, 3, None, None], "float32", "image")]
        size = 32 * max(2, int(ds_cfg.get("image_size", 128)) // 32)
        verify = onnx_export.random_inputs(spec, batch=1, size=size)
        onnx_export.export_onnx(_DetectorDense(model), path, spec, opset=opset, output_names=names,
                                verify_inputs=verify)
        info = det_deploy.infer_cfg_of(cfg, weights)
        onnx_info.update(part="backbone + FPN + RPN head", fpn_strides=list(model.neck.out_strides),
                         not_exported=[f"{op} in {layer}: {onnx_export.why_unsupported(op)}"
                                       for op, layer in result["not_exported"]])
    else:
        shape = [int(v) for v in cfg["export"]["image_shape"]]
        spec = [paddle.static.InputSpec([None] + shape, "float32", "image")]
        names = ["probs"]
        onnx_export.export_onnx(deploy._Predict(model), path, spec, opset=opset, output_names=names)
        info = deploy.infer_cfg_of(cfg, dataset, weights)
    onnx_info.update(inputs=["image"], outputs=names)
    info["onnx"] = onnx_info
    result.update(onnx=path, infer_cfg=common.write_infer_cfg(output_dir, info), inputs=["image"], outputs=names)
    return result
