"""How the offset tools (``engine.offsets``, ``visualize``) read a deformable layer's offsets."""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
import paddle
from paddle import nn


def offset_reader(layer: nn.Layer) -> Optional[Tuple[nn.Layer, Callable[[paddle.Tensor], np.ndarray]]]:
    """``(sub-layer, read)`` for a deformable layer that predicts its offsets: ``read`` turns
    the sub-layer's output into ``[N, P, 2, H_out, W_out]`` float32 offsets; None for any
    other layer (also a DeformConv2D given explicit offsets)."""
    predictor = getattr(layer, "offset_predictor", None)
    if predictor is not None and callable(getattr(layer, "sampling_offsets", None)):
        return predictor, layer.sampling_offsets
    if getattr(layer, "conv_offset", None) is not None and hasattr(layer, "num_points"):
        points = int(layer.num_points)

        def read(output: paddle.Tensor) -> np.ndarray:
            off = output[:, : 2 * points].astype("float32").numpy()
            n, _, h, w = off.shape
            return off.reshape(n, points, 2, h, w)
        return layer.conv_offset, read
    return None
