"""GPU validation and benchmark of paddle_dcn's framework-neutral CUDA kernels, no Paddle needed.

The kernels are called through ctypes (pdcn_shim.cu); the chunk loop and the GEMMs of
custom_ops/paddle/deform_conv_op.cc are re-done here with torch.bmm in place of Paddle's matmul,
so the whole deform_conv2d algorithm (groups, chunks, weight-gradient accumulation) is checked
against torchvision.ops.deform_conv2d, and deform_roi_pool against torchvision.ops.roi_align.
Prints one PASS/FAIL line per check and 'N passed, M failed' at the end; exit 1 on a failure.
    python3 validate.py --lib libpdcn_shim.so --out DIR [--skip-bench] [--skip-large]
"""
import argparse
import ctypes
import json
import math
import os
import sys
import time

import torch

import reference

try:  # the device machine has torchvision; the CPU mock's PyTorch has none
    import torchvision
    from torchvision.ops import deform_conv2d as tv_deform_conv2d
    from torchvision.ops import roi_align as tv_roi_align
except (ImportError, RuntimeError):
    torchvision = None
    tv_deform_conv2d = reference.deform_conv2d
    tv_roi_align = reference.roi_align

DEV = torch.device("cuda")
DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
DT = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
RESULTS = {"passed": 0, "failed": 0, "checks": [], "bench": []}
LIB = None
VP, LL, I, F = ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int, ctypes.c_float


def load(path):
    global LIB
    LIB = ctypes.CDLL(path)
    llp, fp = ctypes.POINTER(LL), ctypes.POINTER(F)
    sig = {
        "pdcn_error_string": (ctypes.c_char_p, [I]),
        "pdcn_col2im_scratch_bytes": (LL, [I, llp, LL, I]),
        "pdcn_im2col": (I, [I, llp, VP, VP, VP, VP, LL, LL, VP]),
        "pdcn_col2im": (I, [I, llp, VP, VP, VP, VP, VP, LL, LL, I, VP]),
        "pdcn_coord_grad": (I, [I, llp, VP, VP, VP, VP, VP, VP, LL, LL, VP]),
        "pdcn_columns_to_output": (I, [I, llp, VP, VP, LL, LL, VP]),
        "pdcn_output_to_columns": (I, [I, llp, VP, VP, LL, LL, VP]),
        "pdcn_accumulate": (I, [I, VP, VP, LL, VP]),
        "pdcn_convert_from_acc": (I, [I, VP, VP, LL, VP]),
        "pdcn_roi_batch_from_counts": (I, [VP, I, LL, LL, VP, VP]),
        "pdcn_roi_scratch_bytes": (LL, [I, llp, fp, I]),
        "pdcn_roi_forward": (I, [I, llp, fp, VP, VP, VP, VP, VP, VP]),
        "pdcn_roi_backward": (I, [I, llp, fp, VP, VP, VP, VP, VP, VP, VP, VP, I, VP]),
        "pdcn_psroi_scratch_bytes": (LL, [I, llp, fp, I]),
        "pdcn_psroi_forward": (I, [I, llp, fp, VP, VP, VP, VP, VP, VP]),
        "pdcn_psroi_backward": (I, [I, llp, fp, VP, VP, VP, VP, VP, VP, VP, VP, I, VP]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(LIB, name)
        fn.restype, fn.argtypes = res, args


def p(t):
    return None if t is None else t.data_ptr()


def stream():
    return torch.cuda.current_stream().cuda_stream if DEV.type == "cuda" else None


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def lls(vals):
    return (LL * len(vals))(*[int(v) for v in vals])


def fls(vals):
    return (F * len(vals))(*[float(v) for v in vals])


def ok(rc, what):
    if rc != 0:
        raise RuntimeError(f"{what}: CUDA error {rc} ({LIB.pdcn_error_string(rc).decode()})")


def check(name, passed, detail=""):
    RESULTS["passed" if passed else "failed"] += 1
    RESULTS["checks"].append({"name": name, "passed": bool(passed), "detail": detail})
    print(f"{'PASS' if passed else 'FAIL'}  {name}  {detail}", flush=True)


def rel_err(got, want):
    got, want = got.double(), want.double()
    if want.numel() == 0:
        return 0.0
    scale = want.abs().max().item()
    err = (got - want).abs().max().item()
    if math.isnan(err):
        return float("inf")
    return err / max(scale, 1e-30)


# ---- deformable convolution: the binding's algorithm over the CUDA kernels ----------------

class Cfg:
    def __init__(self, stride=1, pad=0, dil=1, groups=1, dg=1, workspace=64 << 20, det=False,
                 chunk=None):
        self.stride, self.pad, self.dil = (stride,) * 2, (pad,) * 2, (dil,) * 2
        self.groups, self.dg, self.workspace, self.det = groups, dg, workspace, det
        self.chunk = chunk  # images per chunk instead of the workspace rule


def geometry(x, weight, cfg):
    n, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ho = (h + 2 * cfg.pad[0] - (cfg.dil[0] * (kh - 1) + 1)) // cfg.stride[0] + 1
    wo = (w + 2 * cfg.pad[1] - (cfg.dil[1] * (kw - 1) + 1)) // cfg.stride[1] + 1
    g = [n, c, h, w, cout, ho, wo, kh, kw, cfg.stride[0], cfg.stride[1], cfg.pad[0], cfg.pad[1],
         cfg.dil[0], cfg.dil[1], cfg.groups, cfg.dg]
    return g, lls(g)


def choose_chunk(g, elem_bytes, cfg):  # deform_conv_op.cc choose_chunk (CUDA: no scratch)
    n, c, kh, kw, ho, wo = g[0], g[1], g[7], g[8], g[5], g[6]
    if cfg.chunk:
        return max(1, min(n, cfg.chunk))
    per_image = max(1, c * kh * kw * ho * wo * elem_bytes)
    return max(1, min(n, max(1, cfg.workspace // per_image)))


def pdcn_forward(x, offset, mask, weight, cfg):
    g, ga = geometry(x, weight, cfg)
    n, c, cout, ho, wo, kh, kw, G = g[0], g[1], g[4], g[5], g[6], g[7], g[8], cfg.groups
    d, hw, rows = DT[x.dtype], ho * wo, c * kh * kw
    out = torch.empty(n, cout, ho, wo, dtype=x.dtype, device=x.device)
    if n == 0:
        return out
    chunk = choose_chunk(g, x.element_size(), cfg)
    columns = torch.empty(rows * chunk * hw, dtype=x.dtype, device=x.device)
    results = torch.empty(cout * chunk * hw, dtype=x.dtype, device=x.device)
    w3 = weight.reshape(G, cout // G, rows // G)
    for n0 in range(0, n, chunk):
        b = min(chunk, n - n0)
        ok(LIB.pdcn_im2col(d, ga, p(x), p(offset), p(mask), p(columns), n0, b, stream()), "im2col")
        res = results[: cout * b * hw].view(G, cout // G, b * hw)
        torch.bmm(w3, columns[: rows * b * hw].view(G, rows // G, b * hw), out=res)
        ok(LIB.pdcn_columns_to_output(d, ga, p(res), p(out), n0, b, stream()), "columns_to_output")
    return out


def pdcn_backward(x, offset, mask, weight, grad_out, cfg):
    g, ga = geometry(x, weight, cfg)
    n, c, cout, ho, wo, kh, kw, G = g[0], g[1], g[4], g[5], g[6], g[7], g[8], cfg.groups
    d, hw, rows = DT[x.dtype], ho * wo, c * kh * kw
    grad_x, grad_offset = torch.empty_like(x), torch.empty_like(offset)
    grad_mask = torch.empty_like(mask) if mask is not None else None
    grad_w3 = torch.zeros(G, cout // G, rows // G, dtype=x.dtype, device=x.device)
    # As the binding: float16/bfloat16 sum the chunks' weight gradients in float32 and round once.
    half = x.dtype in (torch.float16, torch.bfloat16)
    grad_w_acc = torch.zeros(grad_w3.numel(), dtype=torch.float32, device=x.device) if half else None
    if n > 0:
        chunk = choose_chunk(g, x.element_size(), cfg)
        columns = torch.empty(rows * chunk * hw, dtype=x.dtype, device=x.device)
        gathered = torch.empty(cout * chunk * hw, dtype=x.dtype, device=x.device)
        gcols_buf = torch.empty(rows * chunk * hw, dtype=x.dtype, device=x.device)
        w3 = weight.reshape(G, cout // G, rows // G)
        for n0 in range(0, n, chunk):
            b = min(chunk, n - n0)
            ok(LIB.pdcn_im2col(d, ga, p(x), p(offset), p(mask), p(columns), n0, b, stream()), "im2col")
            ok(LIB.pdcn_output_to_columns(d, ga, p(grad_out), p(gathered), n0, b, stream()), "o2c")
            cols = columns[: rows * b * hw].view(G, rows // G, b * hw)
            gout = gathered[: cout * b * hw].view(G, cout // G, b * hw)
            if half:
                prod = torch.bmm(gout, cols.transpose(1, 2)).contiguous()
                ok(LIB.pdcn_accumulate(d, p(grad_w_acc), p(prod), prod.numel(), stream()), "accumulate")
            elif n0 == 0:
                torch.bmm(gout, cols.transpose(1, 2), out=grad_w3)
            else:  # as the binding: product in T, then accumulate into grad_w3
                prod = torch.bmm(gout, cols.transpose(1, 2)).contiguous()
                ok(LIB.pdcn_accumulate(d, p(grad_w3), p(prod), prod.numel(), stream()), "accumulate")
            gcols = gcols_buf[: rows * b * hw].view(G, rows // G, b * hw)
            torch.bmm(w3.transpose(1, 2), gout, out=gcols)
            ok(LIB.pdcn_coord_grad(d, ga, p(gcols), p(x), p(offset), p(mask), p(grad_offset),
                                   p(grad_mask), n0, b, stream()), "coord_grad")
            sb = LIB.pdcn_col2im_scratch_bytes(d, ga, b, int(cfg.det))
            scratch = torch.empty(max(sb // 4, 1), dtype=torch.float32, device=x.device)
            ok(LIB.pdcn_col2im(d, ga, p(gcols), p(offset), p(mask), p(grad_x),
                               p(scratch) if sb > 0 else None, n0, b, int(cfg.det), stream()), "col2im")
        if half:
            ok(LIB.pdcn_convert_from_acc(d, p(grad_w_acc), p(grad_w3), grad_w3.numel(), stream()),
               "convert_from_acc")
    return grad_x, grad_offset, grad_mask, grad_w3.reshape(weight.shape)


class PdcnDeformConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, offset, mask, weight, cfg):
        ctx.save_for_backward(x, offset, mask, weight)
        ctx.cfg = cfg
        return pdcn_forward(x, offset, mask, weight, cfg)

    @staticmethod
    def backward(ctx, grad_out):
        x, offset, mask, weight = ctx.saved_tensors
        gx, go, gm, gw = pdcn_backward(x, offset, mask, weight, grad_out.contiguous(), ctx.cfg)
        return gx, go, gm, gw, None


def ours(x, offset, mask, weight, cfg):
    return PdcnDeformConv.apply(x, offset, mask, weight, cfg)


def tv(x, offset, mask, weight, cfg):
    return tv_deform_conv2d(x, offset, weight, None, cfg.stride, cfg.pad, cfg.dil, mask)


def conv_inputs(n, c, h, w, cout, kh, kw, cfg, with_mask, dtype, seed=0):
    gen = torch.Generator(device=DEV.type).manual_seed(seed)
    ho = (h + 2 * cfg.pad[0] - (cfg.dil[0] * (kh - 1) + 1)) // cfg.stride[0] + 1
    wo = (w + 2 * cfg.pad[1] - (cfg.dil[1] * (kw - 1) + 1)) // cfg.stride[1] + 1
    t = lambda *s, scale=1.0: torch.randn(*s, generator=gen, dtype=torch.float64, device=DEV) * scale
    x = t(n, c, h, w)
    off = t(n, 2 * cfg.dg * kh * kw, ho, wo, scale=2.0)
    mask = (torch.rand(n, cfg.dg * kh * kw, ho, wo, generator=gen, dtype=torch.float64, device=DEV)
            if with_mask else None)
    weight = t(cout, c // cfg.groups, kh, kw, scale=1.0 / math.sqrt(c * kh * kw / cfg.groups))
    gout = t(n, cout, ho, wo)
    cast = lambda a: None if a is None else a.to(dtype).contiguous()
    return [cast(a) for a in (x, off, mask, weight, gout)]


def fwd_bwd(fn, x, off, mask, weight, gout, cfg):
    leaves = [a.detach().clone().requires_grad_(True) if a is not None else None
              for a in (x, off, mask, weight)]
    out = fn(*leaves, cfg)
    out.backward(gout)
    return [out.detach()] + [a.grad if a is not None else None for a in leaves]


CONV_CASES = [
    # name, (n, c, h, w, cout, kh, kw), cfg kwargs, mask
    ("3x3 v2", (2, 16, 15, 13, 8, 3, 3), dict(pad=1), True),
    ("3x2 s2 d2 groups2 dg4 v1", (3, 8, 12, 11, 6, 3, 2), dict(stride=2, pad=1, dil=2, groups=2, dg=4), False),
    ("groups4 dg2 chunk1", (4, 32, 20, 20, 16, 3, 3), dict(pad=1, groups=4, dg=2, workspace=1), True),
    ("5 images chunk2 (partial last chunk)", (5, 8, 9, 10, 4, 3, 3), dict(pad=1, chunk=2), True),
    ("1x1 per-channel dg=C", (2, 6, 7, 8, 5, 1, 1), dict(dg=6), True),
]


def conv_accuracy():
    for name, (n, c, h, w, cout, kh, kw), kw_cfg, with_mask in CONV_CASES:
        cfg = Cfg(**kw_cfg)
        inp64 = conv_inputs(n, c, h, w, cout, kh, kw, cfg, with_mask, torch.float64)
        ref = fwd_bwd(tv, *inp64, cfg)
        labels = ["out", "grad_x", "grad_offset", "grad_mask", "grad_weight"]
        for dtype in DTYPES:
            inp = [None if a is None else a.to(dtype) for a in inp64]
            # the reference sees the same (rounded) inputs
            ref_d = fwd_bwd(tv, *[None if a is None else a.double() for a in inp], cfg) if dtype != torch.float64 else ref
            for det in (False, True):
                cfg.det = det
                got = fwd_bwd(ours, *inp, cfg)
                try:
                    tvd = fwd_bwd(tv, *inp, cfg) if dtype in (torch.float16, torch.bfloat16) else None
                except RuntimeError:
                    tvd = None  # torchvision may lack this dtype
                for i, label in enumerate(labels):
                    if ref_d[i] is None:
                        continue
                    e = rel_err(got[i], ref_d[i])
                    if dtype == torch.float64:
                        tol = 1e-10
                    elif dtype == torch.float32:
                        tol = 2e-5 if i == 0 else 1e-4
                    else:
                        base = 1e-2 if dtype == torch.float16 else 6e-2
                        tol = max(base, 3 * rel_err(tvd[i], ref_d[i])) if tvd is not None else base
                    check(f"conv {name} {str(dtype)[6:]} {'det' if det else 'atomic'} {label}",
                          e <= tol, f"rel err {e:.2e} (tol {tol:.1e})")
            cfg.det = False
        # deterministic backward is bitwise reproducible, atomic close to it
        inp = conv_inputs(n, c, h, w, cout, kh, kw, cfg, with_mask, torch.float32)
        cfg.det = True
        a = pdcn_backward(*inp[:4], inp[4], cfg)
        b = pdcn_backward(*inp[:4], inp[4], cfg)
        cfg.det = False
        check(f"conv {name} deterministic grad_x bitwise repeat", torch.equal(a[0], b[0]))


def conv_streams_and_empty():
    cfg = Cfg(pad=1, dg=2)
    x, off, mask, w, gout = conv_inputs(3, 8, 10, 10, 4, 3, 3, cfg, True, torch.float32, seed=3)
    if DEV.type == "cuda":
        ref = pdcn_forward(x, off, mask, w, cfg)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            got = pdcn_forward(x, off, mask, w, cfg)
            gb = pdcn_backward(x, off, mask, w, gout, cfg)
        torch.cuda.current_stream().wait_stream(s)
        check("conv on a non-default stream", torch.equal(got, ref))
        rb = pdcn_backward(x, off, mask, w, gout, cfg)
        check("conv backward on a non-default stream", all(rel_err(u, v) < 1e-5 for u, v in zip(gb, rb)))
    # empty batch and zero-size launches (grid_for(0) must still launch 1 block, not 0)
    e = [a[:0] if a is not None else None for a in (x, off, mask)]
    out = pdcn_forward(e[0], e[1], e[2], w, cfg)
    bx = pdcn_backward(e[0], e[1], e[2], w, gout[:0], cfg)
    sync()
    check("conv empty batch", out.shape[0] == 0 and bool((bx[3] == 0).all()))
    g, ga = geometry(x, w, cfg)
    rc = [LIB.pdcn_im2col(0, ga, p(x), p(off), p(mask), p(torch.empty(1, device=DEV)), 0, 0, stream()),
          LIB.pdcn_coord_grad(0, ga, p(x), p(x), p(off), p(mask), p(off), p(mask), 0, 0, stream()),
          LIB.pdcn_col2im(0, ga, p(x), p(off), p(mask), p(x), None, 0, 0, 0, stream())]
    sync()
    check("conv chunk=0 launches", rc == [0, 0, 0], str(rc))


def conv_large():
    """Flat indices beyond 2^31: one chunk of 4 images whose columns hold 2.4e9 elements, and an
    input of 2.4e9 elements whose last image starts beyond 2^31."""
    dtype = torch.float16
    cfg_big = Cfg(pad=1, workspace=16 << 30)
    x, off, mask, w, gout = conv_inputs(4, 64, 1024, 1024, 64, 3, 3, cfg_big, True, dtype, seed=5)
    g, _ = geometry(x, w, cfg_big)
    cols = g[1] * 9 * g[5] * g[6] * choose_chunk(g, 2, cfg_big)
    torch.cuda.synchronize()
    t0 = time.time()
    big = pdcn_forward(x, off, mask, w, cfg_big)
    ref3 = tv(x[3:], off[3:], mask[3:], w, cfg_big)
    gb = pdcn_backward(x, off, mask, w, gout, cfg_big)
    gs = pdcn_backward(x, off, mask, w, gout, Cfg(pad=1, workspace=1))
    torch.cuda.synchronize()
    check(f"large: {cols / 2**31:.2f}x2^31 column elements, image 3 vs torchvision",
          rel_err(big[3:], ref3) < 1e-2, f"rel err {rel_err(big[3:], ref3):.2e}, {time.time() - t0:.1f} s")
    for label, u, v in zip(["grad_x", "grad_offset", "grad_mask", "grad_weight"], gb, gs):
        e = rel_err(u, v)
        check(f"large: one chunk vs chunks of 1, {label}", e < 2e-2, f"rel err {e:.2e}")
    del x, off, mask, gout, big, gb, gs
    torch.cuda.empty_cache()
    cfg = Cfg(workspace=1)
    x, off, mask, w, gout = conv_inputs(1, 256, 1024, 1024, 16, 1, 1, cfg, True, dtype, seed=6)
    xs = x.expand(9, -1, -1, -1).contiguous()  # 2.4e9 elements
    xs[8].normal_()
    offs, masks, gouts = (a.expand(9, -1, -1, -1).contiguous() for a in (off, mask, gout))
    out = pdcn_forward(xs, offs, masks, w, cfg)
    gx = pdcn_backward(xs, offs, masks, w, gouts, cfg)[0]
    ref = fwd_bwd(tv, xs[8:], offs[8:], masks[8:], w, gouts[8:], cfg)
    torch.cuda.synchronize()
    check(f"large: x of {xs.numel() / 2**31:.2f}x2^31 elements, last image out",
          rel_err(out[8:], ref[0]) < 1e-2, f"rel err {rel_err(out[8:], ref[0]):.2e}")
    check("large: last image grad_x", rel_err(gx[8:], ref[1]) < 1e-2, f"rel err {rel_err(gx[8:], ref[1]):.2e}")
    del xs, offs, masks, gouts, out, gx
    torch.cuda.empty_cache()


# ---- RoI pooling ---------------------------------------------------------------------------

def roi_geom(x, k, ph, pw, sr, aligned, scale, gamma=0.1):
    n, c, h, w = x.shape
    max_grid = max(2 * max(h, w) + 2, 64)
    return lls([n, c, h, w, k, ph, pw, sr, max_grid, int(aligned)]), fls([scale, gamma])


def random_boxes(k, h, w, scale, gen):
    u = lambda: torch.rand(k, generator=gen, dtype=torch.float64)
    x1, y1 = (u() * 1.2 - 0.15) * w / scale, (u() * 1.2 - 0.15) * h / scale
    return torch.stack([x1, y1, x1 + (0.3 + u() * 0.8 * w) / scale, y1 + (0.3 + u() * 0.8 * h) / scale], 1)


class PdcnRoi(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, offset, boxes, batch, ph, pw, sr, aligned, scale, det):
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        b = boxes.to(acc).contiguous()
        gi, gf = roi_geom(x, boxes.shape[0], ph, pw, sr, aligned, scale)
        out = torch.empty(boxes.shape[0], x.shape[1], ph, pw, dtype=x.dtype, device=x.device)
        ok(LIB.pdcn_roi_forward(DT[x.dtype], gi, gf, p(x), p(b), p(batch), p(offset), p(out), stream()), "roi fwd")
        ctx.save_for_backward(x, offset, b, batch)
        ctx.args = (ph, pw, sr, aligned, scale, det)
        return out

    @staticmethod
    def backward(ctx, gout):
        x, offset, b, batch = ctx.saved_tensors
        ph, pw, sr, aligned, scale, det = ctx.args
        gi, gf = roi_geom(x, b.shape[0], ph, pw, sr, aligned, scale)
        d = DT[x.dtype]
        sb = LIB.pdcn_roi_scratch_bytes(d, gi, gf, int(det))
        scratch = torch.empty(max(sb // 4, 1), dtype=torch.float32, device=x.device)
        gx = torch.empty_like(x)
        go = torch.empty_like(offset) if offset is not None else None
        ok(LIB.pdcn_roi_backward(d, gi, gf, p(gout.contiguous()), p(x), p(b), p(batch), p(offset), p(gx),
                                 p(go), p(scratch) if sb > 0 else None, int(det), stream()), "roi bwd")
        return gx, go, None, None, None, None, None, None, None, None


def roi_accuracy():
    gen = torch.Generator().manual_seed(11)
    for ph, pw, sr, aligned, scale in [(7, 7, -1, True, 0.25), (2, 3, 2, False, 0.5)]:
        n, c, h, w, per_image = 3, 16, 25, 23, [5, 0, 7]
        x64 = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64).to(DEV)
        boxes = random_boxes(sum(per_image), h, w, scale, gen).to(DEV)
        batch = torch.tensor(sum(([i] * k for i, k in enumerate(per_image)), []), dtype=torch.int32, device=DEV)
        tv_boxes = torch.cat([batch[:, None].double(), boxes], 1)
        gout64 = torch.randn(boxes.shape[0], c, ph, pw, generator=gen, dtype=torch.float64).to(DEV)
        for dtype in DTYPES:
            for det in (False, True):
                for use_offset in (False, True):
                    x = x64.to(dtype).detach().clone().requires_grad_(True)
                    off = torch.zeros(boxes.shape[0], 2, ph, pw, dtype=dtype, device=DEV) if use_offset else None
                    out = PdcnRoi.apply(x, off, boxes, batch, ph, pw, sr, aligned, scale, det)
                    out.backward(gout64.to(dtype))
                    xr = x.detach().double().requires_grad_(True)
                    ref = tv_roi_align(xr, tv_boxes, (ph, pw), scale, sr, aligned)
                    ref.backward(gout64.to(dtype).double())
                    tol = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}[dtype]
                    tag = f"roi {ph}x{pw} sr{sr} {'aligned' if aligned else 'unaligned'} {str(dtype)[6:]} " \
                          f"{'det' if det else 'atomic'} {'zero offset' if use_offset else 'no offset'}"
                    check(tag + " forward vs torchvision", rel_err(out, ref) <= tol, f"{rel_err(out, ref):.2e}")
                    check(tag + " grad x vs torchvision", rel_err(x.grad, xr.grad) <= 4 * tol,
                          f"{rel_err(x.grad, xr.grad):.2e}")
    # offset gradient: finite differences in float64 (no reference implementation at hand)
    x = torch.randn(1, 3, 9, 9, generator=gen, dtype=torch.float64).to(DEV)
    boxes = torch.tensor([[1.3, 0.7, 6.2, 7.9], [0.2, 2.1, 8.6, 5.3], [3.3, 3.1, 4.4, 4.6]], dtype=torch.float64, device=DEV)
    batch = torch.zeros(3, dtype=torch.int32, device=DEV)
    off = (torch.rand(3, 2, 2, 2, generator=gen, dtype=torch.float64) - 0.5).to(DEV).requires_grad_(True)
    xg = x.clone().requires_grad_(True)
    fn = lambda xx, oo: PdcnRoi.apply(xx, oo, boxes, batch, 2, 2, 2, True, 1.0, False)
    check("roi gradcheck (x, offset) float64", torch.autograd.gradcheck(
        fn, (xg, off), eps=1e-6, atol=1e-6, nondet_tol=1e-12, raise_exception=False))


class PdcnPsRoi(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, offset, boxes, batch, oc, ph, pw, part, groups, S, scale, ts, det):
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        b = boxes.to(acc).contiguous()
        n, cin, h, w = x.shape
        gi, gf = lls([n, cin, h, w, b.shape[0], oc, ph, pw, part, part, groups, S]), fls([scale, ts])
        out = torch.empty(b.shape[0], oc, ph, pw, dtype=x.dtype, device=x.device)
        ok(LIB.pdcn_psroi_forward(DT[x.dtype], gi, gf, p(x), p(b), p(batch), p(offset), p(out), stream()), "psroi fwd")
        ctx.save_for_backward(x, offset, b, batch)
        ctx.g, ctx.det = (gi, gf), det
        return out

    @staticmethod
    def backward(ctx, gout):
        x, offset, b, batch = ctx.saved_tensors
        gi, gf = ctx.g
        d = DT[x.dtype]
        sb = LIB.pdcn_psroi_scratch_bytes(d, gi, gf, int(ctx.det))
        scratch = torch.empty(max(sb // 4, 1), dtype=torch.float32, device=x.device)
        gx = torch.empty_like(x)
        go = torch.empty_like(offset) if offset is not None else None
        ok(LIB.pdcn_psroi_backward(d, gi, gf, p(gout.contiguous()), p(x), p(b), p(batch), p(offset), p(gx),
                                   p(go), p(scratch) if sb > 0 else None, int(ctx.det), stream()), "psroi bwd")
        return gx, go, None, None, None, None, None, None, None, None, None, None, None


def psroi_accuracy():
    gen = torch.Generator().manual_seed(13)
    oc, ph, pw, part, groups, S = 2, 2, 2, 2, 2, 2
    x = torch.randn(1, oc * ph * pw, 8, 9, generator=gen, dtype=torch.float64).to(DEV).requires_grad_(True)
    boxes = torch.tensor([[1.0, 1.0, 6.0, 5.0], [0.0, 2.0, 7.0, 7.0]], dtype=torch.float64, device=DEV)
    batch = torch.zeros(2, dtype=torch.int32, device=DEV)
    off = (torch.rand(2, 2 * groups, part, part, generator=gen, dtype=torch.float64) - 0.5).to(DEV).requires_grad_(True)
    for det in (False, True):
        fn = lambda xx, oo: PdcnPsRoi.apply(xx, oo, boxes, batch, oc, ph, pw, part, groups, S, 1.0, 0.1, det)
        check(f"psroi gradcheck (x, offset) float64 {'det' if det else 'atomic'}",
              torch.autograd.gradcheck(fn, (x, off), eps=1e-6, atol=1e-6, nondet_tol=1e-12,
                                       raise_exception=False))


# ---- timing --------------------------------------------------------------------------------

def timed(fn, warmup=2, iters=10, budget_s=1.5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times, start = [], time.time()
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
        if time.time() - start > budget_s:
            break
    times.sort()
    return times[len(times) // 2]


def bench(deadline_s=150.0):
    rows, start = [], time.time()
    shapes = [("r50 s2 56x56", (16, 64, 56, 56, 64)), ("r50 s3 28x28", (16, 128, 28, 28, 128)),
              ("r50 s4 14x14", (16, 256, 14, 14, 256)), ("r50 s5 7x7", (16, 512, 7, 7, 512))]
    for name, (n, c, h, w, cout) in shapes:
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            for impl, ws, det in [("pdcn 64MiB", 64 << 20, False), ("pdcn 1GiB", 1 << 30, False),
                                  ("pdcn 64MiB det", 64 << 20, True), ("torchvision", None, False)]:
                if time.time() - start > deadline_s:
                    print("  bench deadline reached: skipping the rest")
                    break
                cfg = Cfg(pad=1, workspace=ws or 1, det=det)
                x, off, mask, wt, gout = conv_inputs(n, c, h, w, cout, 3, 3, cfg, True, dtype)
                fn = tv if impl == "torchvision" else ours
                leaves = [a.requires_grad_(True) for a in (x, off, mask, wt)]
                try:
                    with torch.no_grad():
                        f = timed(lambda: fn(*leaves, cfg))
                    fb = timed(lambda: fn(*leaves, cfg).backward(gout), warmup=1, iters=5)
                except RuntimeError as exc:  # e.g. torchvision without bfloat16
                    f = fb = float("nan")
                    print(f"  {impl} {name} {dtype}: {str(exc)[:80]}")
                rows.append(dict(op="deform_conv2d v2 3x3", shape=name, dtype=str(dtype)[6:], impl=impl,
                                 fwd_ms=f, fwd_bwd_ms=fb))
                print(f"BENCH conv {name:14s} {str(dtype)[6:]:8s} {impl:16s} fwd {f:8.3f} ms  fwd+bwd {fb:8.3f} ms",
                      flush=True)
    gen = torch.Generator().manual_seed(1)
    n, c, h, w, k, scale = 2, 256, 64, 64, 1024, 1 / 16
    for dtype in (torch.float32, torch.float16):
        x = torch.randn(n, c, h, w, generator=gen).to(DEV, dtype).requires_grad_(True)
        boxes = random_boxes(k, h, w, scale, gen).to(DEV)
        batch = torch.repeat_interleave(torch.arange(n, dtype=torch.int32), k // n).to(DEV)
        tvb = torch.cat([batch[:, None].to(boxes.dtype), boxes], 1).to(dtype)
        gout = torch.randn(k, c, 7, 7, generator=gen).to(DEV, dtype)
        off = torch.zeros(k, 2, 7, 7, dtype=dtype, device=DEV, requires_grad=True)
        cands = [("pdcn atomic", lambda: PdcnRoi.apply(x, off, boxes, batch, 7, 7, 2, True, scale, False)),
                 ("pdcn det", lambda: PdcnRoi.apply(x, off, boxes, batch, 7, 7, 2, True, scale, True)),
                 ("torchvision roi_align", lambda: tv_roi_align(x, tvb, (7, 7), scale, 2, True))]
        for impl, fn in cands:
            with torch.no_grad():
                f = timed(fn)
            fb = timed(lambda: fn().backward(gout), iters=5)
            rows.append(dict(op="deform_roi_pool 7x7 K=1024", shape=f"{n}x{c}x{h}x{w}", dtype=str(dtype)[6:],
                             impl=impl, fwd_ms=f, fwd_bwd_ms=fb))
            print(f"BENCH roi  {str(dtype)[6:]:8s} {impl:22s} fwd {f:8.3f} ms  fwd+bwd {fb:8.3f} ms", flush=True)
    RESULTS["bench"] = rows


def conv_weight_grad_over_chunks():
    """The weight gradient of a batch in many chunks: float16/bfloat16 sum the chunks in
    float32 and round once, so the result is the float64 reference to the final rounding
    (summing in the half type would drift by many ulps over 16 chunks)."""
    cfg = Cfg(pad=1, chunk=1)
    for dtype in DTYPES:
        inp = conv_inputs(16, 8, 12, 12, 8, 3, 3, cfg, True, dtype, seed=21)
        inp[4] = (inp[4].double().abs() + 1.0).to(dtype)  # a positive grad_out: a long sum
        ref = pdcn_backward(*[a.double() for a in inp[:4]], inp[4].double(), Cfg(pad=1))[3]
        got = pdcn_backward(*inp[:4], inp[4], cfg)[3]
        tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2e-3,
               torch.bfloat16: 1.6e-2}[dtype]
        e = rel_err(got, ref)
        check(f"conv weight grad over 16 chunks {str(dtype)[6:]}", e <= tol,
              f"rel err {e:.2e} (tol {tol:.1e})")


def roi_batch_indices():
    """roi_batch_from_counts: the image of every box from boxes_num on the device."""
    cases = [([5, 0, 7], 12, [0] * 5 + [2] * 7), ([2, 1], 5, [0, 0, 1, -1, -1]),
             ([-3, 2], 3, [1, 1, -1])]
    for counts, k, want in cases:
        for dtype in (torch.int32, torch.int64):
            c = torch.tensor(counts, dtype=dtype, device=DEV)
            got = torch.full((k,), 12345, dtype=torch.int32, device=DEV)
            ok(LIB.pdcn_roi_batch_from_counts(p(c), int(dtype == torch.int64), len(counts), k,
                                              p(got), stream()), "roi_batch_from_counts")
            sync()
            check(f"roi batch indices {counts} K={k} {str(dtype)[6:]}", got.tolist() == want,
                  str(got.tolist()))
    # boxes that boxes_num leaves uncovered pool to zero
    x = torch.randn(1, 3, 8, 8, dtype=torch.float32, device=DEV)
    boxes = torch.tensor([[1.0, 1.0, 6.0, 6.0]] * 3, dtype=torch.float32, device=DEV)
    batch = torch.tensor([0, -1, -1], dtype=torch.int32, device=DEV)
    out = PdcnRoi.apply(x, None, boxes, batch, 2, 2, 2, True, 1.0, False)
    check("roi uncovered boxes pool to zero", bool((out[1:] == 0).all()) and bool((out[0] != 0).any()))


def reference_vs_torchvision():
    """reference.py (the CPU mock's reference) against torchvision, float64."""
    if torchvision is None:
        return
    cfg = Cfg(stride=2, pad=1, dil=2, groups=2, dg=2)
    x, off, mask, w, _ = conv_inputs(2, 8, 11, 10, 6, 3, 3, cfg, True, torch.float64, seed=9)
    a = torchvision.ops.deform_conv2d(x, off, w, None, cfg.stride, cfg.pad, cfg.dil, mask)
    b = reference.deform_conv2d(x, off, w, None, cfg.stride, cfg.pad, cfg.dil, mask)
    check("reference.deform_conv2d vs torchvision float64", rel_err(b, a) < 1e-12,
          f"{rel_err(b, a):.2e}")
    gen = torch.Generator().manual_seed(5)
    xr = torch.randn(2, 4, 13, 12, generator=gen, dtype=torch.float64).to(DEV)
    boxes = random_boxes(6, 13, 12, 0.5, gen).to(DEV)
    rois = torch.cat([torch.tensor([0, 0, 0, 1, 1, 1.0], dtype=torch.float64, device=DEV)[:, None],
                      boxes], 1)
    for sr, aligned in ((-1, True), (2, False)):
        a = torchvision.ops.roi_align(xr, rois, (3, 2), 0.5, sr, aligned)
        b = reference.roi_align(xr, rois, (3, 2), 0.5, sr, aligned)
        check(f"reference.roi_align vs torchvision float64 sr{sr} aligned={aligned}",
              rel_err(b, a) < 1e-12, f"{rel_err(b, a):.2e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--out", default=".")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--cpu-mock", action="store_true",
                    help="harness self-test on CPU with cpu_shim.cc (float32/float64, no large/bench)")
    a = ap.parse_args()
    global DEV, DTYPES
    if a.cpu_mock:
        DEV, DTYPES = torch.device("cpu"), (torch.float64, torch.float32)
        a.skip_large = a.skip_bench = True
    load(a.lib)
    torch.backends.cuda.matmul.allow_tf32 = False  # Paddle's cuBLAS defaults: fp32 compute
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    where = torch.cuda.get_device_name() if DEV.type == "cuda" else "CPU (mock kernels)"
    tv_version = torchvision.__version__ if torchvision is not None else "absent (reference.py)"
    print(f"torch {torch.__version__} torchvision {tv_version} on {where}")
    steps = [reference_vs_torchvision, conv_accuracy, conv_weight_grad_over_chunks,
             conv_streams_and_empty, roi_batch_indices, roi_accuracy, psroi_accuracy]
    if not a.skip_large:
        steps.append(conv_large)
    if not a.skip_bench:
        steps.append(bench)
    for step in steps:
        t0 = time.time()
        try:
            step()
        except Exception as exc:  # one broken step must not hide the others
            check(f"{step.__name__} raised", False, f"{type(exc).__name__}: {exc}"[:300])
        print(f"-- {step.__name__}: {time.time() - t0:.1f} s", flush=True)
    with open(os.path.join(a.out, "gpu_validate.json"), "w") as f:
        json.dump(RESULTS, f, indent=1)
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
