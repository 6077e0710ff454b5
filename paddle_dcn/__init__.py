"""paddle_dcn: deformable convolution and deformable RoI pooling for PaddlePaddle."""
from . import ops

__version__ = "0.1.0"
from . import layers
from .layers import (
    AddCoords,
    CoordConv,
    DeformConv2D,
    DeformPSRoIPool,
    DeformRoIPool,
    DeformRoIPoolPack,
    ModulatedDeformRoIPoolPack,
    SpatialTransformer,
)
from .layers import ConvOffset2D, DeformableSampling2D  # noqa: E402
