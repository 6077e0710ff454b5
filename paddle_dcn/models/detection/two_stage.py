"""Two-stage detectors: backbone -> FPN -> RPN -> RoI head. Faster R-CNN here, R-FCN in rfcn.py.

The engine's model contract (as the classifier's): ``forward(batch)`` with a batch from
``collate_detection`` returns ``{'loss': total, 'loss_rpn_cls', 'loss_rpn_reg', 'loss_cls',
'loss_reg'}`` in training mode and ``{'bbox': [M, 6], 'bbox_num': [N]}`` in eval mode, rows
``(class, score, x1, y1, x2, y2)`` in original-image pixels (PaddleDetection's output format).
:meth:`predict` ``(image, im_shape, scale_factor) -> (bbox, bbox_num)`` is what an exported
model computes (one image per call).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from ...registry import BACKBONES, MODELS, build, check_keys, construct
from ...weights import load_weights
from .fpn import FPN
from .postprocess import batch_detections
from .roi_extractor import RoIExtractor
from .rpn import RPN
from .targets import roi_targets

REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def load_backbone_weights(backbone: nn.Layer, path: str) -> int:
    """Copies the ``backbone.*`` entries of checkpoint ``path`` (see ``paddle_dcn.weights``)
    into ``backbone``; returns how many. Every backbone parameter must be found with its shape
    (ValueError listing the missing or mismatched names otherwise)."""
    report = load_weights(backbone, path, prefix="backbone.", strict=True, what="backbone_weights",
                          hint=" (its backbone needs the same depth, stem, base_channels)")
    return report.loaded


class TwoStageDetector(nn.Layer):
    """Shared parts of Faster R-CNN and R-FCN; subclasses define ``box_predictions``.

    Args:
        backbone: backbone config (``ResNet`` with ``out_stages: [2, 3, 4, 5]``, ``dcn_stages``).
        num_classes: object classes (background not counted).
        neck: FPN options (``out_channels``, ``num_extra``); it takes the backbone's
            ``out_strides`` (4, 8, 16, 32 for ResNet's stages 2..5 with the imagenet stem).
        rpn: RPN options (anchors, sampling, proposal counts; see ``rpn.RPN``).
        roi_sampling: box-head sampling (``batch_size_per_im``, ``pos_fraction``, ``fg_thr``, ``bg_thr``).
        test: ``score_thresh``, ``nms_thresh``, ``max_det`` of the final detections.
        backbone_weights: a checkpoint (e.g. a classifier trained by this engine with the same
            backbone settings) whose ``backbone.*`` parameters initialise the backbone.
    """

    def __init__(self, backbone: Dict[str, Any], num_classes: int, neck: Optional[Dict[str, Any]] = None,
                 rpn: Optional[Dict[str, Any]] = None, roi_sampling: Optional[Dict[str, Any]] = None,
                 test: Optional[Dict[str, Any]] = None, backbone_weights: Optional[str] = None) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.backbone = build(BACKBONES, backbone)
        if backbone_weights:
            load_backbone_weights(self.backbone, backbone_weights)
        self.neck = construct(FPN, neck, "model.neck", in_channels=self.backbone.out_channels,
                              in_strides=self.backbone.out_strides)
        self.rpn = construct(RPN, rpn, "model.rpn", in_channels=self.neck.out_channels, strides=self.neck.out_strides)
        sampling = {"batch_size_per_im": 512, "pos_fraction": 0.25, "fg_thr": 0.5, "bg_thr": 0.5}
        check_keys("model.roi_sampling", roi_sampling or {}, list(sampling))
        self.roi_sampling = {**sampling, **(roi_sampling or {})}
        test_cfg = {"score_thresh": 0.05, "nms_thresh": 0.5, "max_det": 100}
        check_keys("model.test", test or {}, list(test_cfg))
        self.test_cfg = {**test_cfg, **(test or {})}

    # subclasses: ``[R, C+1]`` logits and ``[R, 4]`` class-agnostic deltas of the RoIs
    def box_predictions(self, feats: List[paddle.Tensor], rois: paddle.Tensor,
                        rois_num: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        raise NotImplementedError

    def features(self, image: paddle.Tensor) -> List[paddle.Tensor]:
        return self.neck(self.backbone(image))

    @staticmethod
    def _gt(batch: Dict[str, paddle.Tensor]) -> Dict[str, list]:
        num = batch["gt_num"].numpy().reshape(-1)
        boxes = batch["gt_boxes"].numpy()
        classes = batch["gt_classes"].numpy()
        return {"boxes": [boxes[i, : num[i]] for i in range(len(num))],
                "classes": [classes[i, : num[i]] for i in range(len(num))]}

    def forward(self, batch: Dict[str, paddle.Tensor]) -> Dict[str, paddle.Tensor]:
        feats = self.features(batch["image"])
        if not self.training:
            bbox, bbox_num = self._detect(feats, batch["im_shape"], batch["scale_factor"])
            return {"bbox": bbox, "bbox_num": bbox_num}
        gt = self._gt(batch)
        proposals, losses = self.rpn(feats, batch["im_shape"], gt)
        rois, labels, targets, fg = [], [], [], []
        for i, props in enumerate(proposals):
            t = roi_targets(props.numpy(), gt["boxes"][i], gt["classes"][i], weights=REG_WEIGHTS,
                            **self.roi_sampling)
            rois.append(t["rois"])
            labels.append(np.where(t["labels"] < 0, self.num_classes, t["labels"]))
            targets.append(t["deltas"][: t["num_fg"]])
            fg.append(np.arange(t["num_fg"]) + sum(len(r) for r in rois[:-1]))
        rois_num = paddle.to_tensor(np.array([len(r) for r in rois], np.int32))
        logits, deltas = self.box_predictions(feats, paddle.to_tensor(np.concatenate(rois)), rois_num)
        labels_t = paddle.to_tensor(np.concatenate(labels).astype(np.int64))
        losses["loss_cls"] = F.cross_entropy(logits, labels_t)
        fg_idx = np.concatenate(fg).astype(np.int64)
        if len(fg_idx):
            pred = paddle.gather(deltas, paddle.to_tensor(fg_idx))
            losses["loss_reg"] = F.smooth_l1_loss(pred, paddle.to_tensor(np.concatenate(targets)),
                                                  reduction="sum", delta=1.0) / float(len(labels_t))
        else:
            losses["loss_reg"] = deltas.sum() * 0.0
        losses["loss"] = losses["loss_rpn_cls"] + losses["loss_rpn_reg"] + losses["loss_cls"] + losses["loss_reg"]
        return losses

    def _detect(self, feats, im_shape, scale_factor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        proposals, _ = self.rpn(feats, im_shape)
        rois_num = paddle.concat([paddle.shape(p)[0:1] for p in proposals]).astype("int32")
        logits, deltas = self.box_predictions(feats, paddle.concat(proposals), rois_num)
        return batch_detections(logits, deltas, proposals, im_shape, scale_factor, weights=REG_WEIGHTS,
                                **self.test_cfg)

    def predict(self, image: paddle.Tensor, im_shape: paddle.Tensor,
                scale_factor: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """``image [N, 3, H, W]`` (normalised, padded), ``im_shape [N, 2]``, ``scale_factor [N, 2]``
        -> ``(bbox [M, 6], bbox_num [N])`` (see the module doc)."""
        return self._detect(self.features(image), im_shape, scale_factor)


class TwoFCHead(nn.Layer):
    """Flatten -> fc -> ReLU -> fc -> ReLU -> (cls ``C+1``, class-agnostic reg ``4``)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 1024) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.cls = nn.Linear(hidden, num_classes + 1, weight_attr=paddle.ParamAttr(initializer=nn.initializer.Normal(0, 0.01)))
        self.reg = nn.Linear(hidden, 4, weight_attr=paddle.ParamAttr(initializer=nn.initializer.Normal(0, 0.001)))

    def forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        h = F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))
        return self.cls(h), self.reg(h)


@MODELS.register()
class FasterRCNN(TwoStageDetector):
    """Faster R-CNN with FPN (Ren et al. 2015, Lin et al. 2017); deformable variants through
    ``backbone.dcn_stages`` and ``roi_extractor.kind`` (see ``roi_extractor``).

    Args (besides TwoStageDetector's):
        roi_extractor: ``RoIExtractor`` options (``kind``, ``output_size``, ``sampling_ratio``, ...);
            it pools from the FPN levels of the backbone's strides (not the extra levels).
        bbox_head: ``hidden`` width of the two fcs.
    """

    def __init__(self, backbone: Dict[str, Any], num_classes: int, neck: Optional[Dict[str, Any]] = None,
                 rpn: Optional[Dict[str, Any]] = None, roi_extractor: Optional[Dict[str, Any]] = None,
                 bbox_head: Optional[Dict[str, Any]] = None, roi_sampling: Optional[Dict[str, Any]] = None,
                 test: Optional[Dict[str, Any]] = None, backbone_weights: Optional[str] = None) -> None:
        super().__init__(backbone, num_classes, neck, rpn, roi_sampling, test, backbone_weights)
        strides = self.neck.out_strides[: len(self.backbone.out_strides)]  # the backbone's levels, not the extra ones
        self.roi_extractor = construct(RoIExtractor, roi_extractor, "model.roi_extractor",
                                  in_channels=self.neck.out_channels, strides=strides)
        size = self.roi_extractor.output_size
        self.bbox_head = construct(TwoFCHead, bbox_head, "model.bbox_head",
                              in_features=self.neck.out_channels * size * size, num_classes=self.num_classes)

    def box_predictions(self, feats, rois, rois_num):
        return self.bbox_head(self.roi_extractor(feats, rois, rois_num))
