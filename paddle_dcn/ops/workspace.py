"""Settings shared by the deformable-convolution op calls: column workspace and determinism.

The op processes the batch in chunks of images whose deformable im2col columns
(``C_in * kh * kw * H_out * W_out`` elements per image, plus the CPU's channels-last
copy of the input) fit the workspace limit; at least one image is always
processed, whatever the limit. The backward pass holds the columns and their
gradient. With one CPU thread the library makes the chunk smaller still, cache-sized (the
fewest images whose columns outweigh the weight; ``choose_chunk`` in
``custom_ops/paddle/deform_conv_op.cc``).
"""
from __future__ import annotations

import ctypes
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


def workspace_bytes_per_image(in_channels: int, kernel_points: int, out_pixels: int,
                              deformable_groups: int, element_bytes: int,
                              on_cpu: bool = True, *, in_pixels: Optional[int] = None,
                              groups: int = 1, backward: bool = False) -> int:
    """Workspace one image of a chunk takes, as the op library counts it when it sizes chunks
    (asked of the library itself, ``pdcn_deform_conv_bytes_per_image``): its im2col columns
    (``in_channels * kernel_points * out_pixels`` elements) plus, on CPU, the channels-last
    copy of its input (``in_channels *
    in_pixels`` elements; twice that for ``backward``, which also holds the input gradient).
    ``in_pixels`` defaults to ``out_pixels`` (stride 1, "same" padding)."""
    fn = _bytes_per_image_fn()
    return int(fn(in_channels, out_pixels if in_pixels is None else in_pixels, kernel_points,
                  out_pixels, groups, deformable_groups, element_bytes, int(on_cpu),
                  int(backward)))


def _bytes_per_image_fn():
    global _library_fn
    if _library_fn is None:
        from ._library import library_path

        fn = ctypes.CDLL(library_path()).pdcn_deform_conv_bytes_per_image
        fn.restype = ctypes.c_int64
        fn.argtypes = [ctypes.c_int64] * 7 + [ctypes.c_int, ctypes.c_int]
        _library_fn = fn
    return _library_fn


_library_fn = None


def images_per_chunk(batch: int, bytes_per_image: int) -> int:
    """The most images one chunk holds under the current limit (``choose_chunk``'s workspace
    bound; with one CPU thread the library may choose fewer, cache-sized)."""
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
