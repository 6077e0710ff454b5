"""Trainer callbacks: progress logging, checkpointing, VisualDL.

A callback overrides any of ``on_train_begin(trainer)``, ``on_iter_end(trainer, info)``,
``on_eval_end(trainer, metrics)`` (right after an evaluation during training, before the
epoch's end), ``on_epoch_end(trainer, metrics)`` (``metrics`` is None when the epoch had no
evaluation) and ``on_train_end(trainer)``. ``info`` holds ``loss`` (float), ``lr``, ``batch_size``
(global), ``iter_time`` (s), ``epoch`` and ``iter`` (0-based, within the epoch).
"""
from __future__ import annotations

import datetime
import logging
import os
import sys
import time
from typing import Any, Dict, Optional

import numpy as np
import paddle

from . import offsets as offsets_mod

logger = logging.getLogger("paddle_dcn")


class Callback:
    def on_train_begin(self, trainer: Any) -> None: ...

    def on_iter_end(self, trainer: Any, info: Dict[str, Any]) -> None: ...

    def on_eval_end(self, trainer: Any, metrics: Dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: Any, metrics: Optional[Dict[str, float]]) -> None: ...

    def on_train_end(self, trainer: Any) -> None: ...


class ProgressLogger(Callback):
    """``epoch 2/10 iter 40/250 loss 1.2345 lr 0.0950 imgs/s 31.2 data 0.004s eta 0:05:12``
    every ``interval`` iterations (and the last of an epoch): ``data`` is the mean time per
    iteration spent waiting for the loader since the last line (detectron2's ``data_time``),
    apart from the step itself; eval results after each evaluation."""

    def __init__(self, interval: int = 10) -> None:
        self.interval = max(1, int(interval))
        self.smoothed: Optional[float] = None
        self.loss_sum, self.loss_n = 0.0, 0
        self.data_sum = 0.0

    def on_train_begin(self, trainer: Any) -> None:
        self.t0 = time.time()

    def on_iter_end(self, trainer: Any, info: Dict[str, Any]) -> None:
        t = info["iter_time"]
        self.smoothed = t if self.smoothed is None else 0.9 * self.smoothed + 0.1 * t
        self.loss_sum += info["loss"]
        self.data_sum += info.get("data_time", 0.0)
        self.loss_n += 1
        it, n_iters = info["iter"] + 1, trainer.iters_per_epoch
        if it % self.interval and it != n_iters:
            return
        remaining = (trainer.epochs - info["epoch"] - 1) * n_iters + (n_iters - it)
        eta = datetime.timedelta(seconds=int(remaining * self.smoothed))
        logger.info(
            f"epoch {info['epoch'] + 1}/{trainer.epochs} iter {it}/{n_iters} "
            f"loss {self.loss_sum / self.loss_n:.4f} lr {info['lr']:.5f} "
            f"imgs/s {info['batch_size'] / self.smoothed:.1f} data {self.data_sum / self.loss_n:.3f}s eta {eta}")
        self.loss_sum, self.loss_n, self.data_sum = 0.0, 0, 0.0

    def on_epoch_end(self, trainer: Any, metrics: Optional[Dict[str, float]]) -> None:
        if metrics:
            text = " ".join(f"{k} {v:.2f}" for k, v in metrics.items())
            logger.info(f"eval epoch {trainer.epoch + 1}: {text} (best {trainer.best_metric:.2f})")

    def on_train_end(self, trainer: Any) -> None:
        logger.info(f"training done in {datetime.timedelta(seconds=int(time.time() - self.t0))}")


class CheckpointSaver(Callback):
    """Rank 0 writes ``epoch_N``/``latest`` every ``interval`` epochs (and the last), ``best``
    whenever the primary metric improves (on any epoch, saved by the interval or not); keeps
    the last ``keep_last`` epoch checkpoints.

    It owns "best": ``best`` is the highest primary metric (``trainer.metric.primary``) seen
    (``trainer.best_metric`` reads it; the checkpoint stores it and resume restores it) and
    ``improved`` says whether the last evaluation raised it."""

    def __init__(self, interval: int = 1) -> None:
        self.interval = max(1, int(interval))
        self.best = float("-inf")
        self.improved = False

    def on_eval_end(self, trainer: Any, metrics: Dict[str, float]) -> None:
        self.improved = False
        if metrics and trainer.metric is not None:
            value = float(metrics[trainer.metric.primary])
            self.improved = value > self.best
            self.best = max(self.best, value)

    def on_epoch_end(self, trainer: Any, metrics: Optional[Dict[str, float]]) -> None:
        improved, self.improved = self.improved and bool(metrics), False
        if not trainer.is_main:
            return
        done = trainer.epoch + 1
        manager = trainer.checkpoints
        if done % self.interval and done != trainer.epochs:
            if improved:  # "best" follows the metric whatever the interval
                manager.save("best", trainer.model_state_dict(), trainer.training_state())
                logger.info(f"saved checkpoint {os.path.join(manager.directory, 'best')} (epoch {done})")
            return
        tag = f"epoch_{done}"
        manager.save(tag, trainer.model_state_dict(), trainer.training_state())
        manager.copy(tag, "latest")
        if improved:
            manager.copy(tag, "best")
        manager.prune()
        logger.info(f"saved checkpoint {os.path.join(manager.directory, tag)}" + (" (best)" if improved else ""))


def _draw_sampling(model: Any, images: paddle.Tensor, layer_names: list) -> Dict[str, np.ndarray]:
    """``{'<layer>/<i>': HWC uint8}`` sampling-location pictures (paddle_dcn.visualize) of
    ``layer_names`` for each image; the model's ``backbone`` is run when it has one (it takes
    the image tensor, whatever the task model's batch format)."""
    from ..visualize import visualize_offsets

    net = getattr(model, "backbone", model)
    prefix = "backbone." if net is not model else ""
    names = [n[len(prefix):] for n in layer_names if n.startswith(prefix)]
    pictures = {}
    for i in range(images.shape[0]):
        drawn = visualize_offsets(net, images[i: i + 1], layer_names=names, min_size=128)
        for name, img in drawn.items():
            pictures[f"{prefix}{name}/{i}"] = img
    return pictures


class VisualDLLogger(Callback):
    """Rank 0 only. Scalars ``train/loss``, ``train/lr``, ``train/images_per_sec`` (every log
    interval), ``eval/<metric>``; after each evaluation, for a model with deformable convs,
    histograms ``offsets/<stage>`` of offset lengths on fixed eval images (and their mean as
    ``offsets_mean/<stage>``), and pictures ``sampling_locations/<layer>/<i>`` of where the
    last deformable conv of each stage samples (``paddle_dcn.visualize``)."""

    def __init__(self, logdir: str, interval: int = 10, num_images: int = 4, histograms: bool = True) -> None:
        self.logdir, self.interval = logdir, max(1, int(interval))
        self.num_images, self.histograms = int(num_images), bool(histograms)
        self.writer = None

    def on_train_begin(self, trainer: Any) -> None:
        if not trainer.is_main:
            return
        try:
            from visualdl import LogWriter
        except ImportError:
            logger.warning("visualdl is not installed (pip install visualdl): no VisualDL records")
            return
        self.writer = LogWriter(logdir=self.logdir)
        logger.info(f"VisualDL logdir: {self.logdir}\n  view with: visualdl --logdir {self.logdir} --port 8040")
        self.draw = True

    def on_iter_end(self, trainer: Any, info: Dict[str, Any]) -> None:
        if self.writer is None or trainer.global_step % self.interval:
            return
        step = trainer.global_step
        self.writer.add_scalar("train/loss", info["loss"], step)
        self.writer.add_scalar("train/lr", info["lr"], step)
        self.writer.add_scalar("train/images_per_sec", info["batch_size"] / max(info["iter_time"], 1e-9), step)

    def on_epoch_end(self, trainer: Any, metrics: Optional[Dict[str, float]]) -> None:
        if self.writer is None or not metrics:
            return
        step = trainer.epoch + 1
        for key, value in metrics.items():
            self.writer.add_scalar(f"eval/{key}", value, step)
        if self.histograms and self.num_images > 0:
            self._log_offsets(trainer, step)
        self.writer.flush()

    def _log_offsets(self, trainer: Any, step: int) -> None:
        model = trainer.unwrapped_model
        if not offsets_mod.deformable_layers(model):
            return
        batch = trainer.fixed_eval_batch(self.num_images)
        was_training = model.training
        model.eval()
        try:
            offs = offsets_mod.capture_offsets(model, lambda: model(batch))
        finally:
            model.train(was_training)
        for group, mags in offsets_mod.magnitudes_by_group(offs).items():
            self.writer.add_histogram(f"offsets/{group}", mags, step)
            self.writer.add_scalar(f"offsets_mean/{group}", float(mags.mean()), step)
        if self.draw:
            # one picture per stage (its last deformable layer) and fixed image
            last_per_stage = {offsets_mod.group_name(n): n for n in offs}
            try:
                pictures = _draw_sampling(model, batch["image"], list(last_per_stage.values()))
            except Exception as exc:  # pictures are a nicety; never stop training for them
                logger.warning(f"sampling-location images failed, disabled: {exc}")
                self.draw = False
                return
            for tag, img in pictures.items():
                self.writer.add_image(f"sampling_locations/{tag}", img, step)

    def on_train_end(self, trainer: Any) -> None:
        if self.writer is not None:
            self.writer.close()


def setup_logging(output_dir: Optional[str], rank: int) -> None:
    """Logs to stdout (rank 0; other ranks only warnings) and ``<output_dir>/train.log``."""
    root = logging.getLogger("paddle_dcn")
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    root.propagate = False
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(fmt)
    root.addHandler(handler)
    if output_dir and rank == 0:
        os.makedirs(output_dir, exist_ok=True)
        fh = logging.FileHandler(os.path.join(output_dir, "train.log"))
        fh.setFormatter(fmt)
        root.addHandler(fh)


__all__ = ["Callback", "CheckpointSaver", "ProgressLogger", "VisualDLLogger", "setup_logging", "paddle"]
