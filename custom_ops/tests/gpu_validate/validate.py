"""GPU validation and benchmark of paddle_dcn's framework-neutral CUDA kernels, no Paddle needed.

The kernels are called through ctypes (pdcn_shim.cu); the chunk loop and the GEMMs of
custom_ops/paddle/deform_conv_op.cc are re-done here with torch.bmm in place of Paddle's matmul,
so the whole deform_conv2d algorithm (groups, chunks, weight-gradient accumulation in the
accumulation type) is checked against torchvision.ops.deform_conv2d, and deform_roi_pool against
torchvision.ops.roi_align. Prints one PASS/FAIL line per check and 'N passed, M failed' at the end
(exit 1 on a failure); writes gpu_validate.json after every step (partial results survive a kill).
    python3 validate.py --lib libpdcn_shim.so --out DIR [--skip-bench] [--skip-large] [--budget-s S]
    python3 validate.py --cpu-mock --lib libpdcn_cpu_shim.so --out DIR   (cpu_shim.cc, no GPU)
--cpu-mock: every check kind on CPU at reduced sizes, float64/float32 only, with the pure-torch
references of reference.py in place of torchvision (which need not be installed).
"""
import argparse
import ctypes
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402  (pure-torch deform_conv2d / roi_align)

tv_deform_conv2d = tv_roi_align = None  # torchvision's, or reference's under --cpu-mock (main)
MOCK = False

DEV = torch.device("cuda")
DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
DT = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
RESULTS = {"passed": 0, "failed": 0, "checks": [], "bench": [], "steps": {}, "env": {}}
OUT_DIR = "."
LIB = None
VP, LL, I, F = ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int, ctypes.c_float


def load(path):
    global LIB
    LIB = ctypes.CDLL(path)
    llp, fp = ctypes.POINTER(LL), ctypes.POINTER(F)
    sig = {
        "pdcn_error_string": (ctypes.c_char_p, [I]),
        "pdcn_is_cuda": (I, []),
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
        "pdcn_aggregate_scratch_bytes": (LL, [I, llp, ctypes.c_double, I]),
        "pdcn_aggregate_forward": (I, [I, llp, ctypes.c_double, VP, VP, VP, VP, VP]),
        "pdcn_aggregate_backward": (I, [I, llp, ctypes.c_double, VP, VP, VP, VP, VP, VP, VP, VP, I, VP]),
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


def empty_cache():
    if DEV.type == "cuda":
        torch.cuda.empty_cache()


def lls(vals):
    return (LL * len(vals))(*[int(v) for v in vals])


def fls(vals):
    return (F * len(vals))(*[float(v) for v in vals])


def ok(rc, what):
    if rc != 0:
        name = LIB.pdcn_error_string(rc)
        raise RuntimeError(f"{what}: status {rc} ({name.decode() if name else '?'})")


def scratch_buffer(nbytes, device):
    """nbytes of device memory at a 256-byte aligned address (None for 0), as the kernels need.
    Returns (tensor keeping it alive, pointer)."""
    if nbytes <= 0:
        return None, None
    buf = torch.empty(nbytes + 256, dtype=torch.uint8, device=device)
    pad = (-buf.data_ptr()) % 256
    return buf, buf.data_ptr() + pad


def save_results():
    with open(os.path.join(OUT_DIR, "gpu_validate.json"), "w") as f:
        json.dump(RESULTS, f, indent=1)


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


def choose_chunk(g, elem_bytes, cfg, d=0):
    """deform_conv_op.cc choose_chunk: columns plus col2im's per-image scratch fit the workspace."""
    n, c, kh, kw, ho, wo = g[0], g[1], g[7], g[8], g[5], g[6]
    if cfg.chunk:
        return max(1, min(n, cfg.chunk))
    scratch = LIB.pdcn_col2im_scratch_bytes(d, lls(g), 1, int(cfg.det))
    per_image = max(1, c * kh * kw * ho * wo * elem_bytes + scratch)
    return max(1, min(n, max(1, cfg.workspace // per_image)))


def pdcn_forward(x, offset, mask, weight, cfg):
    g, ga = geometry(x, weight, cfg)
    n, c, cout, ho, wo, kh, kw, G = g[0], g[1], g[4], g[5], g[6], g[7], g[8], cfg.groups
    d, hw, rows = DT[x.dtype], ho * wo, c * kh * kw
    out = torch.empty(n, cout, ho, wo, dtype=x.dtype, device=x.device)
    if n == 0:
        return out
    chunk = choose_chunk(g, x.element_size(), cfg, d)
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


HALF = (torch.float16, torch.bfloat16)
GAMMA_F32 = float(torch.tensor(0.1, dtype=torch.float32))  # gamma is a float32 attribute


def pdcn_backward(x, offset, mask, weight, grad_out, cfg, weight_acc="binding"):
    """The binding's backward. Weight gradient over chunks, as deform_conv_op.cc: float16/bfloat16
    sum the chunks' products (each in T) in a float32 accumulator (accumulate) and round once
    (convert_from_acc); float32/float64: the first chunk writes grad_w, later ones accumulate.
    weight_acc="half_sum": the former scheme (running sum in T), for the accumulation check."""
    g, ga = geometry(x, weight, cfg)
    n, c, cout, ho, wo, kh, kw, G = g[0], g[1], g[4], g[5], g[6], g[7], g[8], cfg.groups
    d, hw, rows = DT[x.dtype], ho * wo, c * kh * kw
    grad_x, grad_offset = torch.empty_like(x), torch.empty_like(offset)
    grad_mask = torch.empty_like(mask) if mask is not None else None
    grad_w3 = torch.zeros(G, cout // G, rows // G, dtype=x.dtype, device=x.device)
    if n > 0:
        chunk = choose_chunk(g, x.element_size(), cfg, d)
        columns = torch.empty(rows * chunk * hw, dtype=x.dtype, device=x.device)
        gathered = torch.empty(cout * chunk * hw, dtype=x.dtype, device=x.device)
        gcols_buf = torch.empty(rows * chunk * hw, dtype=x.dtype, device=x.device)
        w3 = weight.reshape(G, cout // G, rows // G)
        # col2im scratch: sized for the full chunk once, 256-byte aligned, kept for the call
        _keep, scratch = scratch_buffer(LIB.pdcn_col2im_scratch_bytes(d, ga, chunk, int(cfg.det)),
                                        x.device)
        acc = None
        if x.dtype in HALF and weight_acc == "binding":
            acc = torch.zeros(grad_w3.numel(), dtype=torch.float32, device=x.device)
        for n0 in range(0, n, chunk):
            b = min(chunk, n - n0)
            ok(LIB.pdcn_im2col(d, ga, p(x), p(offset), p(mask), p(columns), n0, b, stream()), "im2col")
            ok(LIB.pdcn_output_to_columns(d, ga, p(grad_out), p(gathered), n0, b, stream()), "o2c")
            cols = columns[: rows * b * hw].view(G, rows // G, b * hw)
            gout = gathered[: cout * b * hw].view(G, cout // G, b * hw)
            if acc is not None:  # product in T, summed in float32
                prod = torch.bmm(gout, cols.transpose(1, 2))
                ok(LIB.pdcn_accumulate(d, p(acc), p(prod), prod.numel(), stream()), "accumulate")
            elif n0 == 0:
                torch.bmm(gout, cols.transpose(1, 2), out=grad_w3)
            elif weight_acc == "half_sum":  # T += T (rounded to T after every chunk)
                grad_w3 += torch.bmm(gout, cols.transpose(1, 2))
            else:  # float32/float64: accumulate in T itself (acc_t<T> = T)
                prod = torch.bmm(gout, cols.transpose(1, 2))
                ok(LIB.pdcn_accumulate(d, p(grad_w3), p(prod), prod.numel(), stream()), "accumulate")
            gcols = gcols_buf[: rows * b * hw].view(G, rows // G, b * hw)
            torch.bmm(w3.transpose(1, 2), gout, out=gcols)
            ok(LIB.pdcn_coord_grad(d, ga, p(gcols), p(x), p(offset), p(mask), p(grad_offset),
                                   p(grad_mask), n0, b, stream()), "coord_grad")
            ok(LIB.pdcn_col2im(d, ga, p(gcols), p(offset), p(mask), p(grad_x), scratch, n0, b,
                               int(cfg.det), stream()), "col2im")
        if acc is not None:
            ok(LIB.pdcn_convert_from_acc(d, p(acc), p(grad_w3), grad_w3.numel(), stream()),
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


def conv_weight_grad_accumulation():
    """Many chunks (chunk=1, 32 images, positive values): the weight gradient of float16 summed
    over chunks in float32 and rounded once matches float64 to float16 rounding of the final value;
    the former running sum in float16 is reported beside it (it drifts by ~1.6e-3 here)."""
    dtype = torch.float16 if not MOCK else torch.float32  # the CPU drivers have no half types
    tol = 1e-3 if dtype == torch.float16 else 1e-5
    cfg = Cfg(pad=1, chunk=1)
    gen = torch.Generator(device=DEV.type).manual_seed(21)
    u = lambda *sh: torch.rand(*sh, generator=gen, dtype=torch.float64, device=DEV)
    n, c, h, w, cout = 32, 4, 6, 6, 8
    x, gout = u(n, c, h, w) + 0.5, u(n, cout, h, w) + 0.5
    off, mask = (u(n, 18, h, w) - 0.5) * 0.6, u(n, 9, h, w) * 0.5 + 0.5
    weight = u(cout, c, 3, 3) - 0.5
    inp = [a.to(dtype) for a in (x, off, mask, weight, gout)]
    want = fwd_bwd(tv, *[a.double() for a in inp], cfg)[4]
    got = pdcn_backward(*inp[:4], inp[4], cfg)[3]
    old = pdcn_backward(*inp[:4], inp[4], cfg, weight_acc="half_sum")[3]
    sync()
    elem = lambda a: ((a.double() - want).abs() / want.abs().clamp(min=1e-3)).max().item()
    e, e_old = elem(got), elem(old)
    check(f"conv weight gradient over {n} chunks, {str(dtype)[6:]}, vs float64",
          e <= tol, f"max elementwise rel err {e:.2e} (tol {tol:.0e}; running sum in "
          f"{str(dtype)[6:]}: {e_old:.2e})")


def reference_vs_torchvision():
    """The pure-torch references (reference.py, the --cpu-mock oracle) against torchvision in float64."""
    if MOCK:
        return
    import torchvision.ops as tvo
    errs = []
    cfg = Cfg(stride=2, pad=1, dil=2, groups=2, dg=2)
    inp = conv_inputs(2, 8, 13, 12, 6, 3, 2, cfg, True, torch.float64, seed=31)
    for mask_on in (True, False):
        args = inp[:2] + [inp[2] if mask_on else None] + inp[3:]
        a = fwd_bwd(lambda x, o, m, wt, c: reference.deform_conv2d(x, o, wt, None, c.stride, c.pad, c.dil, m), *args, cfg)
        b = fwd_bwd(lambda x, o, m, wt, c: tvo.deform_conv2d(x, o, wt, None, c.stride, c.pad, c.dil, m), *args, cfg)
        errs += [rel_err(u, v) for u, v in zip(a, b) if v is not None]
    gen = torch.Generator().manual_seed(32)
    x = torch.randn(2, 5, 17, 19, generator=gen, dtype=torch.float64).to(DEV)
    boxes = random_boxes(9, 17, 19, 0.5, gen).to(DEV)
    rois = torch.cat([torch.tensor([0] * 4 + [1] * 5, dtype=torch.float64, device=DEV)[:, None], boxes], 1)
    for sr, aligned in ((-1, True), (2, False), (0, False)):
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ra = reference.roi_align(xa, rois, (3, 4), 0.5, sr, aligned)
        rb = tvo.roi_align(xb, rois, (3, 4), 0.5, sr, aligned)
        g = torch.randn(ra.shape, generator=gen, dtype=torch.float64).to(DEV)
        ra.backward(g)
        rb.backward(g)
        errs += [rel_err(ra, rb), rel_err(xa.grad, xb.grad)]
    e = max(errs)
    check("reference.py vs torchvision float64 (deform_conv2d v1/v2 out+grads, roi_align out+grad)",
          e <= 1e-10, f"max rel err {e:.2e}")


def conv_large():
    """Flat indices beyond 2^31: one chunk of 4 images whose columns hold 2.4e9 elements, and an
    input of 2.4e9 elements whose last image starts beyond 2^31. --cpu-mock: the same code at
    small sizes (the index range itself is only reached on the GPU)."""
    dtype = torch.float16 if not MOCK else torch.float32
    side, c1, c2 = (1024, 64, 256) if not MOCK else (12, 4, 8)
    cfg_big = Cfg(pad=1, workspace=16 << 30)
    x, off, mask, w, gout = conv_inputs(4, c1, side, side, c1, 3, 3, cfg_big, True, dtype, seed=5)
    g, _ = geometry(x, w, cfg_big)
    cols = g[1] * 9 * g[5] * g[6] * choose_chunk(g, 2, cfg_big, DT[dtype])
    sync()
    t0 = time.time()
    big = pdcn_forward(x, off, mask, w, cfg_big)
    ref3 = tv(x[3:], off[3:], mask[3:], w, cfg_big)
    gb = pdcn_backward(x, off, mask, w, gout, cfg_big)
    gs = pdcn_backward(x, off, mask, w, gout, Cfg(pad=1, workspace=1))
    sync()
    check(f"large: {cols / 2**31:.2f}x2^31 column elements, image 3 vs torchvision",
          rel_err(big[3:], ref3) < 1e-2, f"rel err {rel_err(big[3:], ref3):.2e}, {time.time() - t0:.1f} s")
    for label, u, v in zip(["grad_x", "grad_offset", "grad_mask", "grad_weight"], gb, gs):
        e = rel_err(u, v)
        check(f"large: one chunk vs chunks of 1, {label}", e < 2e-2, f"rel err {e:.2e}")
    del x, off, mask, gout, big, gb, gs
    empty_cache()
    cfg = Cfg(workspace=1)
    x, off, mask, w, gout = conv_inputs(1, c2, side, side, 16, 1, 1, cfg, True, dtype, seed=6)
    xs = x.expand(9, -1, -1, -1).contiguous()  # 2.4e9 elements
    xs[8].normal_()
    offs, masks, gouts = (a.expand(9, -1, -1, -1).contiguous() for a in (off, mask, gout))
    out = pdcn_forward(xs, offs, masks, w, cfg)
    gx = pdcn_backward(xs, offs, masks, w, gouts, cfg)[0]
    ref = fwd_bwd(tv, xs[8:], offs[8:], masks[8:], w, gouts[8:], cfg)
    sync()
    check(f"large: x of {xs.numel() / 2**31:.2f}x2^31 elements, last image out",
          rel_err(out[8:], ref[0]) < 1e-2, f"rel err {rel_err(out[8:], ref[0]):.2e}")
    check("large: last image grad_x", rel_err(gx[8:], ref[1]) < 1e-2, f"rel err {rel_err(gx[8:], ref[1]):.2e}")
    del xs, offs, masks, gouts, out, gx
    empty_cache()


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
        _keep, scratch = scratch_buffer(LIB.pdcn_roi_scratch_bytes(d, gi, gf, int(det)), x.device)
        gx = torch.empty_like(x)
        go = torch.empty_like(offset) if offset is not None else None
        ok(LIB.pdcn_roi_backward(d, gi, gf, p(gout.contiguous()), p(x), p(b), p(batch), p(offset), p(gx),
                                 p(go), scratch, int(det), stream()), "roi bwd")
        return gx, go, None, None, None, None, None, None, None, None


def roi_batch_from_counts(counts, num_rois):
    """The binding's device-side image index of every box (int32 [K]; -1 beyond the counts)."""
    batch = torch.empty(num_rois, dtype=torch.int32, device=counts.device)
    ok(LIB.pdcn_roi_batch_from_counts(p(counts), int(counts.dtype == torch.int64), counts.numel(),
                                      num_rois, p(batch), stream()), "roi_batch_from_counts")
    return batch


def roi_batch_checks():
    for dt in (torch.int32, torch.int64):
        got = roi_batch_from_counts(torch.tensor([5, 0, 7], dtype=dt, device=DEV), 12)
        want = [0] * 5 + [2] * 7
        check(f"roi_batch_from_counts [5, 0, 7] {str(dt)[6:]}", got.tolist() == want, str(got.tolist()))
    got = roi_batch_from_counts(torch.tensor([2, -1, 1], dtype=torch.int64, device=DEV), 5)
    check("roi_batch_from_counts [2, -1, 1] K=5 (short sum, negative count)",
          got.tolist() == [0, 0, 2, -1, -1], str(got.tolist()))
    # boxes beyond the counts' sum: zero output, no gradient (x and offset)
    gen = torch.Generator().manual_seed(12)
    n, c, h, w, k, ph = 2, 4, 11, 10, 6, 3
    counts = torch.tensor([2, 1], dtype=torch.int32, device=DEV)
    batch = roi_batch_from_counts(counts, k)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64).to(DEV)
    boxes = random_boxes(k, h, w, 1.0, gen).to(DEV)
    off = (torch.rand(k, 2, ph, ph, generator=gen, dtype=torch.float64) - 0.5).to(DEV)
    gout = torch.randn(k, c, ph, ph, generator=gen, dtype=torch.float64).to(DEV)
    for det in (False, True):
        xa, oa = x.clone().requires_grad_(True), off.clone().requires_grad_(True)
        out = PdcnRoi.apply(xa, oa, boxes, batch, ph, ph, 2, True, 1.0, det)
        out.backward(gout)
        xb, ob = x.clone().requires_grad_(True), off[:3].clone().requires_grad_(True)
        out3 = PdcnRoi.apply(xb, ob, boxes[:3], batch[:3].contiguous(), ph, ph, 2, True, 1.0, det)
        out3.backward(gout[:3])
        passed = (bool((out[3:] == 0).all()) and bool((oa.grad[3:] == 0).all())
                  and rel_err(out[:3], out3) < 1e-12 and rel_err(xa.grad, xb.grad) < 1e-12)
        check(f"roi boxes beyond the counts' sum: zero output and gradient ({'det' if det else 'atomic'})",
              passed, f"max |out| {out[3:].abs().max().item():.1e}, max |grad off| {oa.grad[3:].abs().max().item():.1e}")
    oc, pp = 2, 2
    xp = torch.randn(n, oc * pp * pp, h, w, generator=gen, dtype=torch.float64).to(DEV)
    offp = (torch.rand(k, 2, pp, pp, generator=gen, dtype=torch.float64) - 0.5).to(DEV)
    xa, oa = xp.clone().requires_grad_(True), offp.clone().requires_grad_(True)
    out = PdcnPsRoi.apply(xa, oa, boxes, batch, oc, pp, pp, pp, 1, 2, 1.0, 0.1, False)
    out.backward(torch.ones_like(out))
    xb = xp.clone().requires_grad_(True)
    out3 = PdcnPsRoi.apply(xb, offp[:3], boxes[:3], batch[:3].contiguous(), oc, pp, pp, pp, 1, 2, 1.0, 0.1, False)
    out3.backward(torch.ones_like(out3))
    check("psroi boxes beyond the counts' sum: zero output and gradient",
          bool((out[3:] == 0).all()) and bool((oa.grad[3:] == 0).all()) and rel_err(xa.grad, xb.grad) < 1e-12)


def roi_accuracy():
    gen = torch.Generator().manual_seed(11)
    for ph, pw, sr, aligned, scale in [(7, 7, -1, True, 0.25), (2, 3, 2, False, 0.5)]:
        n, c, h, w, per_image = 3, 16, 25, 23, [5, 0, 7]
        x64 = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64).to(DEV)
        boxes = random_boxes(sum(per_image), h, w, scale, gen).to(DEV)
        batch = roi_batch_from_counts(torch.tensor(per_image, dtype=torch.int64, device=DEV), sum(per_image))
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
    # non-zero offsets: against reference.deform_roi_pool (torchvision has no offsets)
    for ph, pw, sr, aligned, scale in [(3, 3, -1, True, 0.5), (2, 3, 2, False, 1.0)]:
        n, c, h, w, per_image = 2, 4, 13, 12, [3, 4]
        x64 = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64).to(DEV)
        boxes = random_boxes(sum(per_image), h, w, scale, gen).to(DEV)
        batch = roi_batch_from_counts(torch.tensor(per_image, dtype=torch.int32, device=DEV), sum(per_image))
        rois = torch.cat([batch[:, None].double(), boxes], 1)
        off64 = (torch.rand(boxes.shape[0], 2, ph, pw, generator=gen, dtype=torch.float64) - 0.5).to(DEV)
        gout64 = torch.randn(boxes.shape[0], c, ph, pw, generator=gen, dtype=torch.float64).to(DEV)
        for dtype in DTYPES:
            x = x64.to(dtype).detach().clone().requires_grad_(True)
            off = off64.to(dtype).detach().clone().requires_grad_(True)
            out = PdcnRoi.apply(x, off, boxes, batch, ph, pw, sr, aligned, scale, False)
            out.backward(gout64.to(dtype))
            # the reference sees the same (rounded) inputs
            xr, orf = x.detach().double().requires_grad_(True), off.detach().double().requires_grad_(True)
            ref = reference.deform_roi_pool(xr, rois, (ph, pw), orf, scale, sr, GAMMA_F32, aligned)
            ref.backward(gout64.to(dtype).double())
            tol = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 6e-2}[dtype]
            errs = [rel_err(out, ref), rel_err(x.grad, xr.grad), rel_err(off.grad, orf.grad)]
            check(f"roi {ph}x{pw} sr{sr} {'aligned' if aligned else 'unaligned'} {str(dtype)[6:]} random offset "
                  "out/grad x/grad offset vs reference", max(errs) <= tol,
                  " ".join(f"{e:.2e}" for e in errs) + f" (tol {tol:.0e})")
    # offset gradient: finite differences in float64
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
        _keep, scratch = scratch_buffer(LIB.pdcn_psroi_scratch_bytes(d, gi, gf, int(ctx.det)), x.device)
        gx = torch.empty_like(x)
        go = torch.empty_like(offset) if offset is not None else None
        ok(LIB.pdcn_psroi_backward(d, gi, gf, p(gout.contiguous()), p(x), p(b), p(batch), p(offset), p(gx),
                                   p(go), scratch, int(ctx.det), stream()), "psroi bwd")
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


class PdcnAggregate(torch.autograd.Function):
    """deform_aggregate through the shim; fused: ``offset`` is DCNv4's [N, Ho, Wo, S] tensor
    (weight None)."""

    @staticmethod
    def forward(ctx, value, offset, weight, kernel, stride, pad, dil, groups, scale, det):
        n, h, w, gc = value.shape
        kh, kw = kernel
        ho, wo = (h + 2 * pad - (dil * (kh - 1) + 1)) // stride + 1, (w + 2 * pad - (dil * (kw - 1) + 1)) // stride + 1
        fused = weight is None
        g = lls([n, h, w, groups, gc // groups, ho, wo, kh, kw, stride, stride, pad, pad, dil, dil,
                 offset.shape[3] if fused else 0])
        wt = offset if fused else weight
        out = torch.empty(n, ho, wo, gc, dtype=value.dtype, device=value.device)
        ok(LIB.pdcn_aggregate_forward(DT[value.dtype], g, scale, p(value), p(offset), p(wt), p(out), stream()),
           "aggregate fwd")
        ctx.save_for_backward(value, offset, wt)
        ctx.g, ctx.scale, ctx.det, ctx.fused = g, scale, det, fused
        return out

    @staticmethod
    def backward(ctx, gout):
        value, offset, wt = ctx.saved_tensors
        d = DT[value.dtype]
        _keep, scratch = scratch_buffer(LIB.pdcn_aggregate_scratch_bytes(d, ctx.g, ctx.scale, int(ctx.det)),
                                        value.device)
        gv = torch.empty_like(value)
        # As the binding: the fused tensor zeroed (its padding is never written), the separate
        # ones unset; NaN here, so an entry the kernels miss shows.
        goff = torch.zeros_like(offset) if ctx.fused else torch.full_like(offset, float("nan"))
        gw = goff if ctx.fused else torch.full_like(wt, float("nan"))
        ok(LIB.pdcn_aggregate_backward(d, ctx.g, ctx.scale, p(value), p(offset), p(wt), p(gout.contiguous()), p(gv),
                                       p(goff), p(gw), scratch, int(ctx.det), stream()), "aggregate bwd")
        return gv, goff, (None if ctx.fused else gw), None, None, None, None, None, None, None


def aggregate_accuracy():
    """DCNv3/v4 core against InternImage's grid_sample formulation (reference.py), every dtype,
    atomic and deterministic, separate and fused (DCNv4) layouts; gradcheck in float64."""
    gen = torch.Generator().manual_seed(17)
    for n, h, w, groups, c, kernel, stride, pad, dil, scale in [(2, 9, 8, 3, 5, (3, 3), 1, 1, 1, 1.0),
                                                                 (2, 12, 11, 4, 16, (3, 3), 2, 1, 1, 0.5),
                                                                 (1, 14, 14, 8, 16, (3, 3), 1, 2, 2, 1.0)]:
        kh, kw = kernel
        ho, wo = (h + 2 * pad - (dil * (kh - 1) + 1)) // stride + 1, (w + 2 * pad - (dil * (kw - 1) + 1)) // stride + 1
        k = kh * kw
        v64 = torch.randn(n, h, w, groups * c, generator=gen, dtype=torch.float64).to(DEV)
        o64 = (torch.randn(n, ho, wo, groups * k * 2, generator=gen, dtype=torch.float64) * 2).to(DEV)
        w64 = torch.randn(n, ho, wo, groups * k, generator=gen, dtype=torch.float64).to(DEV)
        g64 = torch.randn(n, ho, wo, groups * c, generator=gen, dtype=torch.float64).to(DEV)
        for dtype in DTYPES:
            for det in (False, True):
                for fused in (False, True):
                    v = v64.to(dtype).detach().clone().requires_grad_(True)
                    o, wt = o64.to(dtype), w64.to(dtype)
                    if fused:
                        width = (groups * 3 * k + 7) // 8 * 8
                        om = torch.cat([o.reshape(n, ho, wo, groups, 2 * k), wt.reshape(n, ho, wo, groups, k)], -1)
                        om = torch.cat([om.reshape(n, ho, wo, -1),
                                        torch.zeros(n, ho, wo, width - groups * 3 * k, dtype=dtype, device=DEV)], -1)
                        om = om.detach().requires_grad_(True)
                        out = PdcnAggregate.apply(v, om, None, kernel, stride, pad, dil, groups, scale, det)
                    else:
                        o, wt = o.detach().clone().requires_grad_(True), wt.detach().clone().requires_grad_(True)
                        out = PdcnAggregate.apply(v, o, wt, kernel, stride, pad, dil, groups, scale, det)
                    out.backward(g64.to(dtype))
                    vr = v.detach().double().requires_grad_(True)
                    orf = o.detach().double().requires_grad_(True)
                    wr = wt.detach().double().requires_grad_(True)
                    ref = reference.deform_aggregate(vr, orf, wr, kernel, stride, pad, dil, groups, scale)
                    ref.backward(g64.to(dtype).double())
                    tol = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 6e-2}[dtype]
                    if fused:
                        split = om.grad[..., : groups * 3 * k].reshape(n, ho, wo, groups, 3 * k)
                        g_off = split[..., : 2 * k].reshape(orf.shape)
                        g_w = split[..., 2 * k:].reshape(wr.shape)
                        pad_ok = bool((om.grad[..., groups * 3 * k:] == 0).all())
                    else:
                        g_off, g_w, pad_ok = o.grad, wt.grad, True
                    errs = [rel_err(out, ref), rel_err(v.grad, vr.grad), rel_err(g_off, orf.grad), rel_err(g_w, wr.grad)]
                    check(f"aggregate G{groups} C{c} s{stride} d{dil} {str(dtype)[6:]} {'det' if det else 'atomic'} "
                          f"{'fused' if fused else 'separate'} out/grad value/offset/weight vs reference",
                          max(errs) <= 4 * tol and pad_ok, " ".join(f"{e:.2e}" for e in errs) + f" (tol {4 * tol:.0e})")
    v = torch.randn(1, 5, 5, 4, generator=gen, dtype=torch.float64).to(DEV).requires_grad_(True)
    o = (torch.randn(1, 5, 5, 2 * 9 * 2, generator=gen, dtype=torch.float64) * 1.3).to(DEV).requires_grad_(True)
    wt = torch.randn(1, 5, 5, 2 * 9, generator=gen, dtype=torch.float64).to(DEV).requires_grad_(True)
    fn = lambda vv, oo, ww: PdcnAggregate.apply(vv, oo, ww, (3, 3), 1, 1, 1, 2, 0.9, False)
    check("aggregate gradcheck (value, offset, weight) float64", torch.autograd.gradcheck(
        fn, (v, o, wt), eps=1e-6, atol=1e-6, nondet_tol=1e-12, raise_exception=False))


# ---- timing --------------------------------------------------------------------------------

def timed(fn, warmup=2, iters=10, budget_s=1.5):
    """Median ms of fn(): CUDA events on the GPU, perf_counter under --cpu-mock."""
    for _ in range(warmup):
        fn()
    sync()
    times, start = [], time.time()
    for _ in range(iters):
        if DEV.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        if time.time() - start > budget_s:
            break
    times.sort()
    return times[len(times) // 2]


BENCH_SHAPES = [("r50 s2 56x56", (16, 64, 56, 56, 64)), ("r50 s3 28x28", (16, 128, 28, 28, 128)),
                ("r50 s4 14x14", (16, 256, 14, 14, 256)), ("r50 s5 7x7", (16, 512, 7, 7, 512))]
MOCK_BENCH_SHAPES = [("mock 8x8", (2, 8, 8, 8, 8)), ("mock 4x4", (2, 16, 4, 4, 16))]
# atomic and deterministic at the same workspace, shape and dtype: their ratio is the cost of
# determinism; the 1 GiB workspace shows the chunking cost (the whole batch in one chunk).
BENCH_IMPLS = [("pdcn 64MiB", 64 << 20, False), ("pdcn 64MiB det", 64 << 20, True),
               ("pdcn 1GiB", 1 << 30, False), ("torchvision", None, False)]


def bench(deadline_s=150.0):
    rows, start = RESULTS["bench"], time.time()
    shapes = MOCK_BENCH_SHAPES if MOCK else BENCH_SHAPES
    dtypes = DTYPES[1:] if MOCK else (torch.float32, torch.float16, torch.bfloat16)
    reps = dict(warmup=1, iters=2) if MOCK else {}
    out_of_time = False
    for name, (n, c, h, w, cout) in shapes:
        for dtype in dtypes:
            per = {}
            for impl, ws, det in BENCH_IMPLS:
                if time.time() - start > deadline_s:
                    out_of_time = True
                    break
                cfg = Cfg(pad=1, workspace=ws or 1, det=det)
                x, off, mask, wt, gout = conv_inputs(n, c, h, w, cout, 3, 3, cfg, True, dtype)
                fn = tv if impl == "torchvision" else ours
                leaves = [a.requires_grad_(True) for a in (x, off, mask, wt)]
                try:
                    with torch.no_grad():
                        f = timed(lambda: fn(*leaves, cfg), **reps)
                    fb = timed(lambda: fn(*leaves, cfg).backward(gout), **dict(dict(warmup=1, iters=5), **reps))
                except RuntimeError as exc:  # e.g. torchvision without bfloat16
                    f = fb = float("nan")
                    print(f"  {impl} {name} {dtype}: {str(exc)[:80]}")
                per[impl] = fb
                rows.append(dict(op="deform_conv2d v2 3x3", shape=name, nchw=f"{n}x{c}x{h}x{w}",
                                 dtype=str(dtype)[6:], impl=impl, fwd_ms=f, fwd_bwd_ms=fb))
                print(f"BENCH conv {name:14s} {str(dtype)[6:]:8s} {impl:16s} fwd {f:8.3f} ms  fwd+bwd {fb:8.3f} ms",
                      flush=True)
                del x, off, mask, wt, gout, leaves
            if "pdcn 64MiB" in per and "pdcn 64MiB det" in per:
                r = per["pdcn 64MiB det"] / per["pdcn 64MiB"]
                RESULTS.setdefault("det_ratio", []).append(dict(shape=name, dtype=str(dtype)[6:], det_over_atomic=r))
                print(f"BENCH det/atomic {name} {str(dtype)[6:]}: {r:.2f}x", flush=True)
            save_results()
            if out_of_time:
                break
        if out_of_time:
            print("  bench deadline reached: skipping the rest")
            RESULTS["bench_truncated"] = True
            break
    empty_cache()
    gen = torch.Generator().manual_seed(1)
    n, c, h, w, k, scale = (2, 256, 64, 64, 1024, 1 / 16) if not MOCK else (2, 8, 16, 16, 32, 1 / 4)
    for dtype in ((torch.float32, torch.float16) if not MOCK else (torch.float32,)):
        if time.time() - start > deadline_s + 20:
            RESULTS["bench_truncated"] = True
            break
        x = torch.randn(n, c, h, w, generator=gen).to(DEV, dtype).requires_grad_(True)
        boxes = random_boxes(k, h, w, scale, gen).to(DEV)
        batch = roi_batch_from_counts(torch.tensor([k // n] * n, dtype=torch.int64, device=DEV), k)
        tvb = torch.cat([batch[:, None].to(boxes.dtype), boxes], 1).to(dtype)
        gout = torch.randn(k, c, 7, 7, generator=gen).to(DEV, dtype)
        off = torch.zeros(k, 2, 7, 7, dtype=dtype, device=DEV, requires_grad=True)
        cands = [("pdcn atomic", lambda: PdcnRoi.apply(x, off, boxes, batch, 7, 7, 2, True, scale, False)),
                 ("pdcn det", lambda: PdcnRoi.apply(x, off, boxes, batch, 7, 7, 2, True, scale, True)),
                 ("torchvision roi_align", lambda: tv_roi_align(x, tvb, (7, 7), scale, 2, True))]
        for impl, fn in cands:
            try:
                with torch.no_grad():
                    f = timed(fn, **reps)
                fb = timed(lambda: fn().backward(gout), **dict(dict(iters=5), **reps))
            except RuntimeError as exc:
                f = fb = float("nan")
                print(f"  {impl} roi {dtype}: {str(exc)[:80]}")
            rows.append(dict(op="deform_roi_pool 7x7 K=%d" % k, shape=f"{n}x{c}x{h}x{w}", dtype=str(dtype)[6:],
                             impl=impl, fwd_ms=f, fwd_bwd_ms=fb))
            print(f"BENCH roi  {str(dtype)[6:]:8s} {impl:22s} fwd {f:8.3f} ms  fwd+bwd {fb:8.3f} ms", flush=True)
    check("bench produced timings", any(r["fwd_bwd_ms"] == r["fwd_bwd_ms"] for r in rows),
          f"{len(rows)} rows{' (truncated at the deadline)' if RESULTS.get('bench_truncated') else ''}")


AGG_SHAPES = [("InternImage-T s1", (16, 56, 56, 64, 4)), ("InternImage-T s2", (16, 28, 28, 128, 8)),
              ("InternImage-T s3", (16, 14, 14, 256, 16)), ("InternImage-T s4", (16, 7, 7, 512, 32))]
MOCK_AGG_SHAPES = [("mock agg", (1, 6, 6, 16, 2))]


def aggregate_inputs(n, h, w, c, groups, dtype, seed=0):
    """3x3, stride 1, pad 1 inputs of the DCNv3/v4 core: value [N, H, W, C], offsets in pixels
    (sd 2), softmax-like weights; the fused DCNv4 tensor (offsets and weights interleaved per group,
    padded to a multiple of 8 as DCNv4 does); the DCNv2 comparison's NCHW inputs (C -> C, 3x3,
    deformable groups = G, mask)."""
    gen = torch.Generator(device=DEV.type).manual_seed(seed)
    t = lambda *s, scale=1.0: (torch.randn(*s, generator=gen, dtype=torch.float64, device=DEV) * scale).to(dtype)
    k = 9
    value = t(n, h, w, c)
    offset = t(n, h, w, groups * k * 2, scale=2.0)
    weight = torch.softmax(t(n, h, w, groups, k).double(), -1).reshape(n, h, w, groups * k).to(dtype)
    width = (groups * 3 * k + 7) // 8 * 8
    fused = torch.cat([offset.reshape(n, h, w, groups, 2 * k), weight.reshape(n, h, w, groups, k)], -1)
    fused = torch.cat([fused.reshape(n, h, w, -1), torch.zeros(n, h, w, width - groups * 3 * k, dtype=dtype,
                                                               device=DEV)], -1).contiguous()
    gout = t(n, h, w, c)
    return value, offset, weight, fused, gout


def bench_aggregate(deadline_s=60.0):
    """DCNv3/DCNv4 core (deform_aggregate) at InternImage-T's stage shapes, batch 16: ours with
    separate softmax weights (DCNv3's layout; atomic and deterministic) and with DCNv4's fused
    tensor, against InternImage's PyTorch core (dcnv3_core_pytorch: reference.deform_aggregate, the
    grid_sample formulation) and against our DCN v2 at the same shape (C -> C, 3x3, deformable
    groups = G, mask; the conv's GEMMs included, as a DCNv2 layer pays them)."""
    rows, start = RESULTS.setdefault("bench_aggregate", []), time.time()
    shapes = MOCK_AGG_SHAPES if MOCK else AGG_SHAPES
    dtypes = DTYPES[1:] if MOCK else (torch.float32, torch.float16, torch.bfloat16)
    reps = dict(warmup=1, iters=2) if MOCK else {}
    kernel = (3, 3)
    for name, (n, h, w, c, groups) in shapes:
        for dtype in dtypes:
            if time.time() - start > deadline_s:
                RESULTS["bench_aggregate_truncated"] = True
                print("  aggregate bench deadline reached: skipping the rest")
                return
            value, offset, weight, fused, gout = aggregate_inputs(n, h, w, c, groups, dtype)
            cfg2 = Cfg(pad=1, dg=groups)
            x2, off2, mask2, w2, gout2 = conv_inputs(n, c, h, w, c, 3, 3, cfg2, True, dtype)
            impls = [
                ("pdcn DCNv3", lambda: PdcnAggregate.apply(v_, o_, m_, kernel, 1, 1, 1, groups, 1.0, False), gout),
                ("pdcn DCNv3 det", lambda: PdcnAggregate.apply(v_, o_, m_, kernel, 1, 1, 1, groups, 1.0, True), gout),
                ("pdcn DCNv4 fused", lambda: PdcnAggregate.apply(v_, f_, None, kernel, 1, 1, 1, groups, 1.0, False),
                 gout),
                ("InternImage pytorch", lambda: reference.deform_aggregate(v_, o_, m_, kernel, 1, 1, 1, groups, 1.0),
                 gout),
                ("pdcn DCNv2", lambda: ours(x_, q_, k_, w_, cfg2), gout2),
            ]
            v_, o_, m_, f_ = [a.detach().clone().requires_grad_(True) for a in (value, offset, weight, fused)]
            x_, q_, k_, w_ = [a.detach().clone().requires_grad_(True) for a in (x2, off2, mask2, w2)]
            for impl, fn, g in impls:
                try:
                    with torch.no_grad():
                        f = timed(fn, **reps)
                    fb = timed(lambda: fn().backward(g), **dict(dict(warmup=1, iters=5), **reps))
                except RuntimeError as exc:  # e.g. grid_sample without bfloat16
                    f = fb = float("nan")
                    print(f"  {impl} {name} {dtype}: {str(exc)[:80]}")
                rows.append(dict(op="deform_aggregate 3x3", shape=name, nhwc=f"{n}x{h}x{w}x{c}", groups=groups,
                                 dtype=str(dtype)[6:], impl=impl, fwd_ms=f, fwd_bwd_ms=fb))
                print(f"BENCH agg {name:17s} {str(dtype)[6:]:8s} {impl:20s} fwd {f:8.3f} ms  fwd+bwd {fb:8.3f} ms",
                      flush=True)
            del value, offset, weight, fused, gout, x2, off2, mask2, w2, gout2, v_, o_, m_, f_, x_, q_, k_, w_
            save_results()
    empty_cache()
    check("aggregate bench produced timings", any(r["fwd_bwd_ms"] == r["fwd_bwd_ms"] for r in rows),
          f"{len(rows)} rows")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--out", default=".")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--budget-s", type=float, default=300.0,
                    help="wall-clock budget: later steps are skipped (and the bench cut short) to "
                         "finish and write gpu_validate.json within it")
    ap.add_argument("--cpu-mock", action="store_true",
                    help="harness self-test on CPU with cpu_shim.cc: float64/float32, reduced sizes, "
                         "reference.py in place of torchvision")
    a = ap.parse_args()
    global DEV, DTYPES, MOCK, OUT_DIR, tv_deform_conv2d, tv_roi_align
    t_start = time.time()
    OUT_DIR = a.out
    os.makedirs(OUT_DIR, exist_ok=True)
    if a.cpu_mock:
        MOCK, DEV, DTYPES = True, torch.device("cpu"), (torch.float64, torch.float32)
        tv_deform_conv2d, tv_roi_align = reference.deform_conv2d, reference.roi_align
        tv_version = "none (reference.py)"
    else:
        import torchvision
        from torchvision.ops import deform_conv2d as tvd, roi_align as tvr
        tv_deform_conv2d, tv_roi_align, tv_version = tvd, tvr, torchvision.__version__
    load(a.lib)
    if LIB.pdcn_is_cuda() != int(not MOCK):
        print("warning: --cpu-mock and the library disagree (pdcn_is_cuda = %d)" % LIB.pdcn_is_cuda())
    torch.backends.cuda.matmul.allow_tf32 = False  # Paddle's cuBLAS defaults: fp32 compute
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    where = torch.cuda.get_device_name() if DEV.type == "cuda" else "CPU (mock kernels)"
    RESULTS["env"] = dict(torch=torch.__version__, torchvision=tv_version, device=where, mock=MOCK,
                          cuda=torch.version.cuda, lib=os.path.basename(a.lib),
                          date=time.strftime("%Y-%m-%d %H:%M:%S"))
    print(f"torch {torch.__version__} torchvision {tv_version} on {where}")
    # (step, seconds it needs at least to be worth starting)
    steps = [(conv_accuracy, 5), (conv_weight_grad_accumulation, 2), (conv_streams_and_empty, 2),
             (roi_batch_checks, 2), (roi_accuracy, 5), (psroi_accuracy, 2), (aggregate_accuracy, 3),
             (reference_vs_torchvision, 2)]
    if not a.skip_large:
        steps.append((conv_large, 40 if not MOCK else 1))
    if not a.skip_bench:
        steps.append((bench, 30 if not MOCK else 1))
        steps.append((bench_aggregate, 15 if not MOCK else 1))
    for step, need in steps:
        left = a.budget_s - (time.time() - t_start)
        if left < need:
            check(f"{step.__name__} skipped", False, f"out of time budget ({left:.0f} s left)")
            continue
        t0 = time.time()
        try:
            if step is bench:
                step(deadline_s=max(10.0, min(150.0, left - 40.0)))
            elif step is bench_aggregate:
                step(deadline_s=max(5.0, min(60.0, left - 15.0)))
            else:
                step()
        except Exception as exc:  # one broken step must not hide the others
            check(f"{step.__name__} raised", False, f"{type(exc).__name__}: {exc}"[:300])
        sync()
        RESULTS["steps"][step.__name__] = round(time.time() - t0, 1)
        print(f"-- {step.__name__}: {time.time() - t0:.1f} s", flush=True)
        save_results()
    save_results()
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
