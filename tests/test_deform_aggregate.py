"""paddle_dcn.ops.deform_aggregate (the DCNv3/DCNv4 core) against the pure-Paddle grid_sample
reference (InternImage's dcnv3_core_pytorch, ported), in float64; finite differences;
non-finite offsets; thread-count determinism; argument errors."""
import os

import numpy as np
import paddle
import pytest

from paddle_dcn.ops import deform_aggregate, deform_aggregate_fused
from paddle_dcn.ops.deform_aggregate_reference import deform_aggregate_reference

# (N, H, W, G, C, kernel, stride, padding, dilation, offset_scale, offset std in pixels)
CONFIGS = [
    (2, 7, 6, 3, 5, (3, 2), (2, 1), (1, 2), (1, 2), 0.7, 2.0),
    (1, 6, 6, 1, 1, 3, 1, 1, 1, 1.0, 0.8),
    (2, 5, 8, 4, 16, 3, 1, 1, 1, 1.0, 1.5),
    (1, 9, 7, 2, 64, (5, 3), 2, (2, 1), 1, 0.5, 3.0),
    (1, 6, 5, 2, 3, 1, 1, 0, 1, 2.0, 1.0),
    (2, 8, 8, 2, 8, 3, 1, 2, 2, 1.0, 12.0),  # offsets far outside the map
    (1, 5, 5, 3, 7, 3, 1, 0, 1, 1.3, 0.5),
    # group widths the CPU driver compiles as constants (16, 64, 8 above; 5, 1, 3, 7 run-time)
    (2, 6, 7, 2, 4, 3, 2, 1, 1, 1.0, 2.0),
    (1, 5, 6, 3, 2, 3, 1, 1, 2, 0.8, 1.5),
    (1, 6, 6, 1, 32, 3, 1, 1, 1, 1.0, 1.0),
    # run-time widths past one eight-lane block: 8 + 4 and 16 + 4 channels
    (1, 5, 6, 2, 12, 3, 1, 1, 1, 1.0, 1.5),
    (1, 4, 5, 1, 20, 3, 1, 1, 1, 1.0, 2.0),
    # 25 kernel points: three eight-point stencil blocks and one point alone (CPU driver)
    (1, 7, 8, 2, 4, 5, 1, 2, 1, 1.0, 1.5),
    # batches whose backward work items hold runs of groups (CPU driver: 2 of 4, all 3)
    (8, 5, 6, 4, 4, 3, 1, 1, 1, 1.0, 1.5),
    (16, 4, 5, 3, 8, 3, 2, 1, 1, 1.0, 2.0),
]
# float32 takes its own CPU backward (kernel points in blocks of eight): CONFIGS[2] (a block
# and a point), the 25-point kernel, 1x1 (one point alone), and the runs of groups.
FLOAT32_CONFIGS = [CONFIGS[2], CONFIGS[4], CONFIGS[12], CONFIGS[13], CONFIGS[14]]


def _out(size, k, s, p, d):
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1


def _pair(v):
    return list(v) if isinstance(v, (list, tuple)) else [v, v]


def _inputs(cfg, dtype="float64", seed=0):
    n, h, w, g, c, kernel, stride, padding, dilation, scale, std = cfg
    kh, kw = _pair(kernel)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    ho, wo = _out(h, kh, sh, ph, dh), _out(w, kw, sw, pw, dw)
    rng = np.random.default_rng(seed)
    value = rng.standard_normal([n, h, w, g * c])
    offset = rng.standard_normal([n, ho, wo, g * kh * kw * 2]) * std
    weight = rng.standard_normal([n, ho, wo, g * kh * kw])
    tensors = [paddle.to_tensor(a.astype(dtype)) for a in (value, offset, weight)]
    for t in tensors:
        t.stop_gradient = False
    kwargs = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, groups=g,
                  offset_scale=scale)
    return tensors, kwargs


@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
def test_forward_and_gradients_match_the_grid_sample_reference(cfg):
    (value, offset, weight), kwargs = _inputs(cfg)
    ours = deform_aggregate(value, offset, weight, **kwargs)
    ref = deform_aggregate_reference(value, offset, weight, **kwargs)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=0, atol=1e-8 * max(1.0, float(ref.abs().max())))
    cot = paddle.to_tensor(np.random.default_rng(1).standard_normal(ours.shape))
    got = paddle.grad((ours * cot).sum(), [value, offset, weight])
    want = paddle.grad((ref * cot).sum(), [value, offset, weight])
    for name, a, b in zip(("value", "offset", "weight"), got, want):
        scale = max(1.0, float(b.abs().max()))
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-8 * scale, err_msg=name)


def test_gradients_match_finite_differences():
    cfg = (1, 5, 4, 2, 3, (3, 2), 1, 1, (1, 2), 0.9, 1.3)
    (value, offset, weight), kwargs = _inputs(cfg, seed=4)
    cot = np.random.default_rng(2).standard_normal(deform_aggregate(value, offset, weight, **kwargs).shape)

    def loss(v, o, m):
        out = deform_aggregate(paddle.to_tensor(v), paddle.to_tensor(o), paddle.to_tensor(m), **kwargs)
        return float((out.numpy() * cot).sum())

    grads = paddle.grad((deform_aggregate(value, offset, weight, **kwargs) * paddle.to_tensor(cot)).sum(),
                        [value, offset, weight])
    arrays = [t.numpy() for t in (value, offset, weight)]
    rng = np.random.default_rng(3)
    eps = 1e-6
    for which in range(3):
        flat = arrays[which].reshape(-1)
        for index in rng.choice(flat.size, size=12, replace=False):
            plus = [a.copy() for a in arrays]
            minus = [a.copy() for a in arrays]
            plus[which].reshape(-1)[index] += eps
            minus[which].reshape(-1)[index] -= eps
            numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
            analytic = grads[which].numpy().reshape(-1)[index]
            assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-6), (which, index)


def test_non_finite_and_huge_offsets_give_zero_samples():
    (value, offset, weight), kwargs = _inputs(CONFIGS[2], seed=5)
    bad = offset.numpy().copy()
    points = bad.reshape(bad.shape[:3] + (-1, 2))
    points[0, 1, 2, 3] = [np.nan, 0.0]
    points[1, 0, 0, 5] = [1e30, -1e30]
    points[0, 2, 3, 7] = [np.inf, 1.0]
    zeroed = weight.numpy().copy()
    masked = zeroed.reshape(zeroed.shape[:3] + (-1,))
    masked[0, 1, 2, 3] = masked[1, 0, 0, 5] = masked[0, 2, 3, 7] = 0.0
    got = deform_aggregate(value, paddle.to_tensor(bad), weight, **kwargs)
    want = deform_aggregate_reference(value, offset, paddle.to_tensor(zeroed), **kwargs)
    assert np.isfinite(got.numpy()).all()
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-10)
    grads = paddle.grad(got.sum(), [value])
    assert np.isfinite(grads[0].numpy()).all()


def test_a_non_finite_value_reaches_only_the_samples_that_weigh_it():
    """Forward: outside the map a neighbour counts as zero, and a neighbour of zero bilinear
    weight adds nothing, whatever its value (the CPU forward reads a zero row there instead of
    branching). Integer offsets put every sample on a pixel: its other three neighbours weigh
    zero, and the samples at the border fall outside the map. Backward: a non-finite value
    reaches the offset and weight gradients only of the samples whose in-map neighbours
    include it."""
    (value, offset, weight), kwargs = _inputs(CONFIGS[2], seed=7)
    rng = np.random.default_rng(7)
    offset = paddle.to_tensor(np.round(rng.standard_normal(offset.shape) * 2.0))
    weight = paddle.to_tensor(rng.uniform(0.5, 1.5, weight.shape))
    bad_pixels = [(0, 0), (2, 3)]  # pixel 0 (where outside neighbours point) and an inner one
    clean, poisoned, marker = value.numpy().copy(), value.numpy().copy(), np.zeros(value.shape)
    for y, x in bad_pixels:
        clean[0, y, x] = 0.0
        poisoned[0, y, x, ::2] = np.inf
        poisoned[0, y, x, 1::2] = np.nan
        marker[0, y, x] = 1.0
    got = deform_aggregate(paddle.to_tensor(poisoned), offset, weight, **kwargs).numpy()
    want = deform_aggregate(paddle.to_tensor(clean), offset, weight, **kwargs).numpy()
    touched = deform_aggregate(paddle.to_tensor(marker), offset, weight, **kwargs).numpy() != 0
    assert touched.any() and (~touched).sum() > touched.sum()
    assert not np.isfinite(got[touched]).any()
    np.testing.assert_array_equal(got[~touched], want[~touched])

    # Backward, off the grid lines (every in-map neighbour of nonzero weight): the offset and
    # weight gradients are linear in the value, and those that do not change when the marker is
    # added depend on no bad pixel and must come out as with the clean value (an out-of-map
    # neighbour's dot product is read at pixel 0, a bad one, and must count as zero).
    cot = paddle.to_tensor(rng.standard_normal(got.shape))
    fractional = paddle.to_tensor(rng.standard_normal(offset.shape) * 2.0)

    def coord_grads(v):
        off, wt = fractional.detach(), weight.detach()
        off.stop_gradient = wt.stop_gradient = False
        out = deform_aggregate(paddle.to_tensor(v), off, wt, **kwargs)
        return [g.numpy() for g in paddle.grad((out * cot).sum(), [off, wt])]

    for bad, base, probe in zip(coord_grads(poisoned), coord_grads(clean), coord_grads(clean + marker)):
        depends = probe != base
        assert depends.any() and (~depends).sum() > depends.sum()
        np.testing.assert_array_equal(bad[~depends], base[~depends])



@pytest.mark.parametrize("fused", [False, True], ids=["separate", "fused"])
def test_a_non_finite_weight_reaches_only_the_value_gradient_of_its_in_map_neighbours(fused):
    """A NaN / inf aggregation weight makes NaN / inf of the value gradient only at the neighbours of
    its sample that are in the map with a nonzero bilinear weight (the value-side rule: a
    neighbour outside the map or of zero bilinear weight gets nothing). Outside neighbours point
    at pixel 0, where 0 * NaN must not land. The marker probe (those weights 1, all others 0)
    says where the NaN belongs; elsewhere the gradient is the grid_sample reference's with the
    bad weights zeroed."""
    (value, offset, weight), kwargs = _inputs(CONFIGS[2], seed=11)
    n, ho, wo, gk2 = offset.shape
    g, k = kwargs["groups"], gk2 // (2 * kwargs["groups"])
    rng = np.random.default_rng(11)
    off = rng.standard_normal(offset.shape) * 1.5
    wt = rng.uniform(0.5, 1.5, weight.shape)
    pts = off.reshape(n, ho, wo, g, k, 2)
    bad = [((0, 1, 1, 0, 0), [100.0, 3.0], np.nan),  # wholly outside the map
           ((0, 0, 0, 1, 4), [-0.5, 0.25], np.inf),  # pixel (0, 0)'s centre point, nudged: in the map
           ((1, 3, 7, 2, 8), [1.5, 0.3], -np.inf),  # pixel (3, 7)'s last point: partly outside
           ((1, 2, 2, 3, 3), [0.0, 0.0], np.nan)]  # on a pixel: three neighbours of zero weight
    poisoned, zeroed, marker = wt.copy(), wt.copy(), np.zeros(wt.shape)
    for at, point, w_bad in bad:
        pts[at] = point
        poisoned.reshape(n, ho, wo, g, k)[at] = w_bad
        zeroed.reshape(n, ho, wo, g, k)[at] = 0.0
        marker.reshape(n, ho, wo, g, k)[at] = 1.0
    cot = paddle.to_tensor(rng.uniform(0.5, 1.5, value.shape[:3] + [g * value.shape[3] // g]))

    def value_grad(fn, wt_np):
        v = value.detach()
        v.stop_gradient = False
        if fn is deform_aggregate and fused:
            width = (g * 3 * k + 7) // 8 * 8
            om = np.concatenate([off.reshape(n, ho, wo, g, 2 * k), wt_np.reshape(n, ho, wo, g, k)], -1)
            om = np.concatenate([om.reshape(n, ho, wo, -1), np.zeros((n, ho, wo, width - g * 3 * k))], -1)
            out = deform_aggregate_fused(v, paddle.to_tensor(om), **kwargs)
        else:
            out = fn(v, paddle.to_tensor(off), paddle.to_tensor(wt_np), **kwargs)
        return paddle.grad((out * cot).sum(), [v])[0].numpy()

    got = value_grad(deform_aggregate, poisoned)
    reach = value_grad(deform_aggregate, marker) != 0
    assert reach.any() and not reach[0, 0, 0].all()  # pixel 0 is reached only by the in-map sample
    np.testing.assert_array_equal(~np.isfinite(got), reach)
    want = value_grad(deform_aggregate_reference, zeroed)
    np.testing.assert_allclose(got[~reach], want[~reach], rtol=1e-9, atol=1e-10)


# (16, ..., G=4): the CPU backward's work items take all 4 groups at 1-4 threads, runs of 2 at
# 8 threads and single groups at 16 (at least max(16, 4 x threads) items)
@pytest.mark.parametrize("cfg", [CONFIGS[0], (16, 5, 6, 4, 4, 3, 1, 1, 1, 1.0, 1.5)], ids=["cfg0", "group-runs"])
def test_results_are_bitwise_equal_across_thread_counts(cfg):
    (value, offset, weight), kwargs = _inputs(cfg, dtype="float32", seed=6)
    runs = []
    old = os.environ.get("OMP_NUM_THREADS")
    try:
        for threads in ("1", "2", "8", "16", "1"):
            os.environ["OMP_NUM_THREADS"] = threads
            out = deform_aggregate(value, offset, weight, **kwargs)
            runs.append([out.numpy()] + [g.numpy() for g in paddle.grad((out * out).sum(), [value, offset, weight])])
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("cfg", FLOAT32_CONFIGS, ids=[f"cfg{CONFIGS.index(c)}" for c in FLOAT32_CONFIGS])
def test_float32_forward_and_gradients_agree_with_float64(cfg):
    results = {}
    for dtype in ("float64", "float32"):
        (value, offset, weight), kwargs = _inputs(cfg, dtype=dtype, seed=11)
        out = deform_aggregate(value, offset, weight, **kwargs)
        cot = paddle.to_tensor(np.random.default_rng(12).standard_normal(out.shape).astype(dtype))
        grads = paddle.grad((out * cot).sum(), [value, offset, weight])
        results[dtype] = [out.numpy()] + [g.numpy() for g in grads]
    for name, a, b in zip(("out", "value", "offset", "weight"), results["float32"], results["float64"]):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * max(1.0, float(np.abs(b).max())), err_msg=name)


def test_float32_agrees_with_float64():
    (v64, o64, w64), kwargs = _inputs(CONFIGS[3])
    (v32, o32, w32), _ = _inputs(CONFIGS[3], dtype="float32")
    a = deform_aggregate(v64, o64, w64, **kwargs).numpy()
    b = deform_aggregate(v32, o32, w32, **kwargs).numpy()
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_bad_arguments_name_the_argument_and_shape():
    (value, offset, weight), kwargs = _inputs(CONFIGS[2])
    with pytest.raises(ValueError, match=r"offset must have shape \[N, H_out, W_out, G\*kh\*kw\*2\]"):
        deform_aggregate(value, offset[..., :-1], weight, **kwargs)
    with pytest.raises(ValueError, match=r"weight must have shape \[N, H_out, W_out, G\*kh\*kw\]"):
        deform_aggregate(value, offset, weight[:, :-1], **kwargs)
    with pytest.raises(ValueError, match=r"value channels \(value.shape\[3\] = 64\) must be divisible by groups=3"):
        deform_aggregate(value, offset, weight, **{**kwargs, "groups": 3})
    with pytest.raises(ValueError, match="value must be a 4-D tensor"):
        deform_aggregate(value[0], offset, weight, **kwargs)
    with pytest.raises(ValueError, match="offset_scale must be a finite number"):
        deform_aggregate(value, offset, weight, **{**kwargs, "offset_scale": float("nan")})
    with pytest.raises(ValueError, match="must have the dtype of value"):
        deform_aggregate(value, offset.astype("float32"), weight, **kwargs)
    with pytest.raises(ValueError, match="too small for kernel_size"):
        deform_aggregate(value[:, :2, :2], offset, weight, **{**kwargs, "padding": 0})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[13]], ids=["cfg0", "cfg13"])
def test_fused_layout_equals_the_split_tensors_and_pads_get_zero_gradient(cfg, dtype):
    (value, offset, weight), kwargs = _inputs(cfg, dtype=dtype, seed=7)
    g, (kh, kw) = kwargs["groups"], _pair(kwargs["kernel_size"])
    k = kh * kw
    n, ho, wo = offset.shape[:3]
    per_group = paddle.concat([offset.reshape([n, ho, wo, g, 2 * k]), weight.reshape([n, ho, wo, g, k])], axis=-1)
    width = (g * 3 * k + 7) // 8 * 8
    pad = paddle.to_tensor(np.random.default_rng(8).standard_normal([n, ho, wo, width - g * 3 * k]).astype(dtype))
    fused = paddle.concat([per_group.reshape([n, ho, wo, g * 3 * k]), pad], axis=-1).detach()
    fused.stop_gradient = False
    a = deform_aggregate(value, offset, weight, **kwargs)
    b = deform_aggregate_fused(value, fused, **kwargs)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    cot = paddle.to_tensor(np.random.default_rng(9).standard_normal(a.shape).astype(dtype))
    gv_a, go_a, gw_a = paddle.grad((a * cot).sum(), [value, offset, weight])
    gv_b, gf = paddle.grad((b * cot).sum(), [value, fused])
    np.testing.assert_array_equal(gv_a.numpy(), gv_b.numpy())
    gf = gf.numpy()
    split = gf[..., : g * 3 * k].reshape([n, ho, wo, g, 3 * k])
    np.testing.assert_array_equal(split[..., : 2 * k].reshape(go_a.shape), go_a.numpy())
    np.testing.assert_array_equal(split[..., 2 * k:].reshape(gw_a.shape), gw_a.numpy())
    assert not gf[..., g * 3 * k:].any()
    with pytest.raises(ValueError, match=rf"offset_mask has 20 channels; it needs at least G\*kh\*kw\*3 = {g * 3 * k}"):
        deform_aggregate_fused(value, fused[..., :20], **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fused", [False, True], ids=["separate", "fused"])
@pytest.mark.parametrize("hw", [(0, 4), (3, 0)], ids=["H0", "W0"])
def test_an_empty_input_plane_gives_zero_samples_and_gradients(hw, fused, dtype):
    # The padding makes the output non-empty although the map has no pixel: every sample
    # is outside it. (The backward once read pixel 0 of the empty value tensor: a crash.)
    h, w = hw
    g, c, k = 2, 4, 9
    rng = np.random.default_rng(11)
    value = paddle.zeros([2, h, w, g * c], dtype=dtype)
    ho, wo = h + 2, w + 2
    offset = rng.standard_normal([2, ho, wo, g * k * 2])
    weight = rng.standard_normal([2, ho, wo, g * k])
    # zeros whatever the weights (docs/ops.md: on a non-empty map a wholly outside sample of a
    # non-finite weight is NaN through 0 * NaN; here there is no value for it to reach)
    weight[0, 0, 0, 0] = np.nan
    weight[1, 1, 1, 3] = np.inf
    if fused:
        per_group = np.concatenate([offset.reshape(2, ho, wo, g, 2 * k), weight.reshape(2, ho, wo, g, k)], -1)
        coords = [paddle.to_tensor(np.concatenate([per_group.reshape(2, ho, wo, -1),
                                                   rng.standard_normal([2, ho, wo, 4])], -1).astype(dtype))]
        op = deform_aggregate_fused
    else:
        coords = [paddle.to_tensor(a.astype(dtype)) for a in (offset, weight)]
        op = deform_aggregate
    for t in [value] + coords:
        t.stop_gradient = False
    out = op(value, *coords, kernel_size=3, padding=2, groups=g)
    assert out.shape == [2, ho, wo, g * c]
    assert not out.numpy().any()
    grads = paddle.grad(out.sum(), [value] + coords)
    assert grads[0].shape == value.shape
    for grad, coord in zip(grads[1:], coords):
        assert grad.shape == coord.shape
        assert not grad.numpy().any()  # zero everywhere (also the fused tensor's padding)
