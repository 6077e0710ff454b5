"""The trainer: builds everything from a config, runs a short loop, delegates to callbacks.

One code path for single-process, multi-process (``paddle.distributed.launch``) and AMP.
Task-agnostic: it needs only the model contract (``model(batch)`` returns ``{'loss': ...}``
in training mode and the metric's inputs in eval mode), a dataset of dict items, and a
registered metric. The classification pipeline and the detection pipeline share it.

Randomness: parameters are initialised from ``seed``; at the start of every epoch the
Paddle and NumPy generators are re-seeded from ``(seed, epoch, rank)``, and the sample order
comes from ``(seed, epoch)``. A run resumed at epoch ``e`` therefore draws the same random
numbers as one that was never interrupted.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from typing import Any, Dict, List, Optional

import numpy as np
import paddle

from .. import data, models  # noqa: F401 - registers datasets, transforms, models
from ..config import dump_config
from ..data.loader import build_dataloader
from ..registry import METRICS, MODELS, build
from ..weights import load_weights
from . import checkpoint as ckpt
from .class_check import build_dataset, check_classes, train_class_names
from .input_size import check_export_shape
from .callbacks import Callback, CheckpointSaver, ProgressLogger, VisualDLLogger, setup_logging
from .distributed import all_reduce_sum, init_distributed
from .optim import build_optimizer, build_scheduler

logger = logging.getLogger("paddle_dcn")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    paddle.seed(seed)


class Trainer:
    """Builds model, data, optimizer, schedule and callbacks from ``cfg`` (see paddle_dcn.config).

    Args:
        cfg: the loaded config (``load_config``).
        mode: 'train' (everything), 'eval' (model + eval data) or 'model' (model only).
        callbacks: extra callbacks, run after the built-in ones.
    """

    def __init__(self, cfg: Dict[str, Any], mode: str = "train", callbacks: Optional[List[Callback]] = None) -> None:
        if mode not in ("train", "eval", "model"):
            raise ValueError(f"mode must be 'train', 'eval' or 'model', got {mode!r}")
        self.cfg, self.mode = cfg, mode
        self.rank, self.world_size = init_distributed()
        self.is_main = self.rank == 0
        self.output_dir = cfg["output_dir"]
        self.seed = int(cfg["seed"])
        setup_logging(self.output_dir if mode == "train" else None, self.rank)
        if mode == "train" and self.is_main:
            os.makedirs(self.output_dir, exist_ok=True)
            text = dump_config(cfg)
            with open(os.path.join(self.output_dir, "config.yml"), "w", encoding="utf-8") as f:
                f.write(text)
            logger.info(f"config ({cfg.get('_name_')}):\n{text}")

        seed_everything(self.seed)
        self.model = build(MODELS, cfg["model"])
        self.unwrapped_model = self.model
        self.epochs = int(cfg["epochs"])
        self.epoch = 0
        self.start_epoch = 0
        self.global_step = 0
        self.best_metric = float("-inf")
        self.improved = False
        self.metric = build(METRICS, cfg["metric"]) if cfg.get("metric") else None
        loader_cfg = cfg["loader"]
        amp = cfg["amp"]
        self.amp_enabled = bool(amp.get("enabled", False))
        self.amp_level, self.amp_dtype = amp.get("level", "O1"), amp.get("dtype", "float16")

        self.train_dataset = self.eval_dataset = self.eval_loader = None
        if mode in ("train", "eval"):
            self._build_datasets()
        if self.eval_dataset is not None:
            self.eval_loader = build_dataloader(
                self.eval_dataset, int(loader_cfg.get("eval_batch_size", loader_cfg["batch_size"])),
                shuffle=False, rank=self.rank, world_size=self.world_size, drop_last=False,
                num_workers=int(loader_cfg.get("num_workers", 0)))
            if hasattr(self.metric, "bind_dataset"):  # e.g. COCO metric: the ground truth it scores against
                self.metric.bind_dataset(self.eval_dataset)
        if mode != "train":
            return

        self.train_loader = build_dataloader(
            self.train_dataset, int(loader_cfg["batch_size"]), shuffle=True, seed=self.seed,
            rank=self.rank, world_size=self.world_size, drop_last=bool(loader_cfg.get("drop_last", True)),
            num_workers=int(loader_cfg.get("num_workers", 0)))
        self.iters_per_epoch = len(self.train_loader.batch_sampler)
        self.global_batch = int(loader_cfg["batch_size"]) * self.world_size
        self.scheduler = build_scheduler(cfg["lr_scheduler"], self.epochs, self.iters_per_epoch)
        self.optimizer = build_optimizer(cfg["optimizer"], self.model.parameters(), self.scheduler,
                                         cfg.get("grad_clip"))
        self.nonfinite_policy = str(cfg.get("nonfinite_loss", "raise"))
        if self.nonfinite_policy not in ("raise", "skip"):
            raise ValueError(f"nonfinite_loss must be 'raise' or 'skip', got {self.nonfinite_policy!r}")
        self.skipped_steps, self.iter = 0, 0
        self.scaler = None
        if self.amp_enabled and self.amp_dtype == "float16":
            self.scaler = paddle.amp.GradScaler(init_loss_scaling=float(amp.get("init_loss_scaling", 1024.0)))
        if self.world_size > 1:
            self.model = paddle.DataParallel(self.model)
        self.checkpoints = ckpt.CheckpointManager(self.output_dir, int(cfg["checkpoint"]["keep_last"]))
        vdl = cfg["visualdl"]
        self.callbacks: List[Callback] = [ProgressLogger(cfg["log_interval"]),
                                          CheckpointSaver(cfg["checkpoint"]["interval"])]
        if vdl.get("enabled", True):
            self.callbacks.append(VisualDLLogger(os.path.join(self.output_dir, "vdl"), cfg["log_interval"],
                                                 vdl.get("num_images", 4), vdl.get("histograms", True)))
        self.callbacks += list(callbacks or [])

    def _build_datasets(self) -> None:
        """Train (mode 'train') and eval datasets, checked before anything runs: class counts
        and names (``class_check``: the eval set takes the train set's classes) and
        ``export.image_shape`` against what the data give the model (``input_size``, a warning
        here: training and evaluation are unaffected, export and infer would not be)."""
        cfg = self.cfg
        if self.mode == "train":
            if not cfg.get("train_dataset"):
                raise KeyError("config has no train_dataset")
            self.train_dataset = build_dataset(cfg, "train_dataset")
        train_names = train_class_names(cfg, self.train_dataset)
        if cfg.get("eval_dataset"):
            self.eval_dataset = build_dataset(cfg, "eval_dataset", train_names)
        check_classes(cfg, self.train_dataset, self.eval_dataset, train_names)
        key = "eval_dataset" if self.eval_dataset is not None else "train_dataset"
        reference = self.eval_dataset if self.eval_dataset is not None else self.train_dataset
        if reference is not None:
            check_export_shape(cfg, reference, key, strict=False)

    # ----------------------------------------------------------------- state
    def model_state_dict(self) -> Dict[str, Any]:
        return self.unwrapped_model.state_dict()

    def training_state(self) -> Dict[str, Any]:
        state = {"epoch": self.epoch + 1, "global_step": self.global_step, "best_metric": self.best_metric,
                 "optimizer": ckpt.portable_optimizer_state(self.optimizer.state_dict(), self.unwrapped_model),
                 "scheduler": self.scheduler.state_dict(), "config_name": self.cfg.get("_name_"), "seed": self.seed,
                 "skipped_steps": self.skipped_steps}
        if self.scaler is not None:  # float16 AMP: the loss scale and its counters
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def load_weights(self, path: str) -> None:
        """Loads model weights from a checkpoint (prefix, file or directory; see
        ``paddle_dcn.weights``: older paddle_dcn layer entries are upgraded, what does not fit
        is logged)."""
        logger.info(load_weights(self.unwrapped_model, path).summary())

    def resume(self, path: str) -> None:
        """Restores model, optimizer, schedule, epoch, step and best metric from ``path``."""
        model_state, state = ckpt.load(path, with_state=True)
        report = load_weights(self.unwrapped_model, model_state)
        if report.missing or report.unused or report.mismatched:
            logger.warning(f"resume {ckpt.resolve(path)}: " + report.summary())
        self.optimizer.set_state_dict(ckpt.restore_optimizer_state(state["optimizer"], self.unwrapped_model))
        self.scheduler.set_state_dict(state["scheduler"])
        self.start_epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.best_metric = float(state["best_metric"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])
        elif self.scaler is not None:
            logger.warning(f"{ckpt.resolve(path)} holds no AMP loss-scale state: the loss scale restarts")
        logger.info(f"resumed from {ckpt.resolve(path)} at epoch {self.start_epoch}")

    def fixed_eval_batch(self, n: int) -> Dict[str, paddle.Tensor]:
        """The first ``n`` eval samples as a batch (the same images every epoch)."""
        dataset = self.eval_dataset if self.eval_dataset is not None else self.train_dataset
        items = [dataset[i] for i in range(min(n, len(dataset)))]
        if hasattr(dataset, "collate_fn"):  # e.g. detection: padded images, padded boxes
            return {k: paddle.to_tensor(v) for k, v in dataset.collate_fn(items).items()}
        return {k: paddle.to_tensor(np.stack([it[k] for it in items])) for k in items[0]}

    # ----------------------------------------------------------------- loops
    def _autocast(self):
        if not self.amp_enabled:
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(enable=True, level=self.amp_level, dtype=self.amp_dtype)

    def _call(self, name: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, name)(self, *args)

    def train_one_iter(self, batch: Dict[str, paddle.Tensor]) -> float:
        """One step; returns the loss. A non-finite loss raises FloatingPointError (config
        ``nonfinite_loss: raise``) or skips the update (``skip``, counted in
        ``self.skipped_steps``); the schedule advances either way."""
        with self._autocast():
            losses = self.model(batch)
        loss = losses["loss"]
        value = float(loss)
        if self.world_size > 1:  # the global batch's loss: every process decides alike (no hang)
            value = all_reduce_sum([value])[0] / self.world_size
        if not math.isfinite(value):
            if self.nonfinite_policy != "skip":
                raise FloatingPointError(
                    f"non-finite training loss {value} at epoch {self.epoch + 1}/{self.epochs}, iteration "
                    f"{self.iter + 1}/{self.iters_per_epoch} (global step {self.global_step + 1}); lower the "
                    "learning rate or set grad_clip, or nonfinite_loss: skip to drop such steps")
            self.skipped_steps += 1
            logger.warning(f"skipped step {self.global_step + 1} (epoch {self.epoch + 1}, iteration "
                           f"{self.iter + 1}): non-finite loss {value}; {self.skipped_steps} skipped so far")
            self.optimizer.clear_grad()
            self.scheduler.step()
            return value
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.clear_grad()
        self.scheduler.step()
        return value

    def train(self) -> Dict[str, float]:
        """Runs the remaining epochs; returns the last evaluation's metrics (or {})."""
        eval_interval = int(self.cfg.get("eval_interval", 1))
        last_metrics: Dict[str, float] = {}
        self._call("on_train_begin")
        try:
            last_metrics = self._train_epochs(eval_interval)
        finally:  # end callbacks (log line, VisualDL writer) run whatever happened
            try:
                self._call("on_train_end")
            except Exception:  # never hide the exception that ended the run
                logger.exception("a callback failed at the end of training")
        return last_metrics

    def _train_epochs(self, eval_interval: int) -> Dict[str, float]:
        last_metrics: Dict[str, float] = {}
        for epoch in range(self.start_epoch, self.epochs):
            self.epoch = epoch
            seed_everything(self.seed + 1000003 * (epoch + 1) + 7919 * self.rank)
            self.train_loader.batch_sampler.set_epoch(epoch)
            self.model.train()
            tic = time.time()
            for it, batch in enumerate(self.train_loader):
                data_time = time.time() - tic  # waiting for the loader, apart from the step
                self.iter = it
                lr = self.optimizer.get_lr()
                loss = self.train_one_iter(batch)
                self.global_step += 1
                toc = time.time()
                self._call("on_iter_end", {"loss": loss, "lr": lr, "batch_size": self.global_batch,
                                           "iter_time": toc - tic, "data_time": data_time, "epoch": epoch,
                                           "iter": it})
                tic = time.time()
            metrics = None
            last = epoch + 1 == self.epochs
            if self.eval_loader is not None and (last or (eval_interval > 0 and (epoch + 1) % eval_interval == 0)):
                metrics = self.evaluate()
                last_metrics = metrics
            self.improved = False
            if metrics and self.metric is not None:
                value = metrics[self.metric.primary]
                self.improved = value > self.best_metric
                self.best_metric = max(self.best_metric, value)
            self._call("on_epoch_end", metrics)
        return last_metrics

    def evaluate(self) -> Dict[str, float]:
        """Metrics of the model on the eval set (summed over all processes)."""
        if self.eval_loader is None or self.metric is None:
            raise ValueError("evaluation needs eval_dataset and metric in the config")
        self.model.eval()
        self.metric.reset()
        with paddle.no_grad():
            for batch in self.eval_loader:
                with self._autocast():
                    outputs = self.model(batch)
                self.metric.update(outputs, batch)
        self.model.train()
        return self.metric.accumulate()
