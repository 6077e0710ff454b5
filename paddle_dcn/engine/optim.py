"""Optimizers and learning-rate schedules, registered by name and built from config.

Schedules are per-iteration :class:`paddle.optimizer.lr.LRScheduler` subclasses (the trainer
calls ``step()`` after every iteration), so a resumed run continues the exact curve. Their
``epochs`` and ``iters_per_epoch`` come from the trainer, not the config.

Weight decay applies to parameters with more than one dimension (conv and linear weights),
not to biases and normalisation parameters, unless ``decay_all=True``.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import paddle

from ..registry import OPTIMIZERS, SCHEDULERS, build


class _WarmupSchedule(paddle.optimizer.lr.LRScheduler):
    """Linear warm-up from ``base_lr * warmup_start_factor`` over ``warmup_epochs``, then
    :meth:`after_warmup` (fraction of the post-warm-up iterations done -> lr)."""

    def __init__(self, base_lr: float, epochs: int, iters_per_epoch: int, warmup_epochs: float = 0.0,
                 warmup_start_factor: float = 0.1) -> None:
        if base_lr <= 0 or epochs < 1 or iters_per_epoch < 1:
            raise ValueError(f"need base_lr > 0, epochs >= 1, iters_per_epoch >= 1; got "
                             f"{base_lr}, {epochs}, {iters_per_epoch}")
        self.total = int(epochs * iters_per_epoch)
        self.iters_per_epoch = int(iters_per_epoch)
        self.warmup = min(int(round(warmup_epochs * iters_per_epoch)), self.total)
        self.warmup_start_factor = float(warmup_start_factor)
        super().__init__(learning_rate=float(base_lr))

    def after_warmup(self, progress: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_lr(self) -> float:
        it = self.last_epoch  # paddle counts steps in last_epoch
        if it < self.warmup:
            f = self.warmup_start_factor
            return self.base_lr * (f + (1 - f) * it / self.warmup)
        span = max(self.total - self.warmup, 1)
        return self.after_warmup(min(max(it - self.warmup, 0) / span, 1.0))


@SCHEDULERS.register()
class WarmupCosine(_WarmupSchedule):
    """Warm-up then cosine decay from ``base_lr`` to ``min_lr`` at the last iteration."""

    def __init__(self, base_lr: float, epochs: int, iters_per_epoch: int, warmup_epochs: float = 0.0,
                 warmup_start_factor: float = 0.1, min_lr: float = 0.0) -> None:
        self.min_lr = float(min_lr)
        super().__init__(base_lr, epochs, iters_per_epoch, warmup_epochs, warmup_start_factor)

    def after_warmup(self, progress: float) -> float:
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress))


@SCHEDULERS.register()
class WarmupStep(_WarmupSchedule):
    """Warm-up then ``base_lr * gamma ** (number of milestones (epochs) passed)``."""

    def __init__(self, base_lr: float, epochs: int, iters_per_epoch: int, milestones: Sequence[float] = (),
                 gamma: float = 0.1, warmup_epochs: float = 0.0, warmup_start_factor: float = 0.1) -> None:
        self.milestones = sorted(float(m) for m in milestones)
        self.gamma = float(gamma)
        super().__init__(base_lr, epochs, iters_per_epoch, warmup_epochs, warmup_start_factor)

    def after_warmup(self, progress: float) -> float:
        epoch = self.last_epoch / self.iters_per_epoch
        return self.base_lr * self.gamma ** sum(epoch >= m for m in self.milestones)


def _decay_groups(parameters: list, weight_decay: float, decay_all: bool) -> list:
    decay = [p for p in parameters if decay_all or len(p.shape) > 1]
    no_decay = [p for p in parameters if not (decay_all or len(p.shape) > 1)]
    groups = [{"params": decay, "weight_decay": float(weight_decay)}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


@OPTIMIZERS.register("Momentum")
def momentum(learning_rate: Any, parameters: list, grad_clip: Optional[Any] = None, momentum: float = 0.9,
             weight_decay: float = 1e-4, nesterov: bool = False, decay_all: bool = False) -> paddle.optimizer.Optimizer:
    """SGD with momentum; ``weight_decay`` is L2 (added to the gradient), as in the papers."""
    return paddle.optimizer.Momentum(
        learning_rate=learning_rate, momentum=momentum, use_nesterov=nesterov, grad_clip=grad_clip,
        parameters=_decay_groups(parameters, weight_decay, decay_all))


@OPTIMIZERS.register("AdamW")
def adamw(learning_rate: Any, parameters: list, grad_clip: Optional[Any] = None, beta1: float = 0.9,
          beta2: float = 0.999, epsilon: float = 1e-8, weight_decay: float = 0.05,
          decay_all: bool = False) -> paddle.optimizer.Optimizer:
    """AdamW (decoupled weight decay)."""
    names = {p.name for p in parameters if decay_all or len(p.shape) > 1}
    return paddle.optimizer.AdamW(
        learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon, parameters=parameters,
        weight_decay=weight_decay, apply_decay_param_fun=lambda name: name in names, grad_clip=grad_clip)


def build_scheduler(cfg: Dict[str, Any], epochs: int, iters_per_epoch: int) -> paddle.optimizer.lr.LRScheduler:
    return build(SCHEDULERS, cfg, epochs=epochs, iters_per_epoch=iters_per_epoch)


def build_optimizer(cfg: Dict[str, Any], parameters: list, scheduler: Any,
                    grad_clip_norm: Optional[float] = None) -> paddle.optimizer.Optimizer:
    clip = paddle.nn.ClipGradByGlobalNorm(float(grad_clip_norm)) if grad_clip_norm else None
    return build(OPTIMIZERS, cfg, learning_rate=scheduler, parameters=parameters, grad_clip=clip)
