"""Detection building blocks and models (Faster R-CNN with FPN, R-FCN), registered in MODELS."""
from .rfcn import RFCN
from .two_stage import FasterRCNN, TwoStageDetector

__all__ = ["FasterRCNN", "RFCN", "TwoStageDetector"]
