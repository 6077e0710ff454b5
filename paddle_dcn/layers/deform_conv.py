"""DeformConv2D: deformable convolution v1/v2 as a drop-in for ``paddle.nn.Conv2D``."""
from __future__ import annotations

from typing import Optional

import paddle
from paddle import nn
from paddle.nn.initializer import Constant, Normal

from .. import ops
from ..ops import _checks
from . import _args, _offset_bound, _output_groups
from ..ops.channel_bias import in_cpu_dygraph
from ..ops.deform_conv_packed import deform_conv2d_packed
from ._offset_conv import OffsetConv2D
from ._versioning import VersionedLayer

DEFORMABLE_GROUPS_OVER = ("input", "output")


class DeformConv2D(VersionedLayer):
    """Deformable convolution (DCN v1, or v2 when ``modulated``) that predicts its own offsets.

    ``y = layer(x)`` runs an internal conv ``conv_offset`` over ``x`` (same kernel, stride,
    padding and dilation as the main conv) that predicts, per output pixel, the sampling
    offsets and, when ``modulated``, the mask logits, then the deformable conv
    ``paddle_dcn.ops.deform_conv2d`` with ``weight`` and ``bias``.

    Drop-in for ``paddle.nn.Conv2D``: ``weight`` ``[C_out, C_in/groups, kh, kw]`` and ``bias``
    ``[C_out]`` have Conv2D's names, shapes and default initialisation, so a Conv2D state dict
    loads into it (the offset branch stays at its zero initialisation) and
    :meth:`from_conv2d` converts a layer in place of another.

    At initialisation ``conv_offset`` is all zeros, so the offsets are zero and:
      * v1 (``modulated=False``): the layer equals a Conv2D with the same weight and bias;
      * v2: every sample is scaled by the initial mask value ``mask_init``:
        ``0.5`` (default) is the DCNv2 paper's plain ``sigmoid`` (also mmcv's and
        PaddleDetection's, so their trained weights transfer): ``y = 0.5 * conv(x) + bias``;
        ``1.0`` uses ``2 * sigmoid``, so a v2 layer starts equal to the Conv2D it replaces
        (what you want when swapping into a pretrained network).

    Offset branch layout (``conv_offset`` output, P = deformable_groups*kh*kw): channels
    ``[0, 2P)`` are the offsets in the op's layout (y then x per kernel point, see
    ``paddle_dcn.ops.deform_conv2d``), channels ``[2P, 3P)`` the mask logits (v2 only) —
    PaddleDetection's ``DeformableConvV2`` layout.

    Learning rate of the offset branch: ``offset_lr_mult`` times the optimizer's (Paddle's
    ``ParamAttr.learning_rate``). Default 1.0, as in the DCN v1 paper for the conv offsets;
    the DCN v2 paper uses 0.1 for the offset and modulation layers.

    Explicit offsets: ``layer(x, offset, mask)`` uses the given ``offset``
    ``[N, 2P, H_out, W_out]`` (and, for a v2 layer, ``mask`` ``[N, P, H_out, W_out]``, used
    as is: no sigmoid) instead of the offset branch. A v2 layer needs both, a v1 layer
    takes no mask. Build with ``offset_branch=False`` when offsets always come from outside:
    then there is no ``conv_offset`` and ``offset`` is required.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups: as
            ``paddle.nn.Conv2D`` (int or (h, w); zero padding only).
        deformable_groups: number of offset fields; None (default) means 1 when
            ``deformable_groups_over='input'`` and out_channels (one field per output
            channel, TensorFlow's default) when ``'output'``.
        modulated: DCN v2 (sigmoid mask) when True, DCN v1 when False.
        weight_attr, bias_attr: ``ParamAttr`` of ``weight`` / ``bias``; ``bias_attr=False``
            means no bias.
        offset_lr_mult: learning-rate multiplier of ``conv_offset``.
        mask_init: initial mask value, 0.5 (``sigmoid``) or 1.0 (``2*sigmoid``).
        offset_branch: False drops ``conv_offset`` (offsets must be passed to forward).
        padding_mode: only ``'zeros'``.
        data_format: only ``'NCHW'``.
        deformable_groups_over: which channels the offset fields split. ``'input'`` (the DCN
            papers, mmcv, Paddle): field g serves input channels
            ``[g*C_in/dg, (g+1)*C_in/dg)`` for all outputs; in_channels must divide by
            deformable_groups. ``'output'`` (TensorFlow ``DeformableConvLayer``'s
            ``num_deformable_group``): field s serves output channels
            ``[s*C_out/dg, (s+1)*C_out/dg)``, sampling all their input channels;
            out_channels must divide by deformable_groups. Runs as one op call over a
            repeated input (see ``paddle_dcn/layers/_output_groups.py``; sampling work and
            column memory grow ``lcm(dg, groups)/groups`` times).
        offset_bound: None (unbounded) or a bound in pixels: the offsets predicted by
            ``conv_offset`` are squashed into ``(-offset_bound, offset_bound)`` by
            ``offset_bound_fn`` (explicit offsets are used as given).
        offset_bound_fn: ``'tanh'`` (``bound * tanh(o)``) or ``'sigmoid'``
            (``bound * (2 * sigmoid(o) - 1)``).

    Shapes: x ``[N, C_in, H, W]`` -> ``[N, C_out, H_out, W_out]`` with the usual conv arithmetic.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _checks.IntPair,
        stride: _checks.IntPair = 1,
        padding: _checks.IntPair = 0,
        dilation: _checks.IntPair = 1,
        groups: int = 1,
        deformable_groups: Optional[int] = None,
        modulated: bool = True,
        weight_attr=None,
        bias_attr=None,
        offset_lr_mult: float = 1.0,
        mask_init: float = 0.5,
        offset_branch: bool = True,
        padding_mode: str = "zeros",
        data_format: str = "NCHW",
        deformable_groups_over: str = "input",
        offset_bound: Optional[float] = None,
        offset_bound_fn: str = "tanh",
    ) -> None:
        super().__init__()
        self.in_channels = _checks.positive_int(in_channels, "in_channels")
        self.out_channels = _checks.positive_int(out_channels, "out_channels")
        self.kernel_size = _checks.pair(kernel_size, "kernel_size", 1)
        self.stride = _checks.pair(stride, "stride", 1)
        self.padding = _checks.pair(padding, "padding", 0)
        self.dilation = _checks.pair(dilation, "dilation", 1)
        self.groups = _checks.positive_int(groups, "groups")
        if deformable_groups_over not in DEFORMABLE_GROUPS_OVER:
            raise ValueError(
                f"deformable_groups_over must be one of {DEFORMABLE_GROUPS_OVER}, "
                f"got {deformable_groups_over!r}"
            )
        self.deformable_groups_over = deformable_groups_over
        over_output = deformable_groups_over == "output"
        if deformable_groups is None:
            deformable_groups = self.out_channels if over_output else 1
        self.deformable_groups = _checks.positive_int(deformable_groups, "deformable_groups")
        _checks.divisible(in_channels, "in_channels", groups, "groups")
        _checks.divisible(out_channels, "out_channels", groups, "groups")
        if over_output:
            _checks.divisible(out_channels, "out_channels", deformable_groups, "deformable_groups")
        else:
            _checks.divisible(in_channels, "in_channels", deformable_groups, "deformable_groups")
        self.offset_bound, self.offset_bound_fn = _offset_bound.check(offset_bound, offset_bound_fn)
        self.modulated = _checks.boolean(modulated, "modulated")
        self.offset_lr_mult = _checks.positive_number(offset_lr_mult, "offset_lr_mult")
        self.mask_init = _args.mask_init(mask_init)
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode must be 'zeros', got {padding_mode!r}")
        _args.nchw_only(data_format)

        kh, kw = self.kernel_size
        # nn.Conv2D's default: Normal(0, sqrt(2 / (in_channels * kh * kw))), bias zeros.
        std = (2.0 / (in_channels * kh * kw)) ** 0.5
        self.weight = self.create_parameter(
            shape=[out_channels, in_channels // groups, kh, kw],
            attr=weight_attr,
            default_initializer=Normal(0.0, std),
        )
        self.bias = self.create_parameter(shape=[out_channels], attr=bias_attr, is_bias=True)

        op_groups, repeat = self.groups, 1
        if over_output:  # one op call over a repeated input, see _output_groups
            op_groups, repeat = _output_groups.op_groups(self.deformable_groups, self.groups)
        self._op_args = _args.OpArgs(  # ops.deform_conv2d's non-tensor arguments
            stride=tuple(self.stride), padding=tuple(self.padding), dilation=tuple(self.dilation),
            deformable_groups=self.deformable_groups, groups=op_groups,
        )
        self._repeat_args = _args.OpArgs(repeat=repeat, conv_groups=self.groups)
        self.num_points = self.deformable_groups * kh * kw
        if offset_branch:
            branch_attr = lambda: paddle.ParamAttr(  # noqa: E731 - two fresh attrs
                initializer=Constant(0.0), learning_rate=self.offset_lr_mult
            )
            # nn.Conv2D on paddle_dcn's CPU path in CPU dygraph (_offset_conv)
            self.conv_offset = OffsetConv2D(
                in_channels,
                (3 if modulated else 2) * self.num_points,
                self.kernel_size,
                stride=self.stride,
                padding=self.padding,
                dilation=self.dilation,
                weight_attr=branch_attr(),
                bias_attr=branch_attr(),
            )
        else:
            self.conv_offset = None

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2D, **kwargs) -> "DeformConv2D":
        """A DeformConv2D with ``conv``'s configuration and a copy of its weight and bias.

        ``kwargs`` are the deformable options (``modulated``, ``deformable_groups``,
        ``offset_lr_mult``, ``mask_init``, ...); pass ``mask_init=1.0`` for a v2 layer
        whose output at initialisation equals ``conv``'s.
        """
        if not isinstance(conv, nn.Conv2D):
            raise ValueError(f"conv must be a paddle.nn.Conv2D, got {type(conv).__name__}")
        padding = _conv2d_padding(conv)
        layer = cls(
            conv._in_channels,
            conv._out_channels,
            list(conv._kernel_size),
            stride=list(conv._stride),
            padding=padding,
            dilation=list(conv._dilation),
            groups=conv._groups,
            bias_attr=None if conv.bias is not None else False,
            padding_mode=conv._padding_mode,
            data_format=conv._data_format,
            **kwargs,
        )
        layer.weight.set_value(conv.weight)
        if conv.bias is not None:
            layer.bias.set_value(conv.bias)
        return layer

    def predict_offsets(self, x: paddle.Tensor) -> tuple[paddle.Tensor, Optional[paddle.Tensor]]:
        """Offsets ``[N, 2P, H_out, W_out]`` and mask ``[N, P, H_out, W_out]`` (None for v1)
        that the offset branch predicts for ``x``; the mask is after the activation."""
        if self.conv_offset is None:
            raise ValueError(
                "this DeformConv2D was built with offset_branch=False: it has no offset branch"
            )
        out = self.conv_offset(x)
        if not self.modulated:
            return _offset_bound.apply(out, self.offset_bound, self.offset_bound_fn), None
        offset, logits = paddle.split(out, [2 * self.num_points, self.num_points], axis=1)
        mask = paddle.nn.functional.sigmoid(logits)
        if self.mask_init != 0.5:
            mask = mask * (2.0 * self.mask_init)
        return _offset_bound.apply(offset, self.offset_bound, self.offset_bound_fn), mask

    def forward(
        self,
        x: paddle.Tensor,
        offset: Optional[paddle.Tensor] = None,
        mask: Optional[paddle.Tensor] = None,
    ) -> paddle.Tensor:
        """``x`` ``[N, C_in, H, W]`` -> ``[N, C_out, H_out, W_out]``.

        Without ``offset`` the offset branch predicts offsets (and mask); with it, the
        given ``offset`` (and ``mask`` for a v2 layer) are used as is.
        """
        _checks.expect_tensor(x, "x")
        _args.check_input_channels(x, self.in_channels, layout_note=" (NCHW)")
        if offset is None:
            if mask is not None:
                raise ValueError("mask was given without offset: pass both or neither")
            if self._takes_packed_path(x):
                return self._forward_packed(x)
            offset, mask = self.predict_offsets(x)
        elif self.modulated and mask is None:
            raise ValueError(
                "mask is required with an explicit offset for a modulated (v2) DeformConv2D: "
                "[N, deformable_groups*kh*kw, H_out, W_out]"
            )
        elif not self.modulated and mask is not None:
            raise ValueError("mask must be None for a DeformConv2D with modulated=False (v1)")
        if self.deformable_groups_over == "output":
            x = _output_groups.repeat_groups(self._repeat_args, x)
        return _args.run_op(ops.deform_conv2d, self._op_args, x, offset, self.weight, bias=self.bias, mask=mask)

    def _takes_packed_path(self, x: paddle.Tensor) -> bool:
        """Whether the offset branch's output may go to the op packed (CPU dygraph, v2,
        unbounded offsets): ``ops.deform_conv2d_packed`` reads the offsets and mask logits
        in place and applies the sigmoid itself, the same numbers as predict_offsets +
        deform_conv2d without the split, sigmoid and gradient concat between them."""
        return (self.modulated and self.offset_bound is None and self.conv_offset is not None
                and in_cpu_dygraph(x))

    def _forward_packed(self, x: paddle.Tensor) -> paddle.Tensor:
        offset_mask = self.conv_offset(x)
        if self.deformable_groups_over == "output":
            x = _output_groups.repeat_groups(self._repeat_args, x)
        args = _args.OpArgs(**self._op_args.__dict__, mask_scale=2.0 * self.mask_init)
        return _args.run_op(deform_conv2d_packed, args, x, offset_mask, self.weight,
                            bias=self.bias)

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, deformable_groups={self.deformable_groups}, "
            f"modulated={self.modulated}"
        )
        if self.modulated:
            text += f", mask_init={self.mask_init}"
        text += f", offset_lr_mult={self.offset_lr_mult}"
        if self.bias is None:
            text += ", bias=False"
        if self.conv_offset is None:
            text += ", offset_branch=False"
        if self.deformable_groups_over != "input":
            text += f", deformable_groups_over={self.deformable_groups_over!r}"
        return text + _offset_bound.describe(self.offset_bound, self.offset_bound_fn)


def _conv2d_padding(conv: nn.Conv2D) -> list[int]:
    """A Conv2D's padding as symmetric ``[pad_h, pad_w]``; ValueError when it has none."""
    kernel, stride, dilation = conv._kernel_size, conv._stride, conv._dilation
    algorithm = conv._padding_algorithm
    if algorithm == "VALID":
        return [0, 0]
    if algorithm == "SAME":
        # Paddle's 'same' runs the conv with dilation 1 whatever dilation says (measured)
        if any(v != 1 for v in (*stride, *dilation)) or any(k % 2 == 0 for k in kernel):
            raise ValueError(
                "conv has padding='same': supported with stride 1, dilation 1 and an odd "
                f"kernel only; got kernel_size={list(kernel)}, stride={list(stride)}, "
                f"dilation={list(dilation)}"
            )
        return [(k - 1) // 2 for k in kernel]
    padding = [int(p) for p in conv._updated_padding]
    if len(padding) == 4:
        if padding[0] != padding[1] or padding[2] != padding[3]:
            raise ValueError(f"conv has asymmetric padding {padding}; DeformConv2D pads symmetrically")
        padding = [padding[0], padding[2]]
    return padding
