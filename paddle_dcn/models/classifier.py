"""Image classifier: backbone -> global average pool -> (dropout) -> linear."""
from __future__ import annotations

from typing import Any, Dict, Optional

import paddle
import paddle.nn.functional as F
from paddle import nn

from ..registry import BACKBONES, MODELS, build


@MODELS.register()
class Classifier(nn.Layer):
    """The engine's model contract for classification.

    ``forward(batch)`` with ``batch = {'image': [N, 3, H, W] float32, 'label': [N] int64}``:
    in training mode returns ``{'loss': scalar}`` (cross entropy, optional label smoothing);
    in eval mode returns ``{'logits': [N, num_classes]}``. :meth:`predict` maps images to
    class probabilities (what the exported inference model computes).

    Args:
        backbone: backbone config (``{'type': 'ResNet', ...}``); its last output is pooled.
        num_classes: number of classes.
        dropout: dropout before the linear layer (0 for none).
        label_smoothing: epsilon of label smoothing (0 for none).
    """

    def __init__(self, backbone: Dict[str, Any], num_classes: int, dropout: float = 0.0,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.backbone = build(BACKBONES, backbone)
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.fc = nn.Linear(self.backbone.out_channels[-1], self.num_classes)

    def logits(self, image: paddle.Tensor) -> paddle.Tensor:
        feat = self.pool(self.backbone(image)[-1]).flatten(1)
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.fc(feat)

    def predict(self, image: paddle.Tensor) -> paddle.Tensor:
        """``image [N, 3, H, W]`` -> class probabilities ``[N, num_classes]``."""
        return F.softmax(self.logits(image), axis=-1)

    def forward(self, batch: Dict[str, paddle.Tensor]) -> Dict[str, paddle.Tensor]:
        logits = self.logits(batch["image"])
        if not self.training:
            return {"logits": logits}
        label = batch["label"].reshape([-1]).astype("int64")
        if self.label_smoothing > 0:
            soft = F.label_smooth(F.one_hot(label, self.num_classes), epsilon=self.label_smoothing)
            loss = F.cross_entropy(logits.astype("float32"), soft, soft_label=True)
        else:
            loss = F.cross_entropy(logits.astype("float32"), label)
        return {"loss": loss}


@BACKBONES.register()
class SimpleConvNet(nn.Layer):
    """conv-relu-pool x2 without normalisation (no batch statistics: a process-count-invariant
    model for data-parallel equivalence tests). ``forward`` -> ``[feature map]``."""

    def __init__(self, channels: int = 8, in_channels: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2D(in_channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2D(2),
            nn.Conv2D(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.MaxPool2D(2))
        self.out_channels = [2 * channels]

    def forward(self, x: paddle.Tensor):
        return [self.body(x)]


def build_model(cfg: Dict[str, Any]) -> nn.Layer:
    return build(MODELS, cfg)


__all__ = ["Classifier", "SimpleConvNet", "build_model", "Optional"]
