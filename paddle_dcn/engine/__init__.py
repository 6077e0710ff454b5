"""Training engine: trainer (loop + callbacks), checkpoints, metrics, optimizers, schedules."""
from . import coco_metric, metrics, optim  # noqa: F401 - registration
from .callbacks import Callback, CheckpointSaver, ProgressLogger, VisualDLLogger
from .checkpoint import CheckpointManager, atomic_save
from .trainer import Trainer, seed_everything

__all__ = ["Callback", "CheckpointManager", "CheckpointSaver", "ProgressLogger", "Trainer",
           "VisualDLLogger", "atomic_save", "seed_everything"]
