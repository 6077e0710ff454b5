"""LayerNorm over the last axis, ``x`` ``[..., C]`` with ``weight`` and ``bias`` ``[C]``: the
normalisation of the DCNv3 layer's offset/weight branch (channels-last).

In CPU dygraph it runs as ``pdcn_layer_norm_last_axis``: one pass per row forward (mean and
1/std kept), one pass backward for the input gradient and the weight/bias gradient partial
sums over fixed row chunks, so independent of the thread count. Paddle's CPU layer_norm
gradient took 3 ms of the DCNv3 layer's ~28 ms forward+backward at dcnv3_r50's conv2_x (ten
times its forward). On GPU and under ``to_static``/export it is Paddle's layer_norm, so saved
programs and ONNX files hold a standard LayerNorm.
"""
from __future__ import annotations

import paddle
import paddle.nn.functional as F

from ._library import load_library, run_op
from .channel_bias import in_cpu_dygraph


def layer_norm_last_axis(x: paddle.Tensor, weight: paddle.Tensor, bias: paddle.Tensor,
                         epsilon: float) -> paddle.Tensor:
    """``F.layer_norm(x, [C], weight, bias, epsilon)`` for ``x`` ``[..., C]``, ``weight`` and
    ``bias`` ``[C]`` (x's dtype and place); gradients for all three. The caller has checked
    the shapes."""
    if in_cpu_dygraph(x) and weight.dtype == x.dtype and bias.dtype == x.dtype and x.shape[-1] > 0:
        load_library()
        return run_op("pdcn_layer_norm_last_axis", x, weight, bias, float(epsilon))[0]
    return F.layer_norm(x, x.shape[-1:], weight, bias, epsilon)
