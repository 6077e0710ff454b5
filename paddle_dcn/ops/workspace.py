"""Settings shared by the deformable-convolution op calls: column workspace and determinism.

The op processes the batch in chunks of images whose deformable im2col columns
(``C_in * kh * kw * H_out * W_out`` elements per image, plus the CPU's table of
sample stencils) fit the workspace limit; at least one image is always
processed, whatever the limit. The backward pass holds the columns and their
gradient.
"""
from __future__ import annotations

from typing import Optional

import paddle

DEFAULT_WORKSPACE_BYTES = 64 * 1024 * 1024

_workspace_bytes = DEFAULT_WORKSPACE_BYTES
_deterministic: Optional[bool] = None


def set_workspace_limit(num_bytes: int) -> None:
    """Sets the column workspace budget (bytes) of later deform_conv2d calls."""
    global _workspace_bytes
    if not isinstance(num_bytes, int) or num_bytes < 1:
        raise ValueError(f"num_bytes must be a positive int, got {num_bytes!r}")
    _workspace_bytes = num_bytes


def get_workspace_limit() -> int:
    return _workspace_bytes


# sizeof(DeformSampleStencil<float>) and <double> in custom_ops/kernels/deform_conv.h.
_STENCIL_BYTES = {4: 68, 8: 120}


def workspace_bytes_per_image(in_channels: int, kernel_points: int, out_pixels: int,
                              deformable_groups: int, element_bytes: int,
                              on_cpu: bool = True) -> int:
    """Workspace one image of a chunk takes: its im2col columns
    (``in_channels * kernel_points * out_pixels`` elements) plus, on CPU when a deformable
    group has at least 4 channels, its table of sample stencils (mirrors the C++ binding)."""
    columns = in_channels * kernel_points * out_pixels * element_bytes
    uses_table = on_cpu and in_channels // deformable_groups >= 4
    table = deformable_groups * kernel_points * out_pixels * _STENCIL_BYTES[element_bytes]
    return columns + (table if uses_table else 0)


def images_per_chunk(batch: int, bytes_per_image: int) -> int:
    """How many images one chunk holds under the current limit (mirrors ``choose_chunk``)."""
    return max(1, min(batch, _workspace_bytes // max(1, bytes_per_image)))


def set_deterministic(enabled: Optional[bool]) -> None:
    """Deterministic CUDA backward (no float atomics): True, False, or None to follow
    ``FLAGS_cudnn_deterministic``. The CPU backward is always deterministic."""
    global _deterministic
    if enabled is not None and not isinstance(enabled, bool):
        raise ValueError(f"enabled must be a bool or None, got {enabled!r}")
    _deterministic = enabled


def deterministic() -> bool:
    if _deterministic is not None:
        return _deterministic
    try:
        return bool(paddle.get_flags(["FLAGS_cudnn_deterministic"])["FLAGS_cudnn_deterministic"])
    except (ValueError, KeyError):
        return False
