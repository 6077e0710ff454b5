"""CoordConv (Liu et al. 2018): a conv that also sees where it is."""
from __future__ import annotations

import paddle
from paddle import nn

from ..ops import _checks
from . import _args
from ._versioning import VersionedLayer


def _coords(n, dtype) -> paddle.Tensor:
    """``[n]``: ``arange(n) / (n - 1) * 2 - 1`` for n > 1, and 0 for n == 1 (no 0/0).

    ``n`` may be an int or a 0-D int tensor (dynamic shapes under to_static)."""
    ramp = paddle.arange(0, n, dtype=dtype)
    last = (n - 1) if isinstance(n, int) else paddle.cast(n - 1, dtype)
    denom = max(last, 1) if isinstance(last, int) else paddle.clip(last, min=1.0)
    return (2.0 * ramp - last) / denom


class AddCoords(nn.Layer):
    """Appends coordinate channels to an NCHW map: ``[N, C, H, W] -> [N, C+2(+1), H, W]``.

    After the input channels come x (varies along the width) and y (along the height), each
    ``arange(n) / (n - 1) * 2 - 1`` (from -1 at the first pixel to 1 at the last; 0 on a
    1-pixel-wide axis), then, when ``with_r``, the radius ``sqrt(x^2 + y^2)`` (distance from
    the map's centre in those units). The coordinates are constants (no gradient) in x's dtype.

    Has no parameters (so no checkpoint version either).
    """

    def __init__(self, with_r: bool = False) -> None:
        super().__init__()
        self.with_r = _checks.boolean(with_r, "with_r")

    @property
    def extra_channels(self) -> int:
        return 3 if self.with_r else 2

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if len(x.shape) != 4:
            raise ValueError(f"x must be a 4-D tensor [N, C, H, W], got shape {list(x.shape)}")
        n, _, h, w = _args.known_shape(x)
        if n < 0 or h < 0 or w < 0:  # unknown at trace time: take them from the tensor
            dims = paddle.shape(x)
            n, h, w = (dims[0] if n < 0 else n), (dims[2] if h < 0 else h), (dims[3] if w < 0 else w)
        xs = _coords(w, x.dtype).reshape([1, 1, 1, -1])
        ys = _coords(h, x.dtype).reshape([1, 1, -1, 1])
        xx = paddle.expand(xs, [n, 1, h, w])
        yy = paddle.expand(ys, [n, 1, h, w])
        channels = [x, xx, yy]
        if self.with_r:
            channels.append(paddle.sqrt(xx * xx + yy * yy))
        coords = paddle.concat(channels[1:], axis=1)
        coords.stop_gradient = True
        return paddle.concat([x, _args.cast(coords, x.dtype)], axis=1)

    def extra_repr(self) -> str:
        return f"with_r={self.with_r}"


class CoordConv(VersionedLayer):
    """AddCoords then ``conv``, a ``paddle.nn.Conv2D`` over ``in_channels + 2`` (``+ 3`` with
    ``with_r``) channels; ``conv_kwargs`` go to that Conv2D (dilation, groups, weight_attr,
    bias_attr, ...). NCHW only. ``[N, in_channels, H, W] -> [N, out_channels, H_out, W_out]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _checks.IntPair,
        stride: _checks.IntPair = 1,
        padding: _checks.IntPair = 0,
        with_r: bool = False,
        **conv_kwargs,
    ) -> None:
        super().__init__()
        self.in_channels = _checks.positive_int(in_channels, "in_channels")
        _checks.positive_int(out_channels, "out_channels")
        _args.nchw_only(conv_kwargs.pop("data_format", "NCHW"))
        self.add_coords = AddCoords(with_r)
        self.conv = nn.Conv2D(
            in_channels + self.add_coords.extra_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            **conv_kwargs,
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        _args.check_input_channels(x, self.in_channels, any_rank=True)  # AddCoords names other ranks
        return self.conv(self.add_coords(x))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, with_r={self.add_coords.with_r}"
