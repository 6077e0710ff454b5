"""Converters for elementwise math, reductions, softmax and matrix products."""
from __future__ import annotations

import numpy as np

from .convert_tensor import fold, operands, static_shape
from .graph import GraphBuilder, OnnxExportError, attr, converter, layer_of, numpy_dtype

_BINARY = {
    "pd_op.add": ("Add", np.add), "pd_op.subtract": ("Sub", np.subtract),
    "pd_op.multiply": ("Mul", np.multiply), "pd_op.divide": ("Div", np.divide),
    "pd_op.maximum": ("Max", np.maximum), "pd_op.minimum": ("Min", np.minimum),
    "pd_op.elementwise_pow": ("Pow", np.power),
}

_UNARY = {
    "pd_op.relu": ("Relu", lambda a: np.maximum(a, 0)), "pd_op.sigmoid": ("Sigmoid", lambda a: 1 / (1 + np.exp(-a))),
    "pd_op.tanh": ("Tanh", np.tanh), "pd_op.sqrt": ("Sqrt", np.sqrt), "pd_op.exp": ("Exp", np.exp),
    "pd_op.abs": ("Abs", np.abs), "pd_op.floor": ("Floor", np.floor), "pd_op.ceil": ("Ceil", np.ceil),
    "pd_op.log": ("Log", np.log), "pd_op.rsqrt": ("Reciprocal", None), "pd_op.square": ("Mul", np.square),
}


def _partial_binary(b: GraphBuilder, op, fn) -> None:
    """Integer arithmetic on partly known shape entries (e.g. ``h - 1`` with h static)."""
    x, y = operands(op)[:2]
    px, py = b.partial(x), b.partial(y)
    if px is None or py is None or op.result(0).dtype != x.dtype or numpy_dtype(x.dtype).kind not in "iu":
        return
    if len(px) != len(py) and 1 not in (len(px), len(py)):
        return
    n = max(len(px), len(py))
    px, py = (px * n if len(px) == 1 else px), (py * n if len(py) == 1 else py)
    b.bind_partial(op.result(0), [None if u is None or v is None else int(fn(u, v)) for u, v in zip(px, py)])


for _name, (_onnx, _np) in _BINARY.items():
    def _binary(b: GraphBuilder, op, onnx_op=_onnx, np_fn=_np) -> None:
        x, y = operands(op)[:2]
        if fold(b, op, np_fn, [x, y]):
            return
        _partial_binary(b, op, np_fn)
        b.emit(op, onnx_op, [b.name(x), b.name(y)])

    converter(_name)(_binary)

for _name, (_onnx, _np) in _UNARY.items():
    def _unary(b: GraphBuilder, op, onnx_op=_onnx, np_fn=_np) -> None:
        x = operands(op)[0]
        if np_fn is not None and fold(b, op, np_fn, [x]):
            return
        if op.name() == "pd_op.rsqrt":
            (s,) = b.node("Sqrt", [b.name(x)])
            b.emit(op, "Reciprocal", [s])
        elif op.name() == "pd_op.square":
            b.emit(op, "Mul", [b.name(x), b.name(x)])
        else:
            b.emit(op, onnx_op, [b.name(x)])

    converter(_name)(_unary)


@converter("pd_op.scale")
def _scale(b: GraphBuilder, op) -> None:
    x, scale_v = operands(op)[:2]
    bias = float(attr(op, "bias", 0.0))
    after = bool(attr(op, "bias_after_scale", True))
    scale = b.known(scale_v)

    def numpy_scale(a, s):
        s = s.reshape(-1)[0]
        return a * s + bias if after else (a + bias) * s

    if fold(b, op, numpy_scale, [x, scale_v]):
        return
    dtype = numpy_dtype(x.dtype)
    if scale is None:
        raise OnnxExportError(f"pd_op.scale in layer {layer_of(op)}: the scale must be a constant")
    s = float(scale.reshape(-1)[0])
    if b.partial(x) is not None and dtype.kind in "iu":
        b.bind_partial(op.result(0), [None if v is None else int(numpy_scale(np.asarray(v), np.asarray([s])))
                                      for v in b.partial(x)])
    name = b.name(x)
    if not after and bias != 0.0:
        (name,) = b.node("Add", [name, b.scalar_like(x, bias)])
    if s != 1.0:
        (name,) = b.node("Mul", [name, b.scalar_like(x, s)])
    if after and bias != 0.0:
        (name,) = b.node("Add", [name, b.scalar_like(x, bias)])
    b.bind(op.result(0), name)


@converter("pd_op.clip")
def _clip(b: GraphBuilder, op) -> None:
    x, lo, hi = operands(op)[:3]
    if fold(b, op, lambda a, l, h: np.clip(a, l.reshape(-1)[0], h.reshape(-1)[0]), [x, lo, hi]):
        return
    names = [b.name(x)]
    for bound in (lo, hi):
        k = b.known(bound)
        names.append(b.scalar_like(x, float(k.reshape(-1)[0])) if k is not None else b.name(bound))
    b.emit(op, "Clip", names)


@converter("pd_op.softmax")
def _softmax(b: GraphBuilder, op) -> None:
    b.emit(op, "Softmax", [b.name(operands(op)[0])], axis=int(attr(op, "axis")))


@converter("pd_op.mean", "pd_op.sum", "pd_op.max")
def _reduce(b: GraphBuilder, op) -> None:
    x, axes_v = operands(op)[:2]
    axes = b.known(axes_v)
    if axes is None:
        raise OnnxExportError(f"{op.name()} in layer {layer_of(op)}: the axes must be constants")
    axes = [int(a) for a in axes.reshape(-1)]
    keep = int(bool(attr(op, "keepdim", False)))
    onnx_op = {"pd_op.mean": "ReduceMean", "pd_op.sum": "ReduceSum", "pd_op.max": "ReduceMax"}[op.name()]
    inputs = [b.name(x)] + ([b.ints(axes, "axes")] if axes else [])
    if onnx_op == "ReduceMax" and b.opset < 18:
        b.emit(op, onnx_op, [b.name(x)], axes=axes or None, keepdims=keep)
        return
    b.emit(op, onnx_op, inputs, keepdims=keep)


@converter("pd_op.matmul")
def _matmul(b: GraphBuilder, op) -> None:
    x, y = operands(op)[:2]
    names = []
    for v, flag in ((x, attr(op, "transpose_x")), (y, attr(op, "transpose_y"))):
        rank = len(static_shape(v))
        known = b.known(v)
        if flag and known is not None:
            names.append(b.constant(np.swapaxes(known, -1, -2).copy(), "weight_t"))
        elif flag:
            perm = list(range(rank - 2)) + [rank - 1, rank - 2]
            names.append(b.node("Transpose", [b.name(v)], perm=perm)[0])
        else:
            names.append(b.name(v))
    b.emit(op, "MatMul", names)


@converter("pd_op.gelu")
def _gelu(b: GraphBuilder, op) -> None:
    """GELU from Erf (exact) or Tanh (``approximate``), which every opset has (ONNX Gelu is 20+)."""
    x = operands(op)[0]
    xn = b.name(x)
    if attr(op, "approximate", False):
        # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        (cube,) = b.node("Mul", [xn, b.node("Mul", [xn, xn])[0]])
        (inner,) = b.node("Add", [xn, b.node("Mul", [cube, b.scalar_like(x, 0.044715)])[0]])
        (t,) = b.node("Tanh", [b.node("Mul", [inner, b.scalar_like(x, float(np.sqrt(2.0 / np.pi)))])[0]])
    else:
        # 0.5 x (1 + erf(x / sqrt(2)))
        (t,) = b.node("Erf", [b.node("Mul", [xn, b.scalar_like(x, float(1.0 / np.sqrt(2.0)))])[0]])
    (one_plus,) = b.node("Add", [t, b.scalar_like(x, 1.0)])
    (half_x,) = b.node("Mul", [xn, b.scalar_like(x, 0.5)])
    b.emit(op, "Mul", [half_x, one_plus])
