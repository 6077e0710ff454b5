"""Converters for graph plumbing: inputs, parameters, fills, shapes, reshapes, splits, concats.

Every converter folds to a constant when all its operands are known (so shape arithmetic on
static sizes leaves no nodes) and otherwise emits standard ONNX nodes.
"""
from __future__ import annotations

from typing import Callable, List, Optional

import numpy as np
import paddle

from .graph import GraphBuilder, OnnxExportError, attr, converter, layer_of, numpy_dtype, onnx_dtype


def operands(op) -> list:
    return list(op.operands_source())


def fold(b: GraphBuilder, op, fn: Callable[..., np.ndarray], values: Optional[list] = None) -> bool:
    """Binds ``op``'s result 0 to ``fn(*known operands)`` when every operand is known."""
    values = operands(op) if values is None else values
    known = [b.known(v) for v in values]
    if any(k is None for k in known):
        return False
    result = np.asarray(fn(*known))
    shape = static_shape(op.result(0))
    if all(d >= 0 for d in shape) and list(result.shape) != shape and result.size == int(np.prod(shape)):
        result = result.reshape(shape)  # e.g. a [1] fill that Paddle types as 0-D
    try:
        result = result.astype(numpy_dtype(op.result(0).dtype), copy=False)
    except OnnxExportError:
        pass
    b.bind_const(op.result(0), result)
    return True


def static_shape(value) -> List[int]:
    """The value's shape with -1 for dynamic dimensions."""
    return [int(d) for d in value.shape]


def axis_of(b: GraphBuilder, op, value) -> int:
    known = b.known(value)
    if known is None:
        raise OnnxExportError(f"{op.name()} in layer {layer_of(op)}: the axis must be a constant")
    return int(known.reshape(-1)[0])


@converter("pd_op.data")
def _data(b: GraphBuilder, op) -> None:
    b.bind(op.result(0), str(attr(op, "name")))


@converter("builtin.parameter")
def _parameter(b: GraphBuilder, op) -> None:
    name = attr(op, "parameter_name")
    if name not in b.params:
        raise OnnxExportError(f"parameter {name!r} of layer {layer_of(op)} has no value in the traced program")
    b.bind_const(op.result(0), b.params[name], hint=name)


@converter("pd_op.full")
def _full(b: GraphBuilder, op) -> None:
    shape = [int(s) for s in attr(op, "shape")]
    declared = static_shape(op.result(0))
    if all(d >= 0 for d in declared) and int(np.prod(declared)) == int(np.prod(shape)):
        shape = declared  # Paddle types some [1] fills as 0-D: follow the value's type
    b.bind_const(op.result(0), np.full(shape, attr(op, "value"), dtype=numpy_dtype(attr(op, "dtype"))))


@converter("pd_op.full_int_array")
def _full_int_array(b: GraphBuilder, op) -> None:
    b.bind_const(op.result(0), np.asarray(attr(op, "value"), dtype=numpy_dtype(attr(op, "dtype"))))


@converter("builtin.combine")
def _combine(b: GraphBuilder, op) -> None:
    b.bind_vector(op.result(0), operands(op))


@converter("builtin.split")
def _builtin_split(b: GraphBuilder, op) -> None:
    parts = b.vector(operands(op)[0])
    for i, part in enumerate(parts):
        result = op.result(i)
        known = b.known(part)
        if known is not None:
            b.bind_const(result, known)
        else:
            b.bind(result, b.name(part))


class _Piece:
    """One output of a split before ``builtin.split`` unpacks it: quacks like a PIR Value
    for the builder (``id``, ``initialized``), bound to a name or a constant."""

    def __init__(self, b: GraphBuilder, name: Optional[str] = None, const: Optional[np.ndarray] = None) -> None:
        self.id = name if name is not None else b.fresh("split_const")
        if const is not None:
            b.bind_const(self, const)
        else:
            b.bind(self, name)

    def initialized(self) -> bool:
        return True


def _bind_split(b: GraphBuilder, op, x, sizes: List[int], axis: int) -> None:
    known = b.known(x)
    if known is not None:
        pieces = [_Piece(b, const=p) for p in np.split(known, np.cumsum(sizes)[:-1], axis=axis)]
    else:
        outs = b.node("Split", [b.name(x), b.ints(sizes, "split_sizes")], outputs=len(sizes), prefix="split", axis=axis)
        pieces = [_Piece(b, name=out) for out in outs]
    b.bind_vector(op.result(0), pieces)


def _split_axis(op, x, axis: int) -> tuple:
    rank = len(static_shape(x))
    axis = axis + rank if axis < 0 else axis
    dim = static_shape(x)[axis]
    if dim < 0:
        raise OnnxExportError(f"{op.name()} in layer {layer_of(op)}: splitting a dynamic axis ({axis}) is not supported")
    return axis, dim


@converter("pd_op.split")
def _split(b: GraphBuilder, op) -> None:
    x, sections, axis_v = operands(op)
    sizes = b.known(sections)
    if sizes is None:
        raise OnnxExportError(f"pd_op.split in layer {layer_of(op)}: the sections must be constants")
    axis, dim = _split_axis(op, x, axis_of(b, op, axis_v))
    sizes = [int(s) for s in sizes]
    if -1 in sizes:
        sizes[sizes.index(-1)] = dim - (sum(sizes) + 1)
    _bind_split(b, op, x, sizes, axis)


@converter("pd_op.split_with_num")
def _split_with_num(b: GraphBuilder, op) -> None:
    x, axis_v = operands(op)
    axis, dim = _split_axis(op, x, axis_of(b, op, axis_v))
    num = int(attr(op, "num"))
    _bind_split(b, op, x, [dim // num] * num, axis)


@converter("pd_op.reshape")
def _reshape(b: GraphBuilder, op) -> None:
    x, shape = operands(op)[:2]
    if fold(b, op, lambda a, s: a.reshape([a.shape[i] if v == 0 else int(v) for i, v in enumerate(s)]), [x, shape]):
        return
    known = b.partial(shape)
    if known is not None and all(v is not None for v in known):
        b.emit(op, "Reshape", [b.name(x), b.ints(known, "shape")])
        return
    b.emit(op, "Reshape", [b.name(x), _int64_name(b, shape)])


def _int64_name(b: GraphBuilder, value) -> str:
    """``value`` as an int64 tensor name (casting int32 shape tensors)."""
    name = b.name(value)
    if value.dtype != paddle.int64:
        (name,) = b.node("Cast", [name], to=onnx_dtype(np.int64))
    return name


@converter("pd_op.concat")
def _concat(b: GraphBuilder, op) -> None:
    parts_v, axis_v = operands(op)
    parts = b.vector(parts_v)
    axis = axis_of(b, op, axis_v)
    if fold(b, op, lambda *a: np.concatenate(a, axis=axis), parts):
        return
    partials = [b.partial(p) for p in parts]
    if axis == 0 and all(p is not None for p in partials) and len(static_shape(op.result(0))) == 1:
        b.bind_partial(op.result(0), [e for p in partials for e in p])
    b.emit(op, "Concat", [b.name(p) for p in parts], axis=axis)


@converter("pd_op.stack")
def _stack(b: GraphBuilder, op) -> None:
    parts = b.vector(operands(op)[0])
    axis = int(attr(op, "axis"))
    if fold(b, op, lambda *a: np.stack(a, axis=axis), parts):
        return
    partials = [b.partial(p) for p in parts]
    if axis == 0 and all(p is not None and len(p) == 1 and len(static_shape(v)) == 0 for p, v in zip(partials, parts)):
        b.bind_partial(op.result(0), [p[0] for p in partials])
    axes = b.ints([axis], "axes")
    b.emit(op, "Concat", [b.node("Unsqueeze", [b.name(p), axes])[0] for p in parts], axis=axis)


@converter("pd_op.shape64", "pd_op.shape")
def _shape(b: GraphBuilder, op) -> None:
    x = operands(op)[0]
    dims = static_shape(x)
    out_dtype = numpy_dtype(op.result(0).dtype)
    if all(d >= 0 for d in dims):
        b.bind_const(op.result(0), np.asarray(dims, dtype=out_dtype))
        return
    b.bind_partial(op.result(0), [d if d >= 0 else None for d in dims])
    (name,) = b.node("Shape", [b.name(x)])
    if out_dtype != np.int64:
        (name,) = b.node("Cast", [name], to=onnx_dtype(out_dtype))
    b.bind(op.result(0), name)


@converter("pd_op.slice")
def _slice(b: GraphBuilder, op) -> None:
    x, starts_v, ends_v = operands(op)
    axes = [int(a) for a in attr(op, "axes")]
    decrease = [int(a) for a in attr(op, "decrease_axis")]
    starts, ends = b.known(starts_v), b.known(ends_v)
    if starts is None or ends is None:
        raise OnnxExportError(f"pd_op.slice in layer {layer_of(op)}: starts/ends must be constants")
    starts, ends = [int(s) for s in starts], [int(e) for e in ends]

    def numpy_slice(a):
        index = [slice(None)] * a.ndim
        for axis, s, e in zip(axes, starts, ends):
            index[axis] = slice(s, e)
        out = a[tuple(index)]
        return out.squeeze(axis=tuple(decrease)) if decrease else out

    if fold(b, op, numpy_slice, [x]):
        return
    known = b.partial(x)
    if known is not None and axes == [0]:
        b.bind_partial(op.result(0), list(known[slice(starts[0], ends[0])]))
    (out,) = b.node("Slice", [b.name(x), b.ints(starts), b.ints(ends), b.ints(axes)], prefix="slice")
    if decrease:
        (out,) = b.node("Squeeze", [out, b.ints(decrease, "axes")])
    b.bind(op.result(0), out)


@converter("pd_op.strided_slice")
def _strided_slice(b: GraphBuilder, op) -> None:
    """``x[..., start:end:step, ...]`` with constant starts, ends and steps -> one ONNX Slice."""
    x, starts_v, ends_v, strides_v = operands(op)
    axes = [int(a) for a in attr(op, "axes")]
    bounds = [b.known(v) for v in (starts_v, ends_v, strides_v)]
    if any(v is None for v in bounds):
        raise OnnxExportError(f"pd_op.strided_slice in layer {layer_of(op)}: starts/ends/strides must be constants")
    starts, ends, steps = [[int(e) for e in np.asarray(v).reshape(-1)] for v in bounds]

    def numpy_slice(a):
        index = [slice(None)] * a.ndim
        for axis, s, e, t in zip(axes, starts, ends, steps):
            index[axis] = slice(s, e, t)
        return a[tuple(index)]

    if fold(b, op, numpy_slice, [x]):
        return
    b.emit(op, "Slice", [b.name(x), b.ints(starts), b.ints(ends), b.ints(axes, "axes"), b.ints(steps, "steps")])


@converter("pd_op.cast")
def _cast(b: GraphBuilder, op) -> None:
    x = operands(op)[0]
    dtype = numpy_dtype(attr(op, "dtype"))
    if fold(b, op, lambda a: a.astype(dtype), [x]):
        return
    if b.partial(x) is not None:
        b.bind_partial(op.result(0), b.partial(x))
    b.emit(op, "Cast", [b.name(x)], to=onnx_dtype(dtype))


@converter("pd_op.assign", "pd_op.contiguous")
def _identity(b: GraphBuilder, op) -> None:
    x = operands(op)[0]
    if fold(b, op, lambda a: a, [x]):
        return
    b.bind(op.result(0), b.name(x))


@converter("pd_op.dropout")
def _dropout(b: GraphBuilder, op) -> None:
    x = operands(op)[0]
    if not attr(op, "is_test", False):
        raise OnnxExportError(f"dropout in layer {layer_of(op)} is in training mode; export calls model.eval()")
    if attr(op, "mode", "upscale_in_train") != "upscale_in_train":
        p = float(attr(op, "p", 0.0))
        b.emit(op, "Mul", [b.name(x), b.scalar_like(x, 1.0 - p)])
        return
    b.bind(op.result(0), b.name(x))


@converter("pd_op.expand")
def _expand(b: GraphBuilder, op) -> None:
    x, shape_v = operands(op)[:2]
    shape = b.partial(shape_v)
    x_shape = static_shape(x)

    def target(s):
        lead = len(s) - len(x_shape)
        return [x_shape[i - lead] if (v == -1 and i >= lead) else v for i, v in enumerate(s)]

    if b.known(shape_v) is not None:
        dims = [int(v) for v in b.known(shape_v)]
        if fold(b, op, lambda a: np.broadcast_to(a, target(dims)).copy(), [x]):
            return
        b.emit(op, "Expand", [b.name(x), b.ints([1 if v == -1 else v for v in dims], "shape")])
        return
    if shape is not None and -1 in shape:
        raise OnnxExportError(f"pd_op.expand in layer {layer_of(op)}: a -1 in a dynamic target shape")
    b.emit(op, "Expand", [b.name(x), _int64_name(b, shape_v)])


@converter("pd_op.flatten")
def _flatten(b: GraphBuilder, op) -> None:
    x = operands(op)[0]
    dims = static_shape(x)
    rank = len(dims)
    start, stop = int(attr(op, "start_axis")), int(attr(op, "stop_axis"))
    start, stop = start % max(rank, 1), stop % max(rank, 1)
    if fold(b, op, lambda a: a.reshape(list(a.shape[:start]) + [-1] + list(a.shape[stop + 1:])), [x]):
        return
    if start == 1 and stop == rank - 1:
        b.emit(op, "Flatten", [b.name(x)], axis=1)
        return
    if all(d >= 0 for i, d in enumerate(dims) if i > 0) and start >= 1:
        merged = int(np.prod(dims[start: stop + 1]))
        b.emit(op, "Reshape", [b.name(x), b.ints([0] * start + [merged] + dims[stop + 1:], "shape")])
        return
    raise OnnxExportError(f"pd_op.flatten in layer {layer_of(op)}: axes {start}..{stop} of shape {dims} "
                          "need static sizes after the batch dimension")


@converter("pd_op.transpose")
def _transpose(b: GraphBuilder, op) -> None:
    x = operands(op)[0]
    perm = [int(p) for p in attr(op, "perm")]
    if fold(b, op, lambda a: np.transpose(a, perm), [x]):
        return
    b.emit(op, "Transpose", [b.name(x)], perm=perm)


@converter("pd_op.unsqueeze", "pd_op.squeeze")
def _squeeze(b: GraphBuilder, op) -> None:
    x, axes_v = operands(op)[:2]
    axes = b.known(axes_v)
    if axes is None:
        raise OnnxExportError(f"{op.name()} in layer {layer_of(op)}: the axes must be constants")
    axes = [int(a) for a in axes.reshape(-1)]
    squeeze = op.name() == "pd_op.squeeze"
    if fold(b, op, lambda a: np.squeeze(a, tuple(axes)) if squeeze else np.expand_dims(a, tuple(axes)), [x]):
        return
    b.emit(op, "Squeeze" if squeeze else "Unsqueeze", [b.name(x), b.ints(axes, "axes")])


@converter("pd_op.arange")
def _arange(b: GraphBuilder, op) -> None:
    start, end, step = operands(op)
    dtype = numpy_dtype(attr(op, "dtype"))
    if fold(b, op, lambda s, e, d: np.arange(s.reshape(-1)[0], e.reshape(-1)[0], d.reshape(-1)[0]).astype(dtype)):
        return
    names = []
    for v in (start, end, step):
        (n,) = b.node("Cast", [b.name(v)], to=onnx_dtype(dtype))
        (n,) = b.node("Reshape", [n, b.ints([], "scalar_shape")])
        names.append(n)
    b.emit(op, "Range", names)
