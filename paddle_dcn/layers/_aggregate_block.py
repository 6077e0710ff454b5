"""Shared pieces of the DCNv3 and DCNv4 layers: argument checks, layout moves, the
zero-initialised projections that predict offsets and aggregation weights."""
from __future__ import annotations

from typing import Optional

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn
from paddle.amp.auto_cast import amp_state
from paddle.jit.marker import unified
from paddle.nn.initializer import Constant, XavierUniform

from ..ops import _checks
from ..ops.channel_bias import eager_on_cpu, in_cpu_dygraph
from ..ops.depthwise_conv import depthwise_conv2d_nhwc
from ..ops.layer_norm import layer_norm_last_axis
from ..ops.row_bias import add_row_bias
from . import _args

DATA_FORMATS = ("NCHW", "NHWC")


def check_common(channels: int, kernel_size, stride, dilation, groups: int, padding: Optional[_checks.IntPair],
                 offset_scale: float, data_format: str) -> dict:
    """Validated ``{channels, kernel, stride, dilation, padding, groups, offset_scale}``;
    ValueError naming the argument. padding None: ``dilation*(k-1)//2`` (same size at stride 1)."""
    channels = _checks.positive_int(channels, "channels")
    groups = _checks.positive_int(groups, "groups")
    _checks.divisible(channels, "channels", groups, "groups")
    kernel = _checks.pair(kernel_size, "kernel_size", 1)
    if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
        raise ValueError(f"kernel_size must be odd (the offsets are predicted at the output grid), got {kernel_size!r}")
    strides = _checks.pair(stride, "stride", 1)
    dilations = _checks.pair(dilation, "dilation", 1)
    pads = ([dilations[0] * (kernel[0] - 1) // 2, dilations[1] * (kernel[1] - 1) // 2] if padding is None
            else _checks.pair(padding, "padding", 0))
    if pads != [dilations[0] * (kernel[0] - 1) // 2, dilations[1] * (kernel[1] - 1) // 2]:
        raise ValueError(f"padding must be dilation*(kernel_size-1)//2 = "
                         f"{[dilations[0] * (kernel[0] - 1) // 2, dilations[1] * (kernel[1] - 1) // 2]} "
                         f"(the offset branch runs at the output grid), got {padding!r}")
    offset_scale = _checks.positive_number(offset_scale, "offset_scale", float32=True)
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}")
    return dict(channels=channels, kernel=kernel, stride=strides, dilation=dilations, padding=pads, groups=groups,
                offset_scale=float(offset_scale))


def set_common(layer: nn.Layer, checked: dict, data_format: str) -> None:
    """Stores ``check_common``'s result on the layer (``channels``, ``groups``, ``kernel_size``,
    ``stride``, ``dilation``, ``padding``, ``offset_scale``, ``data_format``)."""
    layer.channels, layer.groups, layer.data_format = checked["channels"], checked["groups"], data_format
    layer.kernel_size, layer.stride = checked["kernel"], checked["stride"]
    layer.dilation, layer.padding = checked["dilation"], checked["padding"]
    layer.offset_scale = checked["offset_scale"]
    # the op's non-tensor arguments for _args.run_op: read from the layer as plain ints, SOT
    # turns the ones that differ between layers (stride 1 here, 2 there) into symbolic values,
    # which the op's checks refuse (see _args.OpArgs)
    layer._op_args = _args.OpArgs(kernel_size=tuple(layer.kernel_size), stride=tuple(layer.stride),
                                  padding=tuple(layer.padding), dilation=tuple(layer.dilation),
                                  groups=layer.groups, offset_scale=layer.offset_scale)


class Projection(nn.Linear):
    """``nn.Linear`` (same parameters, state-dict keys and result) over the last axis of a
    channels-last tensor, whose bias runs on ``ops.row_bias`` in CPU dygraph: Paddle's
    broadcast add and its gradient cost more than the matmul at the layers' many-pixel,
    few-channel shapes. Elsewhere (GPU, ``to_static``, export, under ``auto_cast``, which
    chooses the Linear's dtypes) it is ``nn.Linear``'s forward.

    (``forward`` tests a bool set at construction, not ``self.bias is not None``, and names
    ``nn.Linear`` instead of ``super()``: to_static's default SOT mode reads the ``is None``
    test of a parameter as tensor control flow and breaks the graph there, and a method with
    ``super()`` cannot be resumed after a break; the fallback then ran the CPU-only ops on
    traced tensors, failing DCNv3's first calls.)"""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._has_bias = self.bias is not None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self._has_bias and in_cpu_dygraph(x) and self.weight.dtype == x.dtype and amp_state() is None:
            return add_row_bias(paddle.matmul(x, self.weight), self.bias)
        return nn.Linear.forward(self, x)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm(channels)`` (same parameters, state-dict keys and result) over the last
    axis of a channels-last tensor, on ``ops.layer_norm`` in CPU dygraph: Paddle's CPU
    layer_norm gradient is about ten times its forward at the layers' shapes. Elsewhere (GPU,
    ``to_static``, export, under ``auto_cast``) it is ``nn.LayerNorm``'s forward. (No
    parameter ``is None`` test and no ``super()`` in ``forward``: see :class:`Projection`.)"""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._affine = self.weight is not None and self.bias is not None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self._affine and in_cpu_dygraph(x) and self.weight.dtype == x.dtype and amp_state() is None:
            return layer_norm_last_axis(x, self.weight, self.bias, self._epsilon)
        if self._affine and self.weight.stop_gradient and not x.stop_gradient:
            # Paddle 3.3.1's CPU layer_norm returns a wrong input gradient when its weight takes
            # none (a frozen norm: 6.4 off numpy's on a 4x6 case); apart from the affine step it
            # is exact
            normed = F.layer_norm(x, self._normalized_shape, None, None, self._epsilon)
            return normed * self.weight + self.bias
        return nn.LayerNorm.forward(self, x)


def projection(channels_in: int, channels_out: int, bias: bool = True) -> Projection:
    """A Linear with InternImage's initialisation (Xavier-uniform weight, zero bias)."""
    return Projection(channels_in, channels_out, weight_attr=paddle.ParamAttr(initializer=XavierUniform()),
                      bias_attr=paddle.ParamAttr(initializer=Constant(0.0)) if bias else False)


def zero_projection(channels_in: int, channels_out: int, lr_mult: float, bias_init: float = 0.0) -> Projection:
    """A Linear whose weight starts at zero (bias at ``bias_init``), learning at ``lr_mult``:
    the offset / aggregation-weight predictor (zero offsets at initialisation)."""
    return Projection(channels_in, channels_out,
                      weight_attr=paddle.ParamAttr(initializer=Constant(0.0), learning_rate=lr_mult),
                      bias_attr=paddle.ParamAttr(initializer=Constant(bias_init), learning_rate=lr_mult))


class DepthwiseConv2D(nn.Conv2D):
    """``nn.Conv2D(C, C, k, stride, padding=(k-1)//2, groups=C)`` (same parameters, state-dict
    keys and NCHW ``forward``) with ``forward_nhwc``: channels-last in and out, on
    ``ops.depthwise_conv2d_nhwc`` in CPU dygraph, else Paddle's conv2d between transposes (GPU,
    ``to_static`` and export: saved programs and ONNX files hold a standard conv). The layers
    call ``forward_nhwc`` directly, so forward hooks registered on this sublayer do not run."""

    def __init__(self, channels: int, kernel: int, stride: list) -> None:
        super().__init__(channels, channels, kernel, stride=stride, padding=(kernel - 1) // 2, groups=channels)
        self._op_args = _args.OpArgs(stride=tuple(self._stride), padding=((kernel - 1) // 2, (kernel - 1) // 2),
                                     dilation=tuple(self._dilation))

    def forward_nhwc(self, nhwc: paddle.Tensor, nchw: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        """The conv of channels-last ``nhwc`` ``[N, H, W, C]``, channels-last; ``nchw``: the
        same input as ``[N, C, H, W]`` when the caller has it (spares a transpose off the
        CPU path)."""
        if in_cpu_dygraph(nhwc) and self.weight.dtype == nhwc.dtype:
            return _args.run_op(depthwise_conv2d_nhwc, self._op_args, nhwc, self.weight, self.bias)
        # no super(), and isinstance rather than "is None" on a tensor (which SOT reads as
        # tensor control flow and breaks its graph on): see Projection
        given = isinstance(nchw, (paddle.Tensor, paddle.pir.Value))
        return to_nhwc(nn.Conv2D.forward(self, nchw if given else to_nchw(nhwc)))


def depthwise(channels: int, kernel: int, stride: list) -> DepthwiseConv2D:
    """Depthwise conv at the layer's stride: its output is on the output grid."""
    return DepthwiseConv2D(channels, kernel, stride)


def to_nhwc(x: paddle.Tensor) -> paddle.Tensor:
    return x.transpose([0, 2, 3, 1])


def to_nchw(x: paddle.Tensor) -> paddle.Tensor:
    return x.transpose([0, 3, 1, 2])


def input_in_layer_dtype(x: paddle.Tensor, weight: paddle.Tensor, layer: str) -> paddle.Tensor:
    """``x`` in the dtype the layer computes in (``weight``: one of its parameters). On CPU the
    aggregation op and Paddle's matmuls have float32/float64 kernels only: in dygraph,
    bfloat16/float16 activations are computed in float32 (as the other layers do,
    docs/layers.md), half parameters are a ValueError saying so. A floating dtype other than
    the parameters' (say float64 into a float32 layer) is a ValueError naming both, not
    Paddle's matmul error (outside ``auto_cast``, which casts for the matmuls itself).
    Dtype tests only, and the place only in plain dygraph: to_static's SOT mode breaks its
    graph on a place (see :class:`Projection`)."""
    if x.dtype not in _checks.FLOAT_DTYPES:
        raise ValueError(f"{layer}: x must be a floating-point tensor, got dtype {x.dtype}")
    if eager_on_cpu(x):
        if weight.dtype not in _checks.CPU_DTYPES:
            raise ValueError(f"{layer}: its parameters are {weight.dtype}; on CPU the layer computes in float32 "
                             "or float64 (Paddle's CPU matmul has no half kernels): keep the parameters "
                             "float32 there (layer.to(dtype='float32'))")
        if x.dtype not in _checks.CPU_DTYPES:
            x = x.astype(weight.dtype)
    if x.dtype != weight.dtype and amp_state() is None:  # auto_cast casts for the matmuls itself
        raise ValueError(f"{layer}: x has dtype {x.dtype} but the layer's parameters are {weight.dtype}: cast "
                         "one to the other (x.astype(...) or layer.to(dtype=...))")
    return x


def check_input(x: paddle.Tensor, channels: int, data_format: str, layer: str) -> None:
    shape = list(x.shape)
    axis = 1 if data_format == "NCHW" else 3
    layout = "[N, C, H, W]" if data_format == "NCHW" else "[N, H, W, C]"
    if len(shape) != 4 or (shape[axis] >= 0 and shape[axis] != channels):
        raise ValueError(f"{layer}: x must be {layout} with C = channels = {channels} (data_format "
                         f"{data_format!r}), got shape {shape}")


def sampling_offsets(layer: nn.Layer, prediction: paddle.Tensor, fused: bool) -> np.ndarray:
    """A DCNv3/DCNv4 layer's offsets in the layout the deformable-conv tools read
    (``engine.offsets``, ``visualize``; DeformConv2D's): float32 numpy
    ``[N, G*kh*kw, 2, H_out, W_out]``, group-major, the kernel points row-major (row outer,
    where the aggregation's order has the column outer), ``(dy, dx)``, as displacements from
    the plain conv's sampling grid in input pixels: ``s*(p + d) - p`` for grid point ``p``
    relative to the kernel centre and ``s = offset_scale`` (``d`` when s = 1).

    ``prediction``: the offset projection's output ``[N, H_out, W_out, ...]``, DCNv3's
    ``G*K*2`` offsets (``fused`` False) or DCNv4's fused tensor (per group 2K offsets then K
    weights, padding after)."""
    kh, kw = layer.kernel_size
    k, groups = kh * kw, layer.groups
    a = prediction.astype("float32").numpy()
    n, h, w = a.shape[:3]
    if fused:
        a = a[..., : groups * 3 * k].reshape(n, h, w, groups, 3 * k)[..., : 2 * k]
    a = a.reshape(n, h, w, groups, kw, kh, 2)  # point k = iw*kh + ih, then (dx, dy)
    a = np.ascontiguousarray(a.transpose(0, 3, 5, 4, 6, 1, 2)[:, :, :, :, ::-1])  # [N, G, kh, kw, (dy, dx), H, W]
    s = float(layer.offset_scale)
    if s != 1.0:
        dh, dw = layer.dilation
        grid_y = np.arange(kh) * dh - dh * (kh - 1) // 2
        grid_x = np.arange(kw) * dw - dw * (kw - 1) // 2
        a = s * a
        a[:, :, :, :, 0] += ((s - 1.0) * grid_y)[None, None, :, None, None, None]
        a[:, :, :, :, 1] += ((s - 1.0) * grid_x)[None, None, None, :, None, None]
    return a.reshape(n, groups * k, 2, h, w).astype(np.float32)


def add_centre_feature_scale(layer: nn.Layer, channels: int, groups: int) -> None:
    """InternImage's ``center_feature_scale`` parameters on ``layer``, zero at first and with
    InternImage's names and shapes (``center_feature_scale_proj_weight [G, C]``, ``_bias [G]``),
    so ported weights load as they are. See :func:`centre_feature_blend`."""
    layer.center_feature_scale_proj_weight = layer.create_parameter(
        [groups, channels], default_initializer=Constant(0.0))
    layer.center_feature_scale_proj_bias = layer.create_parameter(
        [groups], default_initializer=Constant(0.0), is_bias=True)


def centre_feature_blend(layer: nn.Layer, out: paddle.Tensor, centre: paddle.Tensor,
                         query: paddle.Tensor) -> paddle.Tensor:
    """``out * (1 - s) + centre * s`` with, per output pixel and group, the gate
    ``s = sigmoid(query @ weight.T + bias)`` of ``layer``'s centre-feature-scale parameters
    (zero at first: ``s = 0.5``), shared by the group's channels; ``out``, ``centre`` and
    ``query`` ``[N, Ho, Wo, C]`` channels-last. The gate's G values go to their groups'
    channels through a shape tensor (traced sizes may be unknown, or an empty batch's zero)."""
    gate = F.sigmoid(paddle.matmul(query, layer.center_feature_scale_proj_weight, transpose_y=True)
                     + layer.center_feature_scale_proj_bias)  # [N, Ho, Wo, G]
    groups = layer.center_feature_scale_proj_weight.shape[0]
    width = out.shape[-1] // groups
    shape = paddle.shape(gate)
    per_channel = paddle.expand(gate.unsqueeze(-1), paddle.concat([shape, paddle.full([1], width, shape.dtype)]))
    per_channel = paddle.reshape(per_channel, paddle.shape(out))
    return out + (centre - out) * per_channel


@unified  # plain Python on the layer's OpArgs: SOT would make a stride read from the layer symbolic
def centre_pixels(x: paddle.Tensor, op_args: "_args.OpArgs") -> paddle.Tensor:
    """The input pixel under each output pixel's kernel centre, channels-last ``[N, H, W, C]``:
    ``x[:, ::sh, ::sw]`` for the layer's ``op_args.stride`` (the layers' padding is
    ``dilation*(k-1)//2``, so output (i, j) centres on input (sh*i, sw*j))."""
    sh, sw = op_args.stride
    return x if (sh, sw) == (1, 1) else x[:, ::sh, ::sw, :]
