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
from typing import Any, Dict, List, Optional, Tuple

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


def _whole_number(value: Any, name: str, minimum: Optional[int]) -> int:
    """``value`` as an int; a fraction (``epochs: 2.7`` was run as 2), a bool, a non-number or
    a value below ``minimum`` is a ValueError naming the config key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise ValueError(f"config {name} must be a whole number, got {value!r}")
    if minimum is not None and int(value) < minimum:
        raise ValueError(f"config {name} must be >= {minimum}, got {value!r}")
    return int(value)


class Trainer:
    """Builds model, data, optimizer, schedule and callbacks from ``cfg`` (see paddle_dcn.config).

    The build steps are methods a subclass may override (detectron2's ``DefaultTrainer``
    shape), called in this order: :meth:`build_model`, :meth:`build_datasets`,
    :meth:`build_loaders`, then in mode 'train' :meth:`build_optimizer` (schedule and
    optimizer), :meth:`build_scaler` and :meth:`build_callbacks`.

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
        self.seed = _whole_number(cfg["seed"], "seed", minimum=None)
        self.epochs = _whole_number(cfg["epochs"], "epochs", minimum=1)
        self.epoch = self.start_epoch = self.global_step = 0
        self.skipped_steps, self.iter = 0, 0
        amp = cfg["amp"]
        self.amp_enabled = bool(amp.get("enabled", False))
        self.amp_level, self.amp_dtype = amp.get("level", "O1"), amp.get("dtype", "float16")
        self.nonfinite_policy = str(cfg.get("nonfinite_loss", "raise"))
        if self.nonfinite_policy not in ("raise", "skip"):
            raise ValueError(f"nonfinite_loss must be 'raise' or 'skip', got {self.nonfinite_policy!r}")
        setup_logging(self.output_dir if mode == "train" else None, self.rank)
        if mode == "train" and self.is_main:
            logger.info(f"config ({cfg.get('_name_')}):\n{dump_config(cfg)}")

        seed_everything(self.seed)
        self.model = self.unwrapped_model = self.build_model()
        self.metric = build(METRICS, cfg["metric"]) if cfg.get("metric") else None
        self.train_dataset = self.eval_dataset = self.train_loader = self.eval_loader = None
        self.optimizer = self.scheduler = self.scaler = None
        self.callbacks: List[Callback] = []
        if mode in ("train", "eval"):
            self.train_dataset, self.eval_dataset = self.build_datasets()
            self.train_loader, self.eval_loader = self.build_loaders()
        if self.eval_dataset is not None and hasattr(self.metric, "bind_dataset"):
            self.metric.bind_dataset(self.eval_dataset)  # e.g. COCO metric: the ground truth it scores against
        if mode != "train":
            return
        self.iters_per_epoch = len(self.train_loader.batch_sampler)
        self.global_batch = int(cfg["loader"]["batch_size"]) * self.world_size
        self.scheduler, self.optimizer = self.build_optimizer()
        self.scaler = self.build_scaler()
        if self.world_size > 1:
            self.model = paddle.DataParallel(self.model)
        self.checkpoints = ckpt.CheckpointManager(self.output_dir, int(cfg["checkpoint"]["keep_last"]))
        self.callbacks = self.build_callbacks() + list(callbacks or [])

    def _write_config(self) -> None:
        """``<output_dir>/config.yml``, written when training starts (:meth:`train`), after the
        build and any ``load_weights``/``resume``: a rerun whose options fail to build, or
        whose model the checkpoint does not fit, leaves the previous run's file, which names
        its checkpoints' model, as it was. Atomic (``checkpoint.atomic_write``)."""
        os.makedirs(self.output_dir, exist_ok=True)
        ckpt.atomic_write(os.path.join(self.output_dir, "config.yml"), dump_config(self.cfg))

    # ----------------------------------------------------------------- build steps
    def build_model(self) -> paddle.nn.Layer:
        """The model of ``cfg['model']`` (registry ``MODELS``), parameters from ``seed``."""
        return build(MODELS, self.cfg["model"])

    def build_datasets(self) -> Tuple[Optional[Any], Optional[Any]]:
        """``(train_dataset, eval_dataset)``: the train set in mode 'train' only, the eval set
        when the config has one; both checked (see :meth:`_build_datasets`)."""
        return self._build_datasets()

    def build_loaders(self) -> Tuple[Optional[Any], Optional[Any]]:
        """``(train_loader, eval_loader)`` over the datasets (``loader`` section; None where the
        dataset is). The train loader shuffles by ``(seed, epoch)`` and drops the last
        incomplete batch unless ``loader.drop_last: false``."""
        loader_cfg = self.cfg["loader"]
        workers = int(loader_cfg.get("num_workers", 0))
        train_loader = eval_loader = None
        if self.eval_dataset is not None:
            eval_loader = build_dataloader(
                self.eval_dataset, int(loader_cfg.get("eval_batch_size", loader_cfg["batch_size"])),
                shuffle=False, rank=self.rank, world_size=self.world_size, drop_last=False, num_workers=workers)
        if self.mode == "train":
            train_loader = build_dataloader(
                self.train_dataset, int(loader_cfg["batch_size"]), shuffle=True, seed=self.seed,
                rank=self.rank, world_size=self.world_size, drop_last=bool(loader_cfg.get("drop_last", True)),
                num_workers=workers)
        return train_loader, eval_loader

    def build_optimizer(self) -> Tuple[Any, Any]:
        """``(scheduler, optimizer)`` of ``lr_scheduler`` and ``optimizer`` (with ``grad_clip``)
        over the model's parameters; the schedule steps once per iteration."""
        cfg = self.cfg
        scheduler = build_scheduler(cfg["lr_scheduler"], self.epochs, self.iters_per_epoch)
        optimizer = build_optimizer(cfg["optimizer"], self.model.parameters(), scheduler, cfg.get("grad_clip"))
        return scheduler, optimizer

    def build_scaler(self) -> Optional[paddle.amp.GradScaler]:
        """float16 AMP's loss scaler (``amp.init_loss_scaling``), else None."""
        if self.amp_enabled and self.amp_dtype == "float16":
            return paddle.amp.GradScaler(init_loss_scaling=float(self.cfg["amp"].get("init_loss_scaling", 1024.0)))
        return None

    def build_callbacks(self) -> List[Callback]:
        """Progress logging, checkpointing (which keeps ``best``) and VisualDL (unless
        ``visualdl.enabled: false``)."""
        cfg, vdl = self.cfg, self.cfg["visualdl"]
        callbacks: List[Callback] = [ProgressLogger(cfg["log_interval"]), CheckpointSaver(cfg["checkpoint"]["interval"])]
        if vdl.get("enabled", True):
            callbacks.append(VisualDLLogger(os.path.join(self.output_dir, "vdl"), cfg["log_interval"],
                                            vdl.get("num_images", 4), vdl.get("histograms", True)))
        return callbacks

    def _build_datasets(self) -> Tuple[Optional[Any], Optional[Any]]:
        """Train (mode 'train') and eval datasets, checked before anything runs: class counts
        and names (``class_check``: the eval set takes the train set's classes) and
        ``export.image_shape`` against what the data give the model (``input_size``, a warning
        here: training and evaluation are unaffected, export and infer would not be)."""
        cfg = self.cfg
        train_dataset = eval_dataset = None
        if self.mode == "train":
            if not cfg.get("train_dataset"):
                raise KeyError("config has no train_dataset")
            train_dataset = build_dataset(cfg, "train_dataset")
        train_names = train_class_names(cfg, train_dataset)
        if cfg.get("eval_dataset"):
            eval_dataset = build_dataset(cfg, "eval_dataset", train_names)
        check_classes(cfg, train_dataset, eval_dataset, train_names)
        key = "eval_dataset" if eval_dataset is not None else "train_dataset"
        reference = eval_dataset if eval_dataset is not None else train_dataset
        if reference is not None:
            check_export_shape(cfg, reference, key, strict=False)
        return train_dataset, eval_dataset

    # ----------------------------------------------------------------- state
    def model_state_dict(self) -> Dict[str, Any]:
        return self.unwrapped_model.state_dict()

    @property
    def best_metric(self) -> float:
        """The best primary metric so far, as the checkpoint callback keeps it (-inf without one)."""
        saver = self._checkpoint_saver()
        return saver.best if saver is not None else float("-inf")

    def _checkpoint_saver(self) -> Optional[CheckpointSaver]:
        return next((cb for cb in self.callbacks if isinstance(cb, CheckpointSaver)), None)

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
        ``paddle_dcn.weights``: older paddle_dcn layer entries are upgraded). In mode 'train'
        (``-w``: pretrained or fine-tuning weights) what does not fit is logged; in modes
        'eval' and 'model' the file must be this model's weights (ValueError otherwise)."""
        exact = self.mode != "train"
        report = load_weights(self.unwrapped_model, path, strict=exact, allow_unused=not exact,
                              hint=" (evaluate with the config the checkpoint was trained with)" if exact else "")
        logger.info(report.summary())

    def resume(self, path: str) -> None:
        """Restores model, optimizer, schedule, epoch, step and best metric from ``path``."""
        prefix, model_state, state = ckpt.read_resumable(path)
        # a resumed run continues the same model: a checkpoint that does not fit is an error
        load_weights(self.unwrapped_model, model_state, strict=True, allow_unused=False, what="resume",
                     source_name=prefix,
                     hint=" (resume with the config the run was started with; -w loads weights that partly fit)")
        self.optimizer.set_state_dict(ckpt.restore_optimizer_state(state["optimizer"], self.unwrapped_model))
        self.scheduler.set_state_dict(state["scheduler"])
        self.start_epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        saver = self._checkpoint_saver()
        if saver is not None:
            saver.best = float(state["best_metric"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])
        elif self.scaler is not None:
            logger.warning(f"{prefix} holds no AMP loss-scale state: the loss scale restarts")
        if self.start_epoch >= self.epochs:
            logger.info(f"resumed from {prefix}: {self.start_epoch} epoch(s) done, the run's {self.epochs} "
                        "already: nothing left to train (raise epochs to continue)")
        else:
            logger.info(f"resumed from {prefix}: {self.start_epoch} epoch(s) done, "
                        f"continuing with epoch {self.start_epoch + 1}/{self.epochs}")

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
        if self.is_main:
            self._write_config()
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
                self._call("on_eval_end", metrics)
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
