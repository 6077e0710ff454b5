"""deform_conv2d against Paddle's native op, finite differences and bad input."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from paddle_dcn.ops import (
    deform_conv2d, get_workspace_limit, images_per_chunk, set_workspace_limit,
    workspace_bytes_per_image)
from thread_helpers import assert_same_results_with_1_and_2_threads

TOLERANCE = {"float64": dict(rtol=1e-8, atol=1e-8), "float32": dict(rtol=1e-4, atol=1e-4)}


def make_inputs(n, c_in, h, w, c_out, kernel, stride=1, padding=0, dilation=1, groups=1,
                deformable_groups=1, dtype="float64", offset_scale=2.0, with_mask=True):
    """Random inputs of a consistent configuration (offsets avoid integer sample points)."""
    kh, kw = kernel
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    out_h = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    out_w = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    points = deformable_groups * kh * kw
    rng = np.random.default_rng(0)
    arrays = dict(
        x=rng.standard_normal((n, c_in, h, w)),
        offset=rng.standard_normal((n, 2 * points, out_h, out_w)) * offset_scale + 0.013,
        weight=rng.standard_normal((c_out, c_in // groups, kh, kw)) * 0.5,
        bias=rng.standard_normal((c_out,)),
        mask=rng.uniform(0.1, 1.0, (n, points, out_h, out_w)) if with_mask else None,
    )
    return {k: (None if v is None else paddle.to_tensor(v.astype(dtype), stop_gradient=False))
            for k, v in arrays.items()}


def run_both(inputs, **conv_args):
    """Output and gradients of ours and of paddle.vision.ops.deform_conv2d for one cotangent."""
    names = [k for k in ("x", "offset", "weight", "bias", "mask") if inputs[k] is not None]
    results = []
    for fn in (deform_conv2d, paddle.vision.ops.deform_conv2d):
        out = fn(inputs["x"], inputs["offset"], inputs["weight"], bias=inputs["bias"],
                 mask=inputs["mask"], **conv_args)
        cotangent = paddle.to_tensor(np.random.default_rng(1).standard_normal(out.shape))
        cotangent = cotangent.astype(out.dtype)
        grads = paddle.grad([out], [inputs[k] for k in names], [cotangent])
        results.append((out.numpy(), {k: g.numpy() for k, g in zip(names, grads)}))
    return results


CONFIGS = [
    # (n, c_in, h, w, c_out, kernel, stride, padding, dilation, groups, deformable_groups)
    (2, 4, 7, 6, 6, (3, 3), 1, 1, 1, 1, 1),
    (3, 4, 9, 8, 4, (3, 3), 2, 1, 1, 2, 2),
    (1, 6, 8, 9, 6, (3, 2), (1, 2), (0, 1), (2, 1), 3, 3),
    (2, 4, 10, 10, 8, (1, 1), 1, 0, 1, 1, 4),
    (2, 2, 6, 7, 4, (5, 3), 1, 2, (1, 2), 1, 2),
    (5, 3, 5, 5, 3, (3, 3), 1, 1, 1, 1, 1),
    # the CPU sweep's eight-lane runs: 16 channels per deformable group (a compiled width),
    # 12 and 20 (run-time widths: whole blocks of eight and a tail), and conv groups that
    # split a deformable group into two runs of 8
    (2, 16, 7, 6, 8, (3, 3), 1, 1, 1, 1, 1),
    (1, 24, 6, 7, 6, (3, 3), 1, 1, 1, 1, 2),
    (1, 40, 5, 6, 4, (3, 3), 2, 1, 1, 1, 2),
    (1, 16, 6, 6, 8, (3, 3), 1, 1, 1, 2, 1),
    # the CPU im2col's eight-pixel stencil blocks: output rows of 10 (stride 2: a block and a
    # tail of 2) and 17 pixels (two blocks and a tail of 1), dilation along the row
    (1, 4, 7, 19, 4, (3, 3), 2, 1, 1, 1, 1),
    (2, 3, 5, 17, 3, (3, 3), 1, (1, 2), (1, 2), 1, 1),
]


@pytest.mark.parametrize("with_mask", [True, False], ids=["v2", "v1"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"n{c[0]}c{c[1]}k{c[5]}s{c[6]}g{c[9]}dg{c[10]}")
def test_matches_paddle_native(config, with_mask, float_dtype):
    n, c_in, h, w, c_out, kernel, stride, padding, dilation, groups, dgroups = config
    inputs = make_inputs(n, c_in, h, w, c_out, kernel, stride, padding, dilation, groups, dgroups,
                         dtype=float_dtype, with_mask=with_mask)
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                deformable_groups=dgroups)
    (ours, our_grads), (ref, ref_grads) = run_both(inputs, **args)
    tol = TOLERANCE[float_dtype]
    np.testing.assert_allclose(ours, ref, **tol)
    assert set(our_grads) == set(ref_grads)
    for name in our_grads:
        np.testing.assert_allclose(our_grads[name], ref_grads[name], err_msg=name, **tol)
        assert np.abs(our_grads[name]).max() > 0, f"gradient of {name} is identically zero"


@pytest.mark.parametrize("width", [6, 18], ids=["w6", "w18"])
def test_far_outside_offsets_match_native(width):
    """Offsets that push many samples beyond the map (partly and wholly outside); width 18
    gives the CPU im2col whole eight-pixel stencil blocks."""
    inputs = make_inputs(2, 3, 6, width, 4, (3, 3), padding=1, offset_scale=6.0)
    (ours, our_grads), (ref, ref_grads) = run_both(inputs, padding=1)
    np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-8)
    for name in our_grads:
        np.testing.assert_allclose(our_grads[name], ref_grads[name], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("limit_images", [1, 2])
def test_chunked_batches_equal_unchunked(limit_images):
    """A workspace that holds 1 or 2 images: 5 images do not divide into chunks of 2."""
    inputs = make_inputs(5, 4, 6, 6, 4, (3, 3), padding=1)
    per_image = workspace_bytes_per_image(4, 9, 36, 1, 8)
    full = run_both(inputs, padding=1)[0]
    previous = get_workspace_limit()
    set_workspace_limit(per_image * limit_images + 7)
    try:
        assert images_per_chunk(5, per_image) == limit_images
        chunked = run_both(inputs, padding=1)[0]
    finally:
        set_workspace_limit(previous)
    np.testing.assert_allclose(chunked[0], full[0], rtol=1e-12, atol=1e-12)
    for name in full[1]:
        np.testing.assert_allclose(chunked[1][name], full[1][name], rtol=1e-12, atol=1e-12)


def test_out_channels_need_not_divide_by_deformable_groups():
    """C_out=3 with dg=2: Paddle refuses it, so compare with a 4-filter native conv's first 3."""
    inputs = make_inputs(2, 4, 6, 6, 3, (3, 3), padding=1, deformable_groups=2)
    ours = deform_conv2d(inputs["x"], inputs["offset"], inputs["weight"], inputs["bias"],
                         padding=1, deformable_groups=2, mask=inputs["mask"])
    weight4 = paddle.concat([inputs["weight"], paddle.zeros_like(inputs["weight"][:1])])
    bias4 = paddle.concat([inputs["bias"], paddle.zeros_like(inputs["bias"][:1])])
    ref = paddle.vision.ops.deform_conv2d(inputs["x"], inputs["offset"], weight4, bias4,
                                          padding=1, deformable_groups=2, mask=inputs["mask"])
    np.testing.assert_allclose(ours.numpy(), ref.numpy()[:, :3], rtol=1e-10, atol=1e-10)


def numeric_gradient(fn, tensor, eps=1e-6):
    """Central finite differences of the scalar fn() with respect to every element of tensor."""
    base = tensor.numpy().copy()
    flat = base.reshape(-1)
    grad = np.zeros_like(flat)
    for i in range(flat.size):
        for sign in (1, -1):
            trial = flat.copy()
            trial[i] += sign * eps
            tensor.set_value(trial.reshape(base.shape))
            grad[i] += sign * fn()
    tensor.set_value(base)
    return (grad / (2 * eps)).reshape(base.shape)


@pytest.mark.parametrize("with_mask", [True, False], ids=["v2", "v1"])
def test_gradients_match_finite_differences(with_mask):
    inputs = make_inputs(2, 4, 4, 6, 2, (2, 3), stride=1, padding=(1, 0), dilation=(1, 2),
                         groups=2, deformable_groups=2, with_mask=with_mask, offset_scale=1.5)
    cotangent = {}

    def loss_tensor():
        out = deform_conv2d(inputs["x"], inputs["offset"], inputs["weight"], inputs["bias"],
                            padding=(1, 0), dilation=(1, 2), groups=2, deformable_groups=2,
                            mask=inputs["mask"])
        if "value" not in cotangent:
            cotangent["value"] = paddle.to_tensor(np.random.default_rng(3).standard_normal(out.shape))
        return (out * cotangent["value"]).sum()

    names = [k for k in ("x", "offset", "weight", "bias", "mask") if inputs[k] is not None]
    analytic = paddle.grad([loss_tensor()], [inputs[k] for k in names])
    for name, grad in zip(names, analytic):
        numeric = numeric_gradient(lambda: float(loss_tensor()), inputs[name])
        np.testing.assert_allclose(grad.numpy(), numeric, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("width", [6, 18], ids=["w6", "w18"])
@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), -float("inf"), 1e30, 3e9, -3e9])
def test_non_finite_and_huge_offsets_give_zero_samples(bad_value, width):
    """Poisoned offsets must act like an offset far outside the map: zero sample, zero gradient
    (width 18: the CPU im2col's eight-pixel stencil blocks see them too)."""
    inputs = make_inputs(2, 3, 6, width, 4, (3, 3), padding=1)
    offset = inputs["offset"].numpy()
    poisoned = np.zeros(offset.shape, dtype=bool)
    poisoned[0, 4, 2:5, 1:4] = True  # y shift of kernel point 2
    poisoned[1, 9, :, 3] = True  # x shift of kernel point 4
    far = offset.copy()
    far[poisoned] = 1e4  # a plain out-of-map value that the native op also handles
    bad = offset.copy()
    bad[poisoned] = bad_value
    results = []
    for values in (bad, far):
        off = paddle.to_tensor(values, stop_gradient=False)
        out = deform_conv2d(inputs["x"], off, inputs["weight"], inputs["bias"], padding=1,
                            mask=inputs["mask"])
        grads = paddle.grad([out.sum()], [inputs["x"], inputs["mask"], off])
        results.append([out.numpy()] + [g.numpy() for g in grads])
    for got, want in zip(results[0], results[1]):
        assert np.isfinite(got).all()
        np.testing.assert_array_equal(got, want)
    native = paddle.vision.ops.deform_conv2d(inputs["x"], paddle.to_tensor(far), inputs["weight"],
                                             inputs["bias"], padding=1, mask=inputs["mask"])
    np.testing.assert_allclose(results[0][0], native.numpy(), rtol=1e-10, atol=1e-10)


# (c_in, deformable_groups, width): runs of 4 channels; one channel per group; the CPU sweep's
# compiled sixteen-channel width, with the im2col's eight-pixel stencil blocks (width 18).
NON_FINITE_CASES = [(4, 1, 7), (4, 4, 7), (16, 1, 18)]


@pytest.mark.parametrize("with_mask", [True, False], ids=["v2", "v1"])
@pytest.mark.parametrize("case", NON_FINITE_CASES, ids=["c4", "c1-per-group", "c16-w18"])
def test_a_non_finite_input_value_reaches_only_the_samples_that_weigh_it(case, with_mask):
    """A neighbour outside the map counts as zero whatever the input holds there (the plane
    kernels point it at index 0 of its plane, the channels-last ones at a zero pixel), so a
    non-finite x[n, c, 0, 0] must not reach every border sample. Forward at zero offsets: the
    non-finite outputs are exactly those of Paddle's own deform_conv2d (which multiplies the
    zero-weight in-map neighbours too, IEEE), and the others equal the clean input's. Backward,
    off the grid lines: offset and mask gradients that do not change when a marker is added at
    the bad pixels must come out as with the clean input."""
    c_in, dgroups, width = case
    # four output channels: Paddle's op wants C_out divisible by deformable_groups
    inputs = make_inputs(2, c_in, 6, width, 4, (3, 3), padding=1, deformable_groups=dgroups,
                         with_mask=with_mask)
    x = inputs["x"].numpy()
    clean, poisoned, marker = x.copy(), x.copy(), np.zeros_like(x)
    # pixel 0 (where the plane kernels point outside neighbours) and an inner one
    for y, col in [(0, 0), (3, width - 2)]:
        clean[0, :, y, col] = 0.0
        poisoned[0, ::2, y, col] = np.inf
        poisoned[0, 1::2, y, col] = np.nan
        marker[0, :, y, col] = 1.0
    weight = paddle.to_tensor(np.abs(inputs["weight"].numpy()) + 0.5)  # no cancelling infinities
    zero_offset = paddle.zeros(inputs["offset"].shape, "float64")
    ones = paddle.ones(inputs["mask"].shape, "float64") if with_mask else None

    def forward(op, v):
        return op(paddle.to_tensor(v), zero_offset, weight, padding=1,
                  deformable_groups=dgroups, mask=ones).numpy()

    got, want = forward(deform_conv2d, poisoned), forward(deform_conv2d, clean)
    seen = ~np.isfinite(forward(paddle.vision.ops.deform_conv2d, poisoned))
    assert seen.any() and (~seen).sum() > 2 * seen.sum()
    np.testing.assert_array_equal(~np.isfinite(got), seen)
    np.testing.assert_array_equal(got[~seen], want[~seen])

    cot = paddle.to_tensor(np.random.default_rng(3).standard_normal(got.shape))

    def coord_grads(v):
        off = inputs["offset"].detach()  # random, fractional: every in-map neighbour weighs
        off.stop_gradient = False
        wrt = [off]
        mask = None
        if with_mask:
            mask = inputs["mask"].detach()
            mask.stop_gradient = False
            wrt.append(mask)
        out = deform_conv2d(paddle.to_tensor(v), off, weight, padding=1,
                            deformable_groups=dgroups, mask=mask)
        return [g.numpy() for g in paddle.grad((out * cot).sum(), wrt)]

    for bad, base, probe in zip(coord_grads(poisoned), coord_grads(clean),
                                coord_grads(clean + marker)):
        depends = probe != base
        assert depends.any() and (~depends).sum() > depends.sum()
        np.testing.assert_array_equal(bad[~depends], base[~depends])


@pytest.mark.parametrize("case", NON_FINITE_CASES, ids=["c4", "c1-per-group", "c16-w18"])
def test_a_non_finite_mask_reaches_only_the_input_gradient_pixels_its_sample_weighs(case):
    """A NaN or Inf mask entry makes its sample non-finite; in the input gradient it must reach
    exactly the neighbours of non-zero bilinear weight (Paddle's op, and the plane / CUDA
    kernels), not the zero-weight ones: at a whole-pixel position that is the sampled pixel
    alone. Offsets: zero (whole pixels), half a pixel along one axis, and random. The CPU
    channels-last sweep used to scatter ``0 * NaN`` into all four in-map neighbours."""
    c_in, dgroups, width = case
    inputs = make_inputs(2, c_in, 6, width, 4, (3, 3), padding=1, deformable_groups=dgroups)
    shape = inputs["mask"].shape
    rng = np.random.default_rng(5)
    mask = rng.uniform(0.1, 1.0, shape)
    bad = rng.random(shape) < 0.03
    mask[bad] = np.where(rng.random(bad.sum()) < 0.5, np.nan, np.inf)
    weight = np.abs(inputs["weight"].numpy()) + 0.5  # no cancelling infinities
    random_offset = inputs["offset"].numpy()
    half_x = np.zeros_like(random_offset)
    half_x[:, 1::2] = 0.5
    for offset in (np.zeros_like(random_offset), half_x, random_offset):
        grads = []
        for op in (deform_conv2d, paddle.vision.ops.deform_conv2d):
            # every input requires a gradient (Paddle's op segfaults in backward otherwise)
            t = [paddle.to_tensor(a, stop_gradient=False)
                 for a in (inputs["x"].numpy(), offset, weight, np.zeros(4), mask)]
            out = op(t[0], t[1], t[2], t[3], padding=1, deformable_groups=dgroups, mask=t[4])
            grads.append(paddle.grad([out.sum()], t)[0].numpy())
        ours, native = grads
        assert (~np.isfinite(native)).any() and np.isfinite(native).any()
        np.testing.assert_array_equal(~np.isfinite(ours), ~np.isfinite(native))
        fine = np.isfinite(native)
        np.testing.assert_allclose(ours[fine], native[fine], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("with_mask", [True, False], ids=["v2", "v1"])
def test_empty_batch(with_mask, float_dtype):
    inputs = make_inputs(1, 4, 6, 6, 5, (3, 3), padding=1, dtype=float_dtype, with_mask=with_mask)
    empty = {k: (None if v is None else (v[:0] if k in ("x", "offset", "mask") else v))
             for k, v in inputs.items()}
    for v in empty.values():
        if v is not None:
            v.stop_gradient = False
    out = deform_conv2d(empty["x"], empty["offset"], empty["weight"], empty["bias"], padding=1,
                        mask=empty["mask"])
    assert out.shape == [0, 5, 6, 6]
    grad_w, grad_b = paddle.grad([out.sum()], [empty["weight"], empty["bias"]])
    np.testing.assert_array_equal(grad_w.numpy(), 0)
    np.testing.assert_array_equal(grad_b.numpy(), 0)


def test_cpu_backward_is_deterministic():
    inputs = make_inputs(3, 8, 12, 12, 8, (3, 3), padding=1, dtype="float32", offset_scale=3.0)
    runs = []
    for _ in range(2):
        out = deform_conv2d(inputs["x"], inputs["offset"], inputs["weight"], inputs["bias"],
                            padding=1, mask=inputs["mask"])
        grads = paddle.grad([(out * out).sum()], [inputs["x"], inputs["offset"], inputs["weight"]])
        runs.append([g.numpy() for g in grads])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def _forward_and_grads(inputs, **conv_args):
    out = deform_conv2d(inputs["x"], inputs["offset"], inputs["weight"], inputs["bias"],
                        mask=inputs["mask"], **conv_args)
    names = ("x", "offset", "weight", "bias", "mask")
    grads = paddle.grad([(out * out).sum()], [inputs[k] for k in names])
    return [out.numpy()] + [g.numpy() for g in grads]


@pytest.mark.parametrize("limit_images", [None, 1], ids=["one-chunk", "chunk-per-image"])
def test_onednn_and_paddle_matmul_gemms_agree(monkeypatch, limit_images):
    """float32 CPU GEMMs run on oneDNN's sgemm (PADDLE_DCN_CPU_GEMM=onednn fails if Paddle has
    not loaded it) or on paddle.matmul; both give the same numbers, also with groups and with
    the weight gradient accumulated over several chunks."""
    inputs = make_inputs(3, 6, 7, 8, 9, (3, 3), padding=1, groups=3, deformable_groups=2,
                         dtype="float32")
    previous = get_workspace_limit()
    if limit_images:
        set_workspace_limit(workspace_bytes_per_image(6, 9, 56, 2, 4) * limit_images + 7)
    try:
        results = {}
        for backend in ("onednn", "paddle"):
            monkeypatch.setenv("PADDLE_DCN_CPU_GEMM", backend)
            results[backend] = _forward_and_grads(inputs, padding=1, groups=3,
                                                  deformable_groups=2)
    finally:
        set_workspace_limit(previous)
    for name, a, b in zip(("out", "x", "offset", "weight", "bias", "mask"),
                          results["onednn"], results["paddle"]):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5, err_msg=name)


def test_unknown_gemm_backend_is_an_error(monkeypatch):
    inputs = make_inputs(1, 2, 5, 5, 2, (3, 3), padding=1, dtype="float32")
    monkeypatch.setenv("PADDLE_DCN_CPU_GEMM", "onedn")
    with pytest.raises(Exception, match="PADDLE_DCN_CPU_GEMM must be 'auto', 'paddle' or 'onednn'"):
        deform_conv2d(inputs["x"], inputs["offset"], inputs["weight"], padding=1,
                      mask=inputs["mask"])
    monkeypatch.setenv("PADDLE_DCN_CPU_GEMM", "auto")
    out = deform_conv2d(inputs["x"], inputs["offset"], inputs["weight"], padding=1,
                        mask=inputs["mask"])
    assert out.shape == [1, 2, 5, 5]


def test_to_static_matches_dygraph():
    inputs = make_inputs(2, 4, 8, 8, 6, (3, 3), stride=2, padding=1, dtype="float32")

    def fn(x, offset, weight, bias, mask):
        return deform_conv2d(x, offset, weight, bias, stride=2, padding=1, mask=mask)

    args = [inputs[k] for k in ("x", "offset", "weight", "bias", "mask")]
    eager = fn(*args)
    static_fn = paddle.jit.to_static(fn, full_graph=True)
    static = static_fn(*args)
    np.testing.assert_allclose(static.numpy(), eager.numpy(), rtol=1e-6, atol=1e-6)
    grads = paddle.grad([static.sum()], [inputs["offset"], inputs["weight"]])
    eager_grads = paddle.grad([fn(*args).sum()], [inputs["offset"], inputs["weight"]])
    for g, e in zip(grads, eager_grads):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-5)


# ---- bad input ----------------------------------------------------------------------------

def _good(**overrides):
    inputs = make_inputs(2, 4, 6, 6, 6, (3, 3), padding=1, groups=2, deformable_groups=2,
                         dtype="float32")
    args = dict(x=inputs["x"], offset=inputs["offset"], weight=inputs["weight"],
                bias=inputs["bias"], padding=1, groups=2, deformable_groups=2, mask=inputs["mask"])
    args.update(overrides)
    return args


def _zeros(*shape, dtype="float32"):
    return paddle.zeros(list(shape), dtype=dtype)


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (dict(x=_zeros(4, 6, 6)), r"x must be a 4-D tensor \[N, C_in, H, W\]"),
        (dict(weight=_zeros(6, 2, 3)), r"weight must be a 4-D tensor"),
        (dict(weight=_zeros(6, 4, 3, 3)), r"weight must have shape .*\[6, 2, 3, 3\]"),
        (dict(offset=_zeros(2, 18, 6, 6)), r"offset must have shape .*\[2, 36, 6, 6\]"),
        (dict(offset=_zeros(2, 36, 5, 6)), r"offset must have shape .*\[2, 36, 6, 6\]"),
        (dict(mask=_zeros(2, 9, 6, 6)), r"mask must have shape .*\[2, 18, 6, 6\]"),
        (dict(bias=_zeros(5)), r"bias must have shape \[C_out\] = \[6\]"),
        (dict(groups=3), r"divisible by groups=3"),
        (dict(deformable_groups=3), r"divisible by deformable_groups=3"),
        (dict(groups=4, weight=_zeros(6, 1, 3, 3)), r"C_out=6\) must be divisible by groups=4"),
        (dict(stride=0), r"stride must be positive"),
        (dict(stride=(1, -2)), r"stride must be positive"),
        (dict(stride=2**40), r"stride must be at most 2147483647"),
        (dict(padding=(0, 2**31)), r"padding must be at most 2147483647"),
        (dict(deformable_groups=2**32), r"deformable_groups must be at most 2147483647"),
        (dict(dilation=0), r"dilation must be positive"),
        (dict(padding=-1), r"padding must be non-negative"),
        (dict(padding=(1, 2, 3)), r"padding must be an int or a pair"),
        (dict(groups=0), r"groups must be a positive int"),
        (dict(deformable_groups=1.5), r"deformable_groups must be a positive int"),
        (dict(x=_zeros(2, 4, 1, 1), padding=0), r"too small for kernel"),
        (dict(mask=_zeros(2, 18, 6, 6, dtype="float64")), r"mask must have the dtype of x"),
        (dict(x=_zeros(2, 4, 6, 6, dtype="float16")), r"support float32, float64"),
        (dict(x=_zeros(2, 0, 6, 6), weight=_zeros(6, 0, 3, 3)), r"x must have at least one channel"),
        (dict(weight=_zeros(6, 2, 0, 3)), r"with C_out, kh, kw >= 1, got shape \[6, 2, 0, 3\]"),
    ],
)
def test_bad_input_raises_value_error(overrides, pattern):
    args = _good(**overrides)
    if "x" in overrides and overrides["x"].dtype == paddle.float16:
        args.update(offset=args["offset"].astype("float16"), weight=args["weight"].astype("float16"),
                    bias=None, mask=None)
    with pytest.raises(ValueError, match=pattern):
        deform_conv2d(**args)


def test_non_tensor_input_raises_type_error():
    with pytest.raises(TypeError, match="offset must be a paddle.Tensor"):
        deform_conv2d(**_good(offset=np.zeros((2, 36, 6, 6), dtype="float32")))
    good = _good()
    with pytest.raises(TypeError, match="bias must be a paddle.Tensor, got list"):
        deform_conv2d(**_good(bias=[0.0] * good["weight"].shape[0]))
    with pytest.raises(TypeError, match="mask must be a paddle.Tensor, got ndarray"):
        deform_conv2d(**_good(mask=np.ones(list(good["mask"].shape), "float32")))
    from paddle_dcn.ops.depthwise_conv import depthwise_conv2d_nhwc
    with pytest.raises(TypeError, match="x must be a paddle.Tensor, got ndarray"):
        depthwise_conv2d_nhwc(np.zeros((1, 5, 5, 3), "float32"), paddle.zeros([3, 1, 3, 3]), paddle.zeros([3]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_results_do_not_depend_on_the_thread_count(tmp_path, dtype):
    """The CPU kernels follow OMP_NUM_THREADS; float32 gives bitwise equal results with 1 and 2
    threads (its GEMMs are oneDNN's, whose per-element sums follow neither the thread count nor
    the chunk's width). float64's GEMMs are Paddle's matmul (MKL), whose sums may follow both
    (on CI's machine the output differed by 2e-14 with equal chunks), so float64 is held to
    1e-12 of each array's largest magnitude: a race or a misjoined chunk is still far outside.

    Not compared: the weight gradient, a GEMM reduction over batch x pixels that the math
    library (oneDNN or MKL, both following the thread count) may split differently with 2
    threads."""
    assert_same_results_with_1_and_2_threads(
        tmp_path,
        "import numpy as np, paddle, sys\n"
        "from paddle_dcn.ops import deform_conv2d, deform_roi_pool\n"
        "rng = np.random.default_rng(0)\n"
        f"t = lambda *s: paddle.to_tensor(rng.standard_normal(s).astype('{dtype}'), stop_gradient=False)\n"
        "x, w, off, m = t(3, 8, 12, 12), t(8, 8, 3, 3), t(3, 18, 12, 12), t(3, 9, 12, 12)\n"
        "y = deform_conv2d(x, off, w, padding=1, mask=m)\n"
        f"boxes = paddle.to_tensor([[1., 1., 9., 8.], [0., 2., 11., 11.], [3., 3., 6., 9.]], dtype='{dtype}')\n"
        "r = deform_roi_pool(x, boxes, paddle.to_tensor([2, 0, 1], dtype='int32'), 3)\n"
        "grads = paddle.grad([(y * y).sum() + (r * r).sum()], [x, w, off, m])\n"
        "names = ['grad_x', 'grad_weight', 'grad_offset', 'grad_mask']\n"
        "np.savez(sys.argv[1], y=y.numpy(), r=r.numpy(),\n"
        "         **{n: g.numpy() for n, g in zip(names, grads) if n != 'grad_weight'})\n",
        rtol=None if dtype == "float32" else 1e-12)
