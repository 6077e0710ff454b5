"""Pure-torch references of deform_conv2d (DCN v1/v2) and roi_align / deform_roi_pool.

Written with differentiable torch ops only (gather, floor, where; no loops over pixels), so
autograd gives the reference gradients. validate.py --cpu-mock uses them in place of torchvision
(which cannot be installed beside the CPU torch wheel there); on the GPU run validate.py checks
them against torchvision in float64 once. Contracts: docs/ops.md.
"""
import torch


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _bilinear_zero(planes, y, x, h, w):
    """DCN sampling: planes [B, P, h*w] (B batch-like, P channels); y, x [B, S] sample coordinates.
    A sample with y <= -1 or y >= h or x <= -1 or x >= w is zero; otherwise the four integer
    neighbours are blended, a neighbour outside the map contributing zero. Returns [B, P, S]."""
    inside = (y > -1) & (y < h) & (x > -1) & (x < w)
    y0, x0 = torch.floor(y), torch.floor(x)
    ly, lx = y - y0, x - x0
    out = 0
    for dy, dx, wgt in ((0, 0, (1 - ly) * (1 - lx)), (0, 1, (1 - ly) * lx),
                        (1, 0, ly * (1 - lx)), (1, 1, ly * lx)):
        yy, xx = y0 + dy, x0 + dx
        valid = inside & (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long()
        idx = torch.where(valid, idx, torch.zeros_like(idx))
        vals = torch.gather(planes, 2, idx[:, None, :].expand(-1, planes.shape[1], -1))
        out = out + vals * torch.where(valid, wgt, torch.zeros_like(wgt))[:, None, :]
    return out


def deform_conv2d(x, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None):
    """torchvision.ops.deform_conv2d's signature. x [N, C, H, W]; offset [N, 2*dg*kh*kw, Ho, Wo]
    (channel 2*(g*K + k) the y shift of kernel point k of deformable group g, the next the x
    shift); mask [N, dg*kh*kw, Ho, Wo] or None (v1); weight [Cout, C/groups, kh, kw]."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, w = x.shape
    cout, cpg_w, kh, kw = weight.shape
    groups, K = c // cpg_w, kh * kw
    ho = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    wo = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    dg = offset.shape[1] // (2 * K)
    L = ho * wo
    dev, dt = x.device, x.dtype
    # base positions [K, L]
    a = torch.arange(kh, device=dev).repeat_interleave(kw)
    b = torch.arange(kw, device=dev).repeat(kh)
    i = torch.arange(ho, device=dev).repeat_interleave(wo)
    j = torch.arange(wo, device=dev).repeat(ho)
    base_y = (i[None, :] * sh - ph + a[:, None] * dh).to(dt)
    base_x = (j[None, :] * sw - pw + b[:, None] * dw).to(dt)
    off = offset.reshape(n, dg, K, 2, L)
    y = base_y + off[:, :, :, 0]  # [n, dg, K, L]
    xs = base_x + off[:, :, :, 1]
    planes = x.reshape(n * dg, c // dg, h * w)
    cols = _bilinear_zero(planes, y.reshape(n * dg, K * L), xs.reshape(n * dg, K * L), h, w)
    cols = cols.reshape(n, dg, c // dg, K, L)
    if mask is not None:
        cols = cols * mask.reshape(n, dg, 1, K, L)
    cols = cols.reshape(n, groups, (c // groups) * K, L)
    w3 = weight.reshape(groups, cout // groups, cpg_w * K)
    out = torch.einsum("gok,ngkl->ngol", w3, cols).reshape(n, cout, ho, wo)
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out


def _bilinear_clamped(planes, y, x, h, w):
    """roi_align's interpolation: planes [K, C, h*w]; y, x [K, S]. A sample with y < -1 or y > h
    or x < -1 or x > w is zero; others are clamped onto the map (derivative zero along a clamped
    coordinate) and the four neighbours blended. Returns [K, C, S]."""
    inside = (y >= -1) & (y <= h) & (x >= -1) & (x <= w)

    def axis(v, size):
        v = v.clamp(min=0)
        low = torch.floor(v)
        edge = low >= size - 1
        low = torch.where(edge, torch.full_like(low, size - 1), low)
        v = torch.where(edge, low, v)
        high = torch.where(edge, low, low + 1)
        return low, high, v - low

    yl, yh, ly = axis(y, h)
    xl, xh, lx = axis(x, w)
    out = 0
    for yy, xx, wgt in ((yl, xl, (1 - ly) * (1 - lx)), (yl, xh, (1 - ly) * lx),
                        (yh, xl, ly * (1 - lx)), (yh, xh, ly * lx)):
        idx = torch.where(inside, yy * w + xx, torch.zeros_like(yy)).long()
        vals = torch.gather(planes, 2, idx[:, None, :].expand(-1, planes.shape[1], -1))
        out = out + vals * torch.where(inside, wgt, torch.zeros_like(wgt))[:, None, :]
    return out


def deform_roi_pool(x, boxes, output_size, offset=None, spatial_scale=1.0, sampling_ratio=-1,
                    gamma=0.1, aligned=True):
    """x [N, C, H, W]; boxes [K, 5] (image index, x1, y1, x2, y2) as torchvision's roi_align;
    offset [K, 2, PH, PW] or None (channel 0 moves bin (i, j) along x, 1 along y, in units of the
    box size times gamma). offset None: torchvision.ops.roi_align. Adaptive grid (sampling_ratio
    <= 0): ceil(roi_size / output_size) per box and axis."""
    PH, PW = _pair(output_size)
    n, c, h, w = x.shape
    k = boxes.shape[0]
    dt = x.dtype
    if k == 0:
        return x.new_zeros(0, c, PH, PW)
    bx = boxes.detach().to(dt)
    image = bx[:, 0].long()
    shift = 0.5 if aligned else 0.0
    rx, ry = bx[:, 1] * spatial_scale - shift, bx[:, 2] * spatial_scale - shift
    rw, rh = bx[:, 3] * spatial_scale - shift - rx, bx[:, 4] * spatial_scale - shift - ry
    if not aligned:
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    bin_h, bin_w = rh / PH, rw / PW
    if sampling_ratio > 0:
        gh = gw = torch.full((k,), sampling_ratio, device=x.device, dtype=torch.long)
    else:
        gh = torch.ceil(bin_h).clamp(min=0).long()
        gw = torch.ceil(bin_w).clamp(min=0).long()
    gmax_h, gmax_w = max(int(gh.max()), 1), max(int(gw.max()), 1)
    oy = ry[:, None, None].expand(k, PH, PW)
    ox = rx[:, None, None].expand(k, PH, PW)
    if offset is not None:
        oy = oy + gamma * rh[:, None, None] * offset[:, 1]
        ox = ox + gamma * rw[:, None, None] * offset[:, 0]
    ii = torch.arange(PH, device=x.device, dtype=dt)[None, :, None, None]
    jj = torch.arange(PW, device=x.device, dtype=dt)[None, None, :, None]
    ga = torch.arange(gmax_h, device=x.device, dtype=dt)[None, None, None, :]
    gb = torch.arange(gmax_w, device=x.device, dtype=dt)[None, None, None, :]
    ghf = gh.clamp(min=1).to(dt)[:, None, None, None]
    gwf = gw.clamp(min=1).to(dt)[:, None, None, None]
    ys = oy[..., None] + bin_h[:, None, None, None] * (ii + (ga + 0.5) / ghf)  # [K, PH, PW, Gh]
    xs = ox[..., None] + bin_w[:, None, None, None] * (jj + (gb + 0.5) / gwf)  # [K, PH, PW, Gw]
    Y = ys[..., :, None].expand(k, PH, PW, gmax_h, gmax_w)
    X = xs[..., None, :].expand(k, PH, PW, gmax_h, gmax_w)
    planes = x.reshape(n, c, h * w)[image]  # [K, C, HW]
    vals = _bilinear_clamped(planes, Y.reshape(k, -1), X.reshape(k, -1), h, w)
    vals = vals.reshape(k, c, PH, PW, gmax_h, gmax_w)
    used = ((torch.arange(gmax_h, device=x.device)[None, :, None] < gh[:, None, None]) &
            (torch.arange(gmax_w, device=x.device)[None, None, :] < gw[:, None, None]))
    vals = vals * used[:, None, None, None].to(dt)
    count = (gh * gw).clamp(min=1).to(dt)[:, None, None, None]
    return vals.sum(dim=(4, 5)) / count


def roi_align(x, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """torchvision.ops.roi_align's signature and semantics (boxes [K, 5])."""
    return deform_roi_pool(x, boxes, output_size, None, spatial_scale, sampling_ratio, 0.0, aligned)


def deform_aggregate(value, offset, weight, kernel, stride, padding, dilation, groups, offset_scale):
    """DCNv3's core as InternImage's ``dcnv3_core_pytorch`` (grid_sample on the zero-padded
    channels-last input, align_corners=False). value [N, H, W, G*C], offset [N, Ho, Wo, G*K*2]
    ((dx, dy) per point, k = iw*kh + ih), weight [N, Ho, Wo, G*K] -> [N, Ho, Wo, G*C]."""
    import torch.nn.functional as F

    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (kernel, stride, padding, dilation))
    n, h, w, gc = value.shape
    g, k = groups, kh * kw
    c = gc // g
    x = F.pad(value.permute(0, 3, 1, 2), (pw, pw, ph, ph))
    hi, wi = h + 2 * ph, w + 2 * pw
    ho, wo = (hi - (dh * (kh - 1) + 1)) // sh + 1, (wi - (dw * (kw - 1) + 1)) // sw + 1
    ch, cw = (dh * (kh - 1)) // 2, (dw * (kw - 1)) // 2
    dt, dev = value.dtype, value.device
    ref_y = (torch.arange(ho, dtype=dt, device=dev) * sh + ch + 0.5) / hi
    ref_x = (torch.arange(wo, dtype=dt, device=dev) * sw + cw + 0.5) / wi
    ref = torch.stack([ref_x[None, :].expand(ho, wo), ref_y[:, None].expand(ho, wo)], -1).reshape(1, ho, wo, 1, 1, 2)
    iw = torch.arange(kw, dtype=dt, device=dev)[:, None].expand(kw, kh).reshape(-1)
    ih = torch.arange(kh, dtype=dt, device=dev)[None, :].expand(kw, kh).reshape(-1)
    grid = torch.stack([(iw * dw - cw) / wi, (ih * dh - ch) / hi], -1).reshape(1, 1, 1, 1, k, 2)
    norm = torch.tensor([wi, hi], dtype=dt, device=dev).reshape(1, 1, 1, 1, 1, 2)
    loc = ref + grid * offset_scale + offset.reshape(n, ho, wo, g, k, 2) * offset_scale / norm
    grids = (2 * loc - 1).reshape(n, ho * wo, g, k, 2).transpose(1, 2).reshape(n * g, ho * wo, k, 2)
    sampled = F.grid_sample(x.reshape(n * g, c, hi, wi), grids, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    m = weight.reshape(n, ho * wo, g, k).transpose(1, 2).reshape(n * g, 1, ho * wo, k)
    out = (sampled * m).sum(-1).reshape(n, g * c, ho * wo).transpose(1, 2)
    return out.reshape(n, ho, wo, g * c)
