"""Datasets (built-in generated shapes, class folders, list files), transforms, loaders."""
from . import folder, geometric, transforms  # noqa: F401 - registration
from . import coco, det_transforms, shapes_det  # noqa: F401 - registration (detection)
from .folder import ImageFolder, ImageList
from .geometric import CLASS_NAMES, GeometricShapes
from .loader import EpochBatchSampler, build_dataloader
from .transforms import Compose

__all__ = ["CLASS_NAMES", "Compose", "EpochBatchSampler", "GeometricShapes", "ImageFolder",
           "ImageList", "build_dataloader"]
