"""Detection building blocks and models (Faster R-CNN with FPN, R-FCN)."""
from . import rfcn, two_stage  # noqa: F401,E402 - registration
from .two_stage import FasterRCNN  # noqa: E402
from .rfcn import RFCN  # noqa: E402
