"""Pure-PyTorch references of deform_conv2d and roi_align, independent of our kernels.

Plain differentiable torch ops (gather, where), so autograd gives the reference gradients.
validate.py uses them where torchvision cannot run (the --cpu-mock mode in CI, whose CPU
PyTorch has no matching torchvision) and cross-checks them against torchvision on the GPU.
Contracts (docs/ops.md):
- deform_conv2d: offset ``[N, 2*dg*kh*kw, Ho, Wo]`` with channel ``2*(g*K + k)`` the y shift and
  the next the x shift, mask ``[N, dg*K, Ho, Wo]``; bilinear sampling where a sample with
  ``y <= -1``, ``y >= H``, ``x <= -1`` or ``x >= W`` is zero and a neighbour outside the map
  contributes zero.
- roi_align: torchvision's (rois ``[K, 5]`` = (batch index, x1, y1, x2, y2), ``aligned``
  shifts by -0.5, ``sampling_ratio <= 0`` is ``ceil(roi_size / output_size)``, a sample with
  ``y < -1`` or ``y > H`` (x alike) is zero, the others are clamped onto the map).
"""
from __future__ import annotations

import math

import torch


def _gather(img: torch.Tensor, yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
    """img [N, C, H, W], integer maps yi/xi [N, P] (inside the map) -> [N, C, P]."""
    n, c, h, w = img.shape
    index = (yi * w + xi).long()[:, None, :].expand(n, c, -1)
    return img.reshape(n, c, h * w).gather(2, index)


def bilinear_zero(img: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """DCN's bilinear sample of img [N, C, H, W] at y, x [N, P] -> [N, C, P]."""
    h, w = img.shape[-2:]
    valid = (y > -1) & (y < h) & (x > -1) & (x < w)  # False for NaN
    y = torch.where(valid, y, torch.zeros_like(y))
    x = torch.where(valid, x, torch.zeros_like(x))
    y0, x0 = torch.floor(y), torch.floor(x)
    ly, lx = y - y0, x - x0
    out = 0
    for dy, dx, weight in ((0, 0, (1 - ly) * (1 - lx)), (0, 1, (1 - ly) * lx),
                           (1, 0, ly * (1 - lx)), (1, 1, ly * lx)):
        yi, xi = y0 + dy, x0 + dx
        inside = valid & (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
        v = _gather(img, yi.clamp(0, h - 1), xi.clamp(0, w - 1))
        out = out + v * torch.where(inside, weight, torch.zeros_like(weight))[:, None, :]
    return out


def deform_conv2d(x, offset, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                  mask=None):
    """DCN v1 (mask None) / v2 with groups (from weight) and deformable groups (from offset)."""
    n, c, h, w = x.shape
    cout, c_per_group, kh, kw = weight.shape
    groups = c // c_per_group
    k_points = kh * kw
    dg = offset.shape[1] // (2 * k_points)
    ho, wo = offset.shape[2], offset.shape[3]
    cpg = c // dg
    dev, dt = x.device, x.dtype
    i = torch.arange(ho, device=dev, dtype=dt)[:, None].expand(ho, wo).reshape(-1)
    j = torch.arange(wo, device=dev, dtype=dt)[None, :].expand(ho, wo).reshape(-1)
    columns = []  # [N, cpg, P] per (g, k), assembled to [N, C, K, P]
    per_group = []
    for g in range(dg):
        samples = []
        for k in range(k_points):
            a, b = divmod(k, kw)
            ch = 2 * (g * k_points + k)
            y = i * stride[0] - padding[0] + a * dilation[0] + offset[:, ch].reshape(n, -1)
            xx = j * stride[1] - padding[1] + b * dilation[1] + offset[:, ch + 1].reshape(n, -1)
            s = bilinear_zero(x[:, g * cpg:(g + 1) * cpg], y, xx)
            if mask is not None:
                s = s * mask[:, g * k_points + k].reshape(n, 1, -1)
            samples.append(s)
        per_group.append(torch.stack(samples, 2))  # [N, cpg, K, P]
    columns = torch.cat(per_group, 1)  # [N, C, K, P]
    cols = columns.reshape(n, groups, c_per_group * k_points, ho * wo)
    w3 = weight.reshape(groups, cout // groups, c_per_group * k_points)
    out = torch.einsum("gok,ngkp->ngop", w3, cols).reshape(n, cout, ho, wo)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


def _clamped_axis(v: torch.Tensor, size: int):
    """roi_align's clamp of one coordinate: (low, high, weight_low, weight_high)."""
    v = torch.clamp(v, min=0)
    low = torch.floor(v)
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    high = torch.where(at_end, low, low + 1)
    v = torch.where(at_end, low, v)
    frac = v - low
    return low, high, 1 - frac, frac


def roi_align(x, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """torchvision.ops.roi_align semantics, one box at a time (rois [K, 5])."""
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    _, c, h, w = x.shape
    shift = 0.5 if aligned else 0.0
    outs = []
    for r in rois.detach().double().cpu().tolist():
        b = int(r[0])
        x1, y1 = r[1] * spatial_scale - shift, r[2] * spatial_scale - shift
        roi_w, roi_h = r[3] * spatial_scale - shift - x1, r[4] * spatial_scale - shift - y1
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / ph, roi_w / pw
        gh = sampling_ratio if sampling_ratio > 0 else max(int(math.ceil(roi_h / ph)), 0)
        gw = sampling_ratio if sampling_ratio > 0 else max(int(math.ceil(roi_w / pw)), 0)
        if gh * gw == 0:
            outs.append(x.new_zeros(c, ph, pw))
            continue
        ys = torch.tensor([y1 + p * bin_h + (s + 0.5) * bin_h / gh for p in range(ph)
                           for s in range(gh)], dtype=torch.float64, device=x.device)
        xs = torch.tensor([x1 + q * bin_w + (s + 0.5) * bin_w / gw for q in range(pw)
                           for s in range(gw)], dtype=torch.float64, device=x.device)
        yy, xx = ys[:, None].expand(-1, xs.numel()), xs[None, :].expand(ys.numel(), -1)
        valid = ((yy >= -1) & (yy <= h) & (xx >= -1) & (xx <= w)).reshape(1, -1)
        y0, y1_, wy0, wy1 = _clamped_axis(yy.reshape(1, -1), h)
        x0, x1_, wx0, wx1 = _clamped_axis(xx.reshape(1, -1), w)
        img = x[b:b + 1]
        val = 0
        for yi, wy in ((y0, wy0), (y1_, wy1)):
            for xi, wx in ((x0, wx0), (x1_, wx1)):
                val = val + _gather(img, yi, xi) * (wy * wx * valid).to(x.dtype)[:, None, :]
        val = val.reshape(c, ph, gh, pw, gw).sum((2, 4)) / (gh * gw)
        outs.append(val)
    if not outs:
        return x.new_zeros(0, c, ph, pw)
    return torch.stack(outs, 0)
