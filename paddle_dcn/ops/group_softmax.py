"""Softmax over groups of ``K`` consecutive values of the last axis: ``x`` ``[..., G*K]``, each
run of ``K`` normalised on its own. The DCNv3 layer's softmax of each group's K aggregation
weights.

In CPU dygraph it runs as ``pdcn_group_softmax``: per chunk of rows the maxima subtracted, one
vector loop of exponentials over the chunk (float32: a polynomial exp within 2 ulp; float64:
``std::exp``), the rows summed and divided; rows independent, so results do not depend on the
thread count. Paddle's CPU softmax took 2.9 ms forward for dcnv3_r50's conv2_x logits, a tenth
of the DCNv3 layer. On GPU and under ``to_static``/export it is Paddle's softmax, so saved
programs and ONNX files hold a standard softmax.
"""
from __future__ import annotations

import paddle
import paddle.nn.functional as F

from ._library import load_library, run_op
from .channel_bias import in_cpu_dygraph


def group_softmax(x: paddle.Tensor, group_size: int) -> paddle.Tensor:
    """The softmax of every run of ``group_size`` values along the last axis of ``x``
    ``[..., G*group_size]`` (x's shape and dtype). The caller has checked the shapes."""
    if in_cpu_dygraph(x):
        load_library()
        return run_op("pdcn_group_softmax", x, int(group_size))
    groups = x.shape[-1] // group_size
    # the sizes as a shape tensor, in every mode: traced (AST or SOT) the leading sizes may be
    # unknown (an InputSpec's None H and W; SOT's symbolic sizes once a call changes them),
    # which unflatten refuses beyond one, and a shape of 0s ("copy the size") fails an empty
    # batch (read as literal zeros for a zero-size tensor)
    shape = paddle.shape(x)
    tail = [paddle.full([1], v, dtype=shape.dtype) for v in (groups, group_size)]
    grouped = paddle.concat([shape[:-1]] + tail)
    return paddle.reshape(F.softmax(paddle.reshape(x, grouped), axis=-1), shape)
