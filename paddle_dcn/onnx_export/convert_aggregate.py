"""Converter for the DCNv3/DCNv4 core (``pdcn_deform_aggregate`` and its fused form).

ONNX has no aggregation op, but its ``DeformConv`` (opset 19+, the exporter's lowest) computes
the same sum when every channel is its own conv group with an all-ones kernel: with
``group = C`` and ``offset_group = G``, output channel c of group g is
``sum_k mask[g, k] * bilinear(x[c], p0 + p_k + offset[g, k])``, which is
``deform_aggregate``'s ``sum_k m[g, k] * bilinear(value[g, c], ...)``. What differs is layout:
the op is channels-last with kernel point ``k = iw * kh + ih`` (InternImage's order) and offset
pairs ``(dx, dy)``; DeformConv is channels-first with ``k = ih * kw + iw`` and pairs
``(dy, dx)``. The converter reorders offsets and weights with Reshape/Transpose/Gather, folds
``offset_scale`` into the offsets (``s * (p_k - c + d) = (p_k - c) + [(s - 1) (p_k - c) + s d]``,
c the kernel centre) and transposes value and output. The sampling rule is DeformConv's
bilinear with zeros outside the map, as the op's; the op's guard that turns a non-finite or
huge offset into a zero sample has no ONNX counterpart (runtimes differ there).
"""
from __future__ import annotations

import numpy as np

from .convert_tensor import operands, static_shape
from .graph import GraphBuilder, OnnxExportError, attr, converter, layer_of, numpy_dtype


def _geometry(op) -> dict:
    kh, kw = [int(v) for v in attr(op, "kernel_size")]
    hi, lo = [float(v) for v in attr(op, "offset_scale")]
    return dict(kh=kh, kw=kw, stride=[int(v) for v in attr(op, "stride")],
                padding=[int(v) for v in attr(op, "padding")], dilation=[int(v) for v in attr(op, "dilation")],
                groups=int(attr(op, "groups")), scale=hi + lo)


def _channels_first_offsets(b: GraphBuilder, offset: str, g: dict, dtype) -> str:
    """``[N, Ho, Wo, G*K*2]`` in the op's order -> DeformConv's ``[N, G*K*2, Ho, Wo]``, scaled."""
    G, kh, kw = g["groups"], g["kh"], g["kw"]
    (o,) = b.node("Reshape", [offset, b.ints([0, 0, 0, G, kw, kh, 2], "shape")])
    (o,) = b.node("Transpose", [o], perm=[0, 1, 2, 3, 5, 4, 6])      # [N, Ho, Wo, G, kh, kw, (dx, dy)]
    (o,) = b.node("Gather", [o, b.ints([1, 0], "yx")], axis=6)        # (dy, dx)
    if g["scale"] != 1.0:
        s = g["scale"]
        ch, cw = (g["dilation"][0] * (kh - 1)) // 2, (g["dilation"][1] * (kw - 1)) // 2
        shift = np.zeros([kh, kw, 2])
        shift[..., 0] = (s - 1.0) * (np.arange(kh)[:, None] * g["dilation"][0] - ch)
        shift[..., 1] = (s - 1.0) * (np.arange(kw)[None, :] * g["dilation"][1] - cw)
        (o,) = b.node("Mul", [o, b.constant(np.asarray(s, dtype=dtype), "offset_scale")])
        (o,) = b.node("Add", [o, b.constant(shift.astype(dtype), "offset_shift")])
    (o,) = b.node("Reshape", [o, b.ints([0, 0, 0, G * kh * kw * 2], "shape")])
    (o,) = b.node("Transpose", [o], perm=[0, 3, 1, 2])
    return o


def _channels_first_weights(b: GraphBuilder, weight: str, g: dict) -> str:
    """``[N, Ho, Wo, G*K]`` in the op's order -> DeformConv's mask ``[N, G*K, Ho, Wo]``."""
    G, kh, kw = g["groups"], g["kh"], g["kw"]
    (m,) = b.node("Reshape", [weight, b.ints([0, 0, 0, G, kw, kh], "shape")])
    (m,) = b.node("Transpose", [m], perm=[0, 1, 2, 3, 5, 4])
    (m,) = b.node("Reshape", [m, b.ints([0, 0, 0, G * kh * kw], "shape")])
    (m,) = b.node("Transpose", [m], perm=[0, 3, 1, 2])
    return m


def _aggregate(b: GraphBuilder, op, value, offset: str, weight: str, g: dict) -> None:
    channels = static_shape(value)[3]
    if channels < 0:
        raise OnnxExportError(f"{op.name()} in layer {layer_of(op)}: the channel count must be static")
    dtype = numpy_dtype(value.dtype)
    (x,) = b.node("Transpose", [b.name(value)], perm=[0, 3, 1, 2])
    ones = b.constant(np.ones([channels, 1, g["kh"], g["kw"]], dtype=dtype), "aggregate_kernel")
    ph, pw = g["padding"]
    (y,) = b.node("DeformConv", [x, ones, _channels_first_offsets(b, offset, g, dtype), "",
                                 _channels_first_weights(b, weight, g)],
                  kernel_shape=[g["kh"], g["kw"]], strides=g["stride"], dilations=g["dilation"],
                  pads=[ph, pw, ph, pw], group=channels, offset_group=g["groups"])
    b.emit(op, "Transpose", [y], perm=[0, 2, 3, 1])


@converter("custom_op.pdcn_deform_aggregate")
def _deform_aggregate(b: GraphBuilder, op) -> None:
    value, offset, weight = operands(op)[:3]
    _aggregate(b, op, value, b.name(offset), b.name(weight), _geometry(op))


@converter("custom_op.pdcn_deform_aggregate_fused")
def _deform_aggregate_fused(b: GraphBuilder, op) -> None:
    """DCNv4's fused ``[N, Ho, Wo, S]`` tensor: per group 2K offsets then K weights (S >= 3GK)."""
    value, offset_mask = operands(op)[:2]
    g = _geometry(op)
    G, K = g["groups"], g["kh"] * g["kw"]
    (om,) = b.node("Slice", [b.name(offset_mask), b.ints([0]), b.ints([G * 3 * K]), b.ints([3], "axes")])
    (om,) = b.node("Reshape", [om, b.ints([0, 0, 0, G, 3 * K], "shape")])
    (off,) = b.node("Slice", [om, b.ints([0]), b.ints([2 * K]), b.ints([4], "axes")])
    (wt,) = b.node("Slice", [om, b.ints([2 * K]), b.ints([3 * K]), b.ints([4], "axes")])
    (off,) = b.node("Reshape", [off, b.ints([0, 0, 0, G * 2 * K], "shape")])
    (wt,) = b.node("Reshape", [wt, b.ints([0, 0, 0, G * K], "shape")])
    _aggregate(b, op, value, off, wt, g)
