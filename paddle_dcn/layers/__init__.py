"""paddle.nn.Layer classes over paddle_dcn.ops (re-exported flat from ``paddle_dcn``)."""
from ._versioning import VersionedLayer, load_state_dict, upgrade_state_dict
from .coord_conv import AddCoords, CoordConv
from .dcnv3 import DCNv3
from .dcnv4 import DCNv4
from .deform_conv import DeformConv2D
from .deform_psroi_pool import DeformPSRoIPool
from .deform_roi_pool import DeformRoIPool, DeformRoIPoolPack, ModulatedDeformRoIPoolPack
from .deformable_sampling import ConvOffset2D, DeformableSampling2D
from .spatial_transformer import DefaultLocalization, SpatialTransformer

__all__ = [
    "AddCoords",
    "ConvOffset2D",
    "CoordConv",
    "DCNv3",
    "DCNv4",
    "DefaultLocalization",
    "DeformConv2D",
    "DeformPSRoIPool",
    "DeformRoIPool",
    "DeformRoIPoolPack",
    "DeformableSampling2D",
    "ModulatedDeformRoIPoolPack",
    "SpatialTransformer",
    "VersionedLayer",
    "load_state_dict",
    "upgrade_state_dict",
]
