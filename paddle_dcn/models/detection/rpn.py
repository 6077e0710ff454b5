"""Region proposal network: head, anchors, proposals (``paddle.vision.ops.generate_proposals``), loss."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from .anchors import AnchorGenerator
from .targets import rpn_targets


def _normal(std: float) -> paddle.ParamAttr:
    return paddle.ParamAttr(initializer=nn.initializer.Normal(0.0, std))


class RPNHead(nn.Layer):
    """Shared 3x3 conv + ReLU, then 1x1 convs to ``A`` objectness logits and ``4A`` deltas
    (channel ``4a + k`` is coordinate k of anchor a), applied to every level."""

    def __init__(self, in_channels: int, num_anchors: int, feat_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2D(in_channels, feat_channels, 3, padding=1, weight_attr=_normal(0.01))
        self.cls = nn.Conv2D(feat_channels, num_anchors, 1, weight_attr=_normal(0.01))
        self.reg = nn.Conv2D(feat_channels, 4 * num_anchors, 1, weight_attr=_normal(0.01))

    def forward(self, feats: List[paddle.Tensor]) -> Tuple[List[paddle.Tensor], List[paddle.Tensor]]:
        logits, deltas = [], []
        for f in feats:
            h = F.relu(self.conv(f))
            logits.append(self.cls(h))
            deltas.append(self.reg(h))
        return logits, deltas


class RPN(nn.Layer):
    """Anchors + head + proposals + loss over the levels of a feature pyramid.

    Args:
        in_channels: channels of every input level.
        strides: stride of each input level.
        anchor_sizes: one list of sizes per level; ``aspect_ratios`` h/w, shared.
        feat_channels: width of the head's 3x3 conv.
        pre_nms_top_n / post_nms_top_n: per level before NMS / per image after merging levels,
            for training and for testing (``train_*`` / ``test_*``).
        nms_thresh, min_size: of ``generate_proposals``.
        batch_size_per_im, pos_fraction, pos_thr, neg_thr: anchor sampling and matching.
    """

    def __init__(self, in_channels: int, strides: Sequence[int], anchor_sizes: Sequence[Sequence[float]],
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), feat_channels: int = 256,
                 train_pre_nms_top_n: int = 2000, train_post_nms_top_n: int = 1000,
                 test_pre_nms_top_n: int = 1000, test_post_nms_top_n: int = 1000,
                 nms_thresh: float = 0.7, min_size: float = 0.0, batch_size_per_im: int = 256,
                 pos_fraction: float = 0.5, pos_thr: float = 0.7, neg_thr: float = 0.3) -> None:
        super().__init__()
        self.anchor_generator = AnchorGenerator(anchor_sizes, aspect_ratios, strides)
        self.head = RPNHead(in_channels, self.anchor_generator.num_anchors, feat_channels)
        self.top_n = {True: (int(train_pre_nms_top_n), int(train_post_nms_top_n)),
                      False: (int(test_pre_nms_top_n), int(test_post_nms_top_n))}
        self.nms_thresh, self.min_size = float(nms_thresh), float(min_size)
        self.sampling = dict(batch_size_per_im=int(batch_size_per_im), pos_fraction=float(pos_fraction),
                             pos_thr=float(pos_thr), neg_thr=float(neg_thr))

    def anchors(self, feats: List[paddle.Tensor]) -> List[paddle.Tensor]:
        return self.anchor_generator.tensors(feats)

    def forward(self, feats: List[paddle.Tensor], im_shape: paddle.Tensor, gt: Dict[str, np.ndarray] = None
                ) -> Tuple[List[paddle.Tensor], Dict[str, paddle.Tensor]]:
        """Returns ``(proposals, losses)``: ``proposals`` one ``[P_i, 4]`` tensor per image
        (no gradient), ``losses`` ``{'loss_rpn_cls', 'loss_rpn_reg'}`` when ``gt`` is given
        (``{'boxes': [list of [G, 4] arrays]}``), else ``{}``."""
        logits, deltas = self.head(feats)
        anchors = self.anchors(feats)
        proposals = self._proposals(logits, deltas, anchors, im_shape)
        losses = self._loss(logits, deltas, anchors, gt, im_shape) if gt is not None else {}
        return proposals, losses

    def _proposals(self, logits, deltas, anchors, im_shape) -> List[paddle.Tensor]:
        pre, post = self.top_n[self.training]
        out = []
        for i in range(logits[0].shape[0]):
            rois, scores = [], []
            for lg, dl, an_t in zip(logits, deltas, anchors):
                r, s, _ = paddle.vision.ops.generate_proposals(
                    F.sigmoid(lg[i: i + 1].detach()), dl[i: i + 1].detach(), im_shape[i: i + 1], an_t,
                    paddle.ones_like(an_t), pre_nms_top_n=pre, post_nms_top_n=post, nms_thresh=self.nms_thresh,
                    min_size=self.min_size, pixel_offset=False, return_rois_num=True)
                rois.append(r)
                scores.append(s.reshape([-1]))
            rois, scores = paddle.concat(rois), paddle.concat(scores)
            # the best ``post`` over all levels (k as a tensor: the count is dynamic under to_static)
            count = paddle.shape(scores)[0:1]
            k = paddle.minimum(count, paddle.full([1], post, dtype=count.dtype))
            _, idx = paddle.topk(scores, k)
            out.append(paddle.gather(rois, idx))
        return out

    def _loss(self, logits, deltas, anchors, gt, im_shape) -> Dict[str, paddle.Tensor]:
        n = logits[0].shape[0]
        flat_logits = paddle.concat([lg.transpose([0, 2, 3, 1]).reshape([n, -1]) for lg in logits], 1)
        flat_deltas = paddle.concat([dl.transpose([0, 2, 3, 1]).reshape([n, -1, 4]) for dl in deltas], 1)
        all_anchors = np.concatenate([a.numpy().reshape(-1, 4) for a in anchors])
        num_a = len(all_anchors)
        pos_idx, neg_idx, targets = [], [], []
        for i in range(n):
            t = rpn_targets(all_anchors, gt["boxes"][i], **self.sampling)
            pos_idx.append(t["pos"] + i * num_a)
            neg_idx.append(t["neg"] + i * num_a)
            targets.append(t["deltas"])
        pos = np.concatenate(pos_idx).astype(np.int64)
        neg = np.concatenate(neg_idx).astype(np.int64)
        num_sampled = max(len(pos) + len(neg), 1)
        sel = paddle.to_tensor(np.concatenate([pos, neg]))
        labels = paddle.to_tensor(np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]).astype(np.float32))
        cls_logits = paddle.gather(flat_logits.reshape([-1]), sel)
        loss_cls = F.binary_cross_entropy_with_logits(cls_logits, labels, reduction="sum") / num_sampled
        if len(pos):
            pred = paddle.gather(flat_deltas.reshape([-1, 4]), paddle.to_tensor(pos))
            loss_reg = F.l1_loss(pred, paddle.to_tensor(np.concatenate(targets)), reduction="sum") / num_sampled
        else:
            loss_reg = flat_deltas.sum() * 0.0
        return {"loss_rpn_cls": loss_cls, "loss_rpn_reg": loss_reg}
