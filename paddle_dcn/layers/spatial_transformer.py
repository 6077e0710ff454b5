"""SpatialTransformer (Jaderberg et al. 2015): learn an affine warp of the input."""
from __future__ import annotations

from typing import Optional

import paddle
from paddle import nn
import paddle.nn.functional as F

from ..ops import _checks
from . import _args
from ._versioning import VersionedLayer

IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


class DefaultLocalization(nn.Layer):
    """The small localisation network used when none is given; works for any channel count.

    Channel mean -> adaptive average pool to 16x16 -> conv 5x5 (8) -> ReLU -> max pool 2 ->
    conv 3x3 (10) -> ReLU -> max pool 2 -> Linear(160, 32) -> ReLU -> Linear(32, 6).
    ``[N, C, H, W] -> [N, 6]``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2D(16)
        self.features = nn.Sequential(
            nn.Conv2D(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2D(2),
            nn.Conv2D(8, 10, 3, padding=1), nn.ReLU(), nn.MaxPool2D(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(160, 32), nn.ReLU(), nn.Linear(32, 6))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.head(self.features(self.pool(x.mean(axis=1, keepdim=True))))


def _last_weighted_layer(layer: nn.Layer) -> Optional[nn.Layer]:
    found = None
    for sub in [layer, *layer.sublayers()]:
        if getattr(sub, "weight", None) is not None:
            found = sub
    return found


class SpatialTransformer(VersionedLayer):
    """Warps its input with an affine transform that ``localization`` regresses from it.

    ``localization`` (any Layer; :class:`DefaultLocalization` when None) maps x
    ``[N, C, H, W]`` to the 6 affine parameters ``[N, 6]`` (or ``[N, 2, 3]``), row-major
    ``theta = [[a, b, tx], [c, d, ty]]`` in the normalised coordinates of
    ``paddle.nn.functional.affine_grid``. Its last layer with a weight must be a
    ``paddle.nn.Linear`` with 6 outputs and a bias: the constructor sets that weight to zero
    and the bias to the identity ``[1, 0, 0, 0, 1, 0]``, so at initialisation the layer
    returns its input (the usual STN initialisation).

    The output ``[N, C, H_out, W_out]`` (``output_size`` ``(H_out, W_out)``, default the input
    size) is ``grid_sample(x, affine_grid(theta, ...))``, bilinear, zeros outside,
    ``align_corners=False`` for both (-1 and 1 are the outer edges of the border pixels; with
    True, Paddle's affine_grid returns NaN for a 1-pixel-wide map).
    """

    def __init__(self, localization: Optional[nn.Layer] = None, output_size: Optional[_checks.IntPair] = None) -> None:
        super().__init__()
        if localization is None:
            localization = DefaultLocalization()
        if not isinstance(localization, nn.Layer):
            raise ValueError(f"localization must be a paddle.nn.Layer or None, got {type(localization).__name__}")
        last = _last_weighted_layer(localization)
        if not isinstance(last, nn.Linear) or last.weight.shape[-1] != 6 or last.bias is None:
            raise ValueError(
                "localization's last layer with a weight must be a paddle.nn.Linear with 6 "
                "outputs and a bias (it is initialised to the identity transform), got "
                f"{type(last).__name__ if last is not None else 'no layer with a weight'}"
                + (f" with weight shape {list(last.weight.shape)}" if last is not None else "")
            )
        last.weight.set_value(paddle.zeros(last.weight.shape, last.weight.dtype))
        last.bias.set_value(paddle.to_tensor(IDENTITY_THETA, dtype=last.bias.dtype))
        self.localization = localization
        self.output_size = None if output_size is None else _checks.pair(output_size, "output_size", 1)

    def theta(self, x: paddle.Tensor) -> paddle.Tensor:
        """The affine matrices ``[N, 2, 3]`` that ``localization`` predicts for ``x``."""
        return self.localization(x).reshape([-1, 2, 3])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if len(x.shape) != 4:
            raise ValueError(f"x must be a 4-D tensor [N, C, H, W], got shape {list(x.shape)}")
        dtype = x.dtype if x.dtype in (paddle.float32, paddle.float64) else paddle.float32
        theta = _args.cast(self.theta(x), dtype)
        x = _args.cast(x, dtype)
        n, c, h, w = _args.known_shape(x)
        out_hw = self.output_size or [h, w]
        if min(n, c, *out_hw) < 0:  # unknown at trace time
            dims = paddle.shape(x)
            hw = dims[2:] if self.output_size is None else paddle.to_tensor(self.output_size, dims.dtype)
            out_shape = paddle.concat([dims[:2], hw])
        else:
            out_shape = [n, c, *out_hw]
        if paddle.in_dynamic_mode() and x.stop_gradient and paddle.is_grad_enabled():
            # Paddle 3.3.1's CPU grid_sample backward segfaults when x needs no gradient
            # (measured): let it compute one into a detached copy that nobody reads.
            x = x.detach()
            x.stop_gradient = False
        # align_corners=False: Paddle's affine_grid gives NaN on a 1-pixel axis with True
        grid = F.affine_grid(theta, out_shape, align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
