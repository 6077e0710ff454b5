"""A pure-Paddle ``deform_aggregate`` built from ``grid_sample`` (InternImage's
``dcnv3_core_pytorch``, ported): slow, independent of our kernels, the reference of the tests
and the peer of the benchmarks. Same arguments and results as
:func:`paddle_dcn.ops.deform_aggregate` for finite offsets."""
from __future__ import annotations

import paddle
import paddle.nn.functional as F

from . import _checks


def deform_aggregate_reference(value: paddle.Tensor, offset: paddle.Tensor, weight: paddle.Tensor,
                               kernel_size: _checks.IntPair = 3, stride: _checks.IntPair = 1,
                               padding: _checks.IntPair = 1, dilation: _checks.IntPair = 1,
                               groups: int = 1, offset_scale: float = 1.0) -> paddle.Tensor:
    """See :func:`paddle_dcn.ops.deform_aggregate`; the sampling goes through
    ``F.grid_sample(..., align_corners=False, padding_mode='zeros')`` on the zero-padded
    input, the positions normalised as InternImage does."""
    kh, kw = _checks.pair(kernel_size, "kernel_size", 1)
    sh, sw = _checks.pair(stride, "stride", 1)
    ph, pw = _checks.pair(padding, "padding", 0)
    dh, dw = _checks.pair(dilation, "dilation", 1)
    n, h, w, channels = value.shape
    g, k = groups, kh * kw
    c = channels // g
    x = F.pad(value.transpose([0, 3, 1, 2]), [pw, pw, ph, ph])  # [N, G*C, H_in, W_in]
    h_in, w_in = h + 2 * ph, w + 2 * pw
    out_h = (h_in - (dh * (kh - 1) + 1)) // sh + 1
    out_w = (w_in - (dw * (kw - 1) + 1)) // sw + 1
    ch, cw = (dh * (kh - 1)) // 2, (dw * (kw - 1)) // 2
    dtype = value.dtype
    ref_y = (paddle.arange(out_h, dtype=dtype) * sh + ch + 0.5) / h_in
    ref_x = (paddle.arange(out_w, dtype=dtype) * sw + cw + 0.5) / w_in
    ref = paddle.stack([ref_x.reshape([1, -1]).expand([out_h, out_w]), ref_y.reshape([-1, 1]).expand([out_h, out_w])],
                       axis=-1).reshape([1, out_h, out_w, 1, 1, 2])  # (x, y) of each output pixel
    iw = paddle.arange(kw, dtype=dtype).reshape([-1, 1]).expand([kw, kh]).reshape([-1])  # k = iw*kh + ih
    ih = paddle.arange(kh, dtype=dtype).reshape([1, -1]).expand([kw, kh]).reshape([-1])
    grid = paddle.stack([(iw * dw - cw) / w_in, (ih * dh - ch) / h_in], axis=-1).reshape([1, 1, 1, 1, k, 2])
    norm = paddle.to_tensor([w_in, h_in], dtype=dtype).reshape([1, 1, 1, 1, 1, 2])
    locations = ref + grid * offset_scale + offset.reshape([n, out_h, out_w, g, k, 2]) * offset_scale / norm
    grids = (2 * locations - 1).reshape([n, out_h * out_w, g, k, 2]).transpose([0, 2, 1, 3, 4])
    sampled = F.grid_sample(x.reshape([n * g, c, h_in, w_in]), grids.reshape([n * g, out_h * out_w, k, 2]),
                            mode="bilinear", padding_mode="zeros", align_corners=False)  # [N*G, C, HoWo, K]
    m = weight.reshape([n, out_h * out_w, g, k]).transpose([0, 2, 1, 3]).reshape([n * g, 1, out_h * out_w, k])
    out = (sampled * m).sum(-1).reshape([n, g * c, out_h * out_w]).transpose([0, 2, 1])
    return out.reshape([n, out_h, out_w, g * c])
