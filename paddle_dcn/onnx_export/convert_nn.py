"""Converters for network layers: convolutions, deformable convolutions, normalisation,
pooling, resizing and the spatial transformer's affine grid + grid sample."""
from __future__ import annotations

from typing import List

import numpy as np
from onnx import TensorProto

from .convert_tensor import operands, static_shape
from .graph import GraphBuilder, OnnxExportError, attr, converter, layer_of, numpy_dtype

DEFORM_CONV_MIN_OPSET = 19


def _nchw(op) -> None:
    fmt = attr(op, "data_format", "NCHW")
    if fmt not in ("NCHW", "AnyLayout"):
        raise OnnxExportError(f"{op.name()} in layer {layer_of(op)}: data_format {fmt!r}; the exporter handles NCHW")


def _pads(op, paddings: List[int]) -> List[int]:
    """Paddle's ``[ph, pw]`` or ``[top, bottom, left, right]`` -> ONNX ``[top, left, bottom, right]``."""
    p = [int(v) for v in paddings]
    if len(p) == 2:
        return [p[0], p[1], p[0], p[1]]
    if len(p) == 4:
        return [p[0], p[2], p[1], p[3]]
    raise OnnxExportError(f"{op.name()} in layer {layer_of(op)}: paddings {p} are not 2-D")


def _auto_pad(op):
    algorithm = attr(op, "padding_algorithm", "EXPLICIT")
    return {"EXPLICIT": None, "SAME": "SAME_UPPER", "VALID": "VALID"}.get(algorithm, None)


@converter("pd_op.conv2d", "pd_op.depthwise_conv2d")
def _conv2d(b: GraphBuilder, op) -> None:
    _nchw(op)
    x, w = operands(op)[:2]
    auto_pad = _auto_pad(op)
    pads = None if auto_pad else _pads(op, attr(op, "paddings"))
    b.emit(op, "Conv", [b.name(x), b.name(w)], kernel_shape=static_shape(w)[2:], strides=list(attr(op, "strides")),
           dilations=list(attr(op, "dilations")), group=int(attr(op, "groups")), pads=pads, auto_pad=auto_pad)


@converter("custom_op.pdcn_deform_conv2d", "custom_op.pdcn_modulated_deform_conv2d")
def _deform_conv2d(b: GraphBuilder, op) -> None:
    """paddle_dcn's deformable conv -> one ONNX ``DeformConv`` (opset 19+; the bias is fused
    into it afterwards, see ``fuse.py``). The offset layouts agree: (y, x) per kernel point,
    kernel points row-major, deformable group major."""
    if b.opset < DEFORM_CONV_MIN_OPSET:
        raise OnnxExportError(f"layer {layer_of(op)}: ONNX DeformConv needs opset >= {DEFORM_CONV_MIN_OPSET}, "
                              f"asked for opset {b.opset}")
    modulated = op.name().endswith("modulated_deform_conv2d")
    values = operands(op)
    x, offset, w = (values[0], values[1], values[3]) if modulated else values[:3]
    inputs = [b.name(x), b.name(w), b.name(offset)]
    if modulated:
        inputs += ["", b.name(values[2])]
    b.emit(op, "DeformConv", inputs, kernel_shape=static_shape(w)[2:], strides=list(attr(op, "strides")),
           dilations=list(attr(op, "dilations")), pads=_pads(op, attr(op, "paddings")),
           group=int(attr(op, "groups")), offset_group=int(attr(op, "deformable_groups")))


NO_STANDARD_EQUIVALENT = ("custom_op.pdcn_deform_roi_pool", "custom_op.pdcn_deform_roi_pool_plain",
                          "custom_op.pdcn_deform_psroi_pool", "custom_op.pdcn_deform_psroi_pool_plain")


@converter(*NO_STANDARD_EQUIVALENT)
def _deform_roi_pool(b: GraphBuilder, op) -> None:
    kind = "position-sensitive " if "psroi" in op.name() else ""
    raise OnnxExportError(
        f"layer {layer_of(op)}: {op.name()} ({kind}deformable RoI pooling) has no standard ONNX operator "
        "(ONNX RoiAlign has neither per-bin offsets nor position-sensitive bins, and a decomposition "
        "would need per-box dynamic sampling grids); export the part of the model before it "
        "(for the detectors: backbone + FPN + RPN head, what tools/export.py --format onnx writes)")


@converter("pd_op.batch_norm", "pd_op.batch_norm_")
def _batch_norm(b: GraphBuilder, op) -> None:
    _nchw(op)
    x, mean, var, scale, bias = operands(op)[:5]
    for i in range(1, op.num_results()):
        if not op.result(i).use_empty():
            raise OnnxExportError(f"batch_norm in layer {layer_of(op)}: its running statistics outputs are used")
    if not attr(op, "is_test", True) and not attr(op, "use_global_stats", False):
        raise OnnxExportError(f"batch_norm in layer {layer_of(op)} is in training mode; export calls model.eval()")
    c = static_shape(x)[1]

    def param(v, fill):
        return b.name(v) if not b.is_null(v) else b.constant(np.full([c], fill, dtype=numpy_dtype(x.dtype)))

    b.emit(op, "BatchNormalization", [b.name(x), param(scale, 1.0), param(bias, 0.0), b.name(mean), b.name(var)],
           epsilon=float(attr(op, "epsilon")))


def _averaging_matrix(n_in: int, n_out: int, dtype) -> np.ndarray:
    """``[n_out, n_in]``: row i averages Paddle's adaptive bin ``[floor(i*n/o), ceil((i+1)*n/o))``."""
    m = np.zeros([n_out, n_in], dtype=np.float64)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m.astype(dtype)


@converter("pd_op.pool2d")
def _pool2d(b: GraphBuilder, op) -> None:
    _nchw(op)
    x, size_v = operands(op)[:2]
    kind = attr(op, "pooling_type")
    if kind not in ("avg", "max"):
        raise OnnxExportError(f"pool2d in layer {layer_of(op)}: pooling_type {kind!r}")
    avg = kind == "avg"
    size = b.known(size_v)
    if size is None:
        raise OnnxExportError(f"pool2d in layer {layer_of(op)}: the kernel/output size must be a constant")
    size = [int(s) for s in size.reshape(-1)]
    size = size * 2 if len(size) == 1 else size
    in_hw = static_shape(x)[2:]
    if attr(op, "global_pooling") or (attr(op, "adaptive") and size == [1, 1]):
        b.emit(op, "GlobalAveragePool" if avg else "GlobalMaxPool", [b.name(x)])
        return
    if attr(op, "adaptive"):
        if min(in_hw) < 0:
            raise OnnxExportError(f"adaptive pool2d in layer {layer_of(op)} needs a static input size, got {in_hw}")
        if all(i % o == 0 for i, o in zip(in_hw, size)):
            kernel = [i // o for i, o in zip(in_hw, size)]
            b.emit(op, "AveragePool" if avg else "MaxPool", [b.name(x)], kernel_shape=kernel, strides=kernel)
            return
        if not avg:
            raise OnnxExportError(f"adaptive max pool2d in layer {layer_of(op)}: input {in_hw} is not a multiple of "
                                  f"the output {size}; ONNX has no adaptive max pooling")
        # separable bins: out = A_h @ x @ A_w^T (exact: a bin's mean is the mean of row means)
        dtype = numpy_dtype(x.dtype)
        a_w = b.constant(_averaging_matrix(in_hw[1], size[1], dtype).T.copy(), "adaptive_w")
        a_h = b.constant(_averaging_matrix(in_hw[0], size[0], dtype), "adaptive_h")
        (cols,) = b.node("MatMul", [b.name(x), a_w])
        b.emit(op, "MatMul", [a_h, cols])
        return
    auto_pad = _auto_pad(op)
    pads = None if auto_pad else _pads(op, attr(op, "paddings"))
    common = dict(kernel_shape=size, strides=list(attr(op, "strides")), pads=pads, auto_pad=auto_pad,
                  ceil_mode=int(bool(attr(op, "ceil_mode"))))
    if avg:
        b.emit(op, "AveragePool", [b.name(x)], count_include_pad=0 if attr(op, "exclusive", True) else 1, **common)
    else:
        b.emit(op, "MaxPool", [b.name(x)], **common)


@converter("pd_op.nearest_interp", "pd_op.bilinear_interp")
def _interp(b: GraphBuilder, op) -> None:
    """Resize of the two spatial axes (opset 18+ ``axes``) to a static ``out_h, out_w`` or to
    a size computed in the graph (``size=other.shape[2:]`` with dynamic image sizes)."""
    _nchw(op)
    x, out_size, size_tensor, scale_tensor = (list(operands(op)) + [None] * 4)[:4]
    if not b.is_null(scale_tensor) or attr(op, "scale"):
        raise OnnxExportError(f"{op.name()} in layer {layer_of(op)}: scale factors are not exported; "
                              "give the output size (size=[h, w])")
    if not b.is_null(out_size):
        (sizes,) = b.node("Cast", [b.name(out_size)], to=TensorProto.INT64)
    elif not b.is_null(size_tensor):
        parts = []
        for part in b.vector(size_tensor):
            (n,) = b.node("Cast", [b.name(part)], to=TensorProto.INT64)
            parts.append(b.node("Reshape", [n, b.ints([1], "shape")])[0])
        (sizes,) = b.node("Concat", parts, axis=0)
    else:
        out_hw = [int(attr(op, "out_h")), int(attr(op, "out_w"))]
        if min(out_hw) <= 0:
            raise OnnxExportError(f"{op.name()} in layer {layer_of(op)}: no output size")
        sizes = b.ints(out_hw, "sizes")
    nearest = op.name() == "pd_op.nearest_interp"
    align = bool(attr(op, "align_corners"))
    if nearest:
        mode, nearest_mode = "nearest", ("round_prefer_ceil" if align else "floor")
        transform = "align_corners" if align else "asymmetric"
    else:
        mode, nearest_mode = "linear", None
        transform = "align_corners" if align else ("half_pixel" if int(attr(op, "align_mode", 0)) == 0 else "asymmetric")
    b.emit(op, "Resize", [b.name(x), "", "", sizes], axes=[2, 3], mode=mode,
           coordinate_transformation_mode=transform, nearest_mode=nearest_mode)


@converter("pd_op.affine_grid")
def _affine_grid(b: GraphBuilder, op) -> None:
    """``grid[n, i, j] = theta[n] @ (x_j, y_i, 1)`` as a MatMul with a constant base grid
    (output height and width must be static; the batch may be dynamic)."""
    theta, shape_v = operands(op)[:2]
    shape = b.partial(shape_v)
    if shape is None or len(shape) != 4 or shape[2] is None or shape[3] is None:
        raise OnnxExportError(f"affine_grid in layer {layer_of(op)}: the output height and width must be static, "
                              f"got {shape}")
    h, w = shape[2], shape[3]
    align = bool(attr(op, "align_corners"))

    def axis(n: int) -> np.ndarray:
        if align:
            return np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros([1])
        return (2.0 * np.arange(n) + 1.0) / n - 1.0

    ys, xs = np.meshgrid(axis(h), axis(w), indexing="ij")
    base = np.stack([xs, ys, np.ones_like(xs)], axis=-1).reshape(1, h * w, 3).astype(numpy_dtype(theta.dtype))
    (theta_t,) = b.node("Transpose", [b.name(theta)], perm=[0, 2, 1])
    (grid,) = b.node("MatMul", [b.constant(base, "affine_base"), theta_t])
    b.emit(op, "Reshape", [grid, b.ints([-1, h, w, 2], "shape")])


@converter("pd_op.grid_sample")
def _grid_sample(b: GraphBuilder, op) -> None:
    x, grid = operands(op)[:2]
    mode = attr(op, "mode")
    if mode not in ("bilinear", "nearest"):
        raise OnnxExportError(f"grid_sample in layer {layer_of(op)}: mode {mode!r}")
    if mode == "bilinear" and b.opset >= 20:
        mode = "linear"
    b.emit(op, "GridSample", [b.name(x), b.name(grid)], mode=mode, padding_mode=attr(op, "padding_mode"),
           align_corners=int(bool(attr(op, "align_corners"))))


@converter("pd_op.layer_norm")
def _layer_norm(b: GraphBuilder, op) -> None:
    """One ONNX LayerNormalization over the axes from ``begin_norm_axis`` on (opset 17+; the
    exporter's opsets are 19+)."""
    x, scale, bias = operands(op)[:3]
    for i in range(1, op.num_results()):
        if not op.result(i).use_empty():
            raise OnnxExportError(f"layer_norm in layer {layer_of(op)}: its mean/variance outputs are used")
    shape = static_shape(x)
    axis = int(attr(op, "begin_norm_axis"))
    normed = shape[axis:]
    if any(d < 0 for d in normed):
        raise OnnxExportError(f"layer_norm in layer {layer_of(op)}: the normalised dims {normed} must be static")
    dtype = numpy_dtype(x.dtype)

    def param(v, fill):  # Paddle keeps scale and bias flat, ONNX wants the normalised shape
        if b.is_null(v):
            return b.constant(np.full(normed, fill, dtype=dtype), "layer_norm_param")
        known = b.known(v)
        if known is not None:
            return b.constant(np.asarray(known, dtype=dtype).reshape(normed), "layer_norm_param")
        return b.node("Reshape", [b.name(v), b.ints(normed, "shape")])[0]

    b.emit(op, "LayerNormalization", [b.name(x), param(scale, 1.0), param(bias, 0.0)], axis=axis,
           epsilon=float(attr(op, "epsilon")))
