"""Functional API over the paddle_dcn custom operators.

This package is the only code that knows the compiled op library exists
(see ``_library``); layers call these functions.
"""
from ._library import OpLibraryNotBuiltError, library_path, load_library
from .deform_aggregate import deform_aggregate, deform_aggregate_fused
from .deform_conv import deform_conv2d
from .deform_conv_packed import deform_conv2d_packed
from .deform_roi_pool import deform_psroi_pool, deform_roi_pool
from .deform_sample import deform_sample2d
from .workspace import (
    get_workspace_limit,
    images_per_chunk,
    set_deterministic,
    set_workspace_limit,
    workspace_bytes_per_image,
)

__all__ = [
    "OpLibraryNotBuiltError",
    "deform_aggregate",
    "deform_aggregate_fused",
    "deform_conv2d",
    "deform_conv2d_packed",
    "deform_psroi_pool",
    "deform_roi_pool",
    "deform_sample2d",
    "get_workspace_limit",
    "images_per_chunk",
    "library_path",
    "load_library",
    "set_deterministic",
    "set_workspace_limit",
    "workspace_bytes_per_image",
]
