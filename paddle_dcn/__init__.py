"""paddle_dcn: deformable convolution and deformable RoI pooling for PaddlePaddle.

The layers are re-exported flat (``from paddle_dcn import DeformConv2D, DCNv3, DCNv4``); the functional
operators live in ``paddle_dcn.ops``.
"""
from . import _paddle_import  # noqa: F401 - first: Paddle without its ccache warning
from . import layers, ops
from .layers import (
    AddCoords,
    ConvOffset2D,
    CoordConv,
    DCNv3,
    DCNv4,
    DeformableSampling2D,
    DeformConv2D,
    DeformPSRoIPool,
    DeformRoIPool,
    DeformRoIPoolPack,
    ModulatedDeformRoIPoolPack,
    SpatialTransformer,
)

__version__ = "0.1.0"

__all__ = [
    "AddCoords",
    "ConvOffset2D",
    "CoordConv",
    "DCNv3",
    "DCNv4",
    "DeformableSampling2D",
    "DeformConv2D",
    "DeformPSRoIPool",
    "DeformRoIPool",
    "DeformRoIPoolPack",
    "ModulatedDeformRoIPoolPack",
    "SpatialTransformer",
    "layers",
    "ops",
]
