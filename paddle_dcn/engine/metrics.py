"""Evaluation metrics (registered): ``reset()``, ``update(outputs, batch)``, ``accumulate()``.

``accumulate`` sums the counts over all processes, so every rank returns the global result.
``primary`` names the key used to pick the best checkpoint (higher is better).
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import paddle

from ..registry import METRICS
from .distributed import all_reduce_sum


@METRICS.register()
class TopKAccuracy:
    """Top-k accuracy in percent from ``outputs['logits']`` and ``batch['label']``."""

    def __init__(self, topk: Sequence[int] = (1, 5)) -> None:
        self.topk = [int(k) for k in topk]
        if not self.topk or min(self.topk) < 1:
            raise ValueError(f"topk must be a non-empty list of positive ints, got {topk}")
        self.primary = f"top{self.topk[0]}"
        self.reset()

    def reset(self) -> None:
        self.correct = np.zeros(len(self.topk))
        self.count = 0

    def update(self, outputs: Dict[str, paddle.Tensor], batch: Dict[str, paddle.Tensor]) -> None:
        logits = outputs["logits"].astype("float32").numpy()
        label = batch["label"].numpy().reshape(-1)
        order = np.argsort(-logits, axis=1)
        for i, k in enumerate(self.topk):
            self.correct[i] += (order[:, :k] == label[:, None]).any(axis=1).sum()
        self.count += len(label)

    def accumulate(self) -> Dict[str, float]:
        totals = all_reduce_sum(list(self.correct) + [self.count])
        n = max(totals[-1], 1)
        return {f"top{k}": 100.0 * c / n for k, c in zip(self.topk, totals[:-1])}
