"""Reads the sampling offsets of a model's deformable layers (for VisualDL and tools).

A deformable layer is a sub-layer that predicts its own offsets:
- one with ``conv_offset`` and ``num_points`` (paddle_dcn's ``DeformConv2D``): its
  ``conv_offset`` output holds, per output pixel, ``2 * num_points`` offset channels (y, x per
  kernel point) followed by the mask logits for DCN v2;
- one with ``offset_predictor`` and ``sampling_offsets`` (``DCNv3``, ``DCNv4``): the
  predictor's output, turned into the same layout by ``sampling_offsets``.
Either way the offsets come out as ``[N, num_points, 2, H_out, W_out]`` (y then x, kernel
points row-major per offset group), displacements from the plain conv's sampling grid.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Dict, List, Tuple

import numpy as np
import paddle
from paddle import nn

from ..layers._offset_reader import offset_reader

_STAGE_RE = re.compile(r"^(.*?(?:res\d+|stages\.\d+))\.")


def deformable_layers(model: nn.Layer) -> "OrderedDict[str, nn.Layer]":
    """``{qualified name: layer}`` of every deformable layer in ``model`` (see
    :func:`offset_reader`), in definition order."""
    found = OrderedDict()
    for name, layer in model.named_sublayers():
        if offset_reader(layer) is not None:
            found[name] = layer
    return found


def group_name(layer_name: str) -> str:
    """The stage a layer belongs to: ``backbone.res3.0.conv2`` -> ``backbone.res3`` (also
    ``...stages.N``); the layer's own name when it is in no stage."""
    m = _STAGE_RE.match(layer_name)
    return m.group(1) if m else layer_name


def capture_offsets(model: nn.Layer, run) -> "OrderedDict[str, np.ndarray]":
    """Calls ``run()`` (a forward pass) and returns each deformable layer's offsets
    ``[N, num_points, 2, H_out, W_out]`` (float32 numpy, y then x) keyed by layer name."""
    layers = deformable_layers(model)
    captured: Dict[str, np.ndarray] = OrderedDict()
    handles = []
    for name, layer in layers.items():
        predictor, read = offset_reader(layer)

        def hook(_layer, _inputs, output, name=name, read=read):
            captured[name] = read(output)
        handles.append(predictor.register_forward_post_hook(hook))
    try:
        with paddle.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return captured


def magnitudes_by_group(offsets: Dict[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
    """Offset lengths ``sqrt(dy^2 + dx^2)`` (pixels of the layer's input) pooled per stage."""
    groups: Dict[str, List[np.ndarray]] = OrderedDict()
    for name, off in offsets.items():
        groups.setdefault(group_name(name), []).append(np.sqrt((off ** 2).sum(axis=2)).ravel())
    return OrderedDict((g, np.concatenate(v)) for g, v in groups.items())


def effective_dilation(offsets: np.ndarray, kernel_size: Tuple[int, int],
                       dilation: Tuple[int, int] = (1, 1)) -> np.ndarray:
    """The DCN v1 paper's measure of a deformable filter's footprint (its section 4.1): per
    output pixel, the mean distance between adjacent sampling locations of the kernel grid
    (horizontal and vertical neighbours, averaged over the deformable groups), in pixels of
    the layer's input. A plain conv of dilation ``d`` gives ``d``; offsets that stretch the
    grid by ``k`` give ``k * d``.

    offsets: ``[N, dg * kh * kw, 2, H_out, W_out]`` (y then x, as :func:`capture_offsets`
    returns them). Returns float64 ``[N, H_out, W_out]``."""
    kh, kw = (int(v) for v in kernel_size)
    dh, dw = (float(v) for v in dilation)
    if offsets.ndim != 5 or offsets.shape[2] != 2 or offsets.shape[1] % (kh * kw):
        raise ValueError(f"offsets must be [N, dg*{kh}*{kw}, 2, H, W], got {list(offsets.shape)}")
    if kh * kw < 2:
        raise ValueError(f"kernel_size must have at least 2 points, got {(kh, kw)}")
    n, points, _, h, w = offsets.shape
    grid = offsets.astype(np.float64).reshape(n, points // (kh * kw), kh, kw, 2, h, w)
    grid[:, :, :, :, 0] += (np.arange(kh) * dh)[None, None, :, None, None, None]
    grid[:, :, :, :, 1] += (np.arange(kw) * dw)[None, None, None, :, None, None]
    dists = []
    if kw > 1:
        dists.append(np.sqrt((np.diff(grid, axis=3) ** 2).sum(axis=4)).reshape(n, -1, h, w))
    if kh > 1:
        dists.append(np.sqrt((np.diff(grid, axis=2) ** 2).sum(axis=4)).reshape(n, -1, h, w))
    return np.concatenate(dists, axis=1).mean(axis=1)
