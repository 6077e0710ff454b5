"""deform_roi_pool / deform_psroi_pool against independent references.

- zero offsets: paddle.vision.ops.roi_align (forward and, where Paddle's own
  gradient is the derivative of its forward, backward);
- with offsets: numpy references written here from the formulas in docs/ops.md;
- gradients: central finite differences in float64;
- bad input, K = 0, NaN / huge boxes and NaN offsets.
"""
from __future__ import annotations

import math

import numpy as np
import paddle
import pytest

from paddle_dcn.ops import deform_psroi_pool, deform_roi_pool


# ---- numpy references ---------------------------------------------------------------


def _roi_align_sample(plane: np.ndarray, y: float, x: float) -> np.ndarray:
    """roi_align's bilinear sample of plane [C, H, W]: zero beyond 1 pixel, else clamped."""
    _, h, w = plane.shape
    if not (-1.0 <= y <= h and -1.0 <= x <= w):
        return np.zeros(plane.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * plane[:, y0, x0] + (1 - ly) * lx * plane[:, y0, x1]
            + ly * (1 - lx) * plane[:, y1, x0] + ly * lx * plane[:, y1, x1])


def _batch_index(boxes_num: list[int]) -> list[int]:
    return [n for n, count in enumerate(boxes_num) for _ in range(count)]


def ref_deform_roi_pool(x, boxes, boxes_num, pooled, offset=None, scale=1.0, sampling_ratio=-1,
                        gamma=0.1, aligned=True):
    ph, pw = pooled
    scale, gamma = float(np.float32(scale)), float(np.float32(gamma))  # float32 op attributes
    k_total, c = boxes.shape[0], x.shape[1]
    out = np.zeros((k_total, c, ph, pw))
    shift = 0.5 if aligned else 0.0
    for k, n in enumerate(_batch_index(boxes_num)):
        x1, y1, x2, y2 = boxes[k] * scale - shift
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bw, bh = rw / pw, rh / ph
        gh = sampling_ratio if sampling_ratio > 0 else max(int(math.ceil(rh / ph)), 0)
        gw = sampling_ratio if sampling_ratio > 0 else max(int(math.ceil(rw / pw)), 0)
        count = max(gh * gw, 1)
        for i in range(ph):
            for j in range(pw):
                oy, ox = y1, x1
                if offset is not None:
                    ox = ox + gamma * rw * offset[k, 0, i, j]
                    oy = oy + gamma * rh * offset[k, 1, i, j]
                acc = np.zeros(c)
                for a in range(gh):
                    yy = oy + i * bh + (a + 0.5) * bh / gh
                    for b in range(gw):
                        xx = ox + j * bw + (b + 0.5) * bw / gw
                        acc += _roi_align_sample(x[n], yy, xx)
                out[k, :, i, j] = acc / count
    return out


def ref_deform_psroi_pool(x, boxes, boxes_num, out_channels, pooled, offset=None, scale=1.0,
                          part=None, sample_per_part=4, trans_std=0.1):
    ph, pw = pooled
    part_h, part_w = part if part is not None else pooled
    scale, trans_std = float(np.float32(scale)), float(np.float32(trans_std))  # float32 attributes
    _, _, h, w = x.shape
    out = np.zeros((boxes.shape[0], out_channels, ph, pw))
    groups = 1 if offset is None else offset.shape[1] // 2
    for k, n in enumerate(_batch_index(boxes_num)):
        sx = np.round(boxes[k, 0]) * scale - 0.5
        sy = np.round(boxes[k, 1]) * scale - 0.5
        rw = max((np.round(boxes[k, 2]) + 1) * scale - 0.5 - sx, 0.1)
        rh = max((np.round(boxes[k, 3]) + 1) * scale - 0.5 - sy, 0.1)
        bw, bh = rw / pw, rh / ph
        for c in range(out_channels):
            g = c // (out_channels // groups)
            for i in range(ph):
                for j in range(pw):
                    wstart, hstart = j * bw + sx, i * bh + sy
                    if offset is not None:
                        cy, cx = i * part_h // ph, j * part_w // pw
                        wstart += offset[k, 2 * g, cy, cx] * trans_std * rw
                        hstart += offset[k, 2 * g + 1, cy, cx] * trans_std * rh
                    plane = x[n, (c * ph + i) * pw + j]
                    total, kept = 0.0, 0
                    for a in range(sample_per_part):
                        for b in range(sample_per_part):
                            yy = hstart + a * bh / sample_per_part
                            xx = wstart + b * bw / sample_per_part
                            if not (-0.5 <= xx <= w - 0.5 and -0.5 <= yy <= h - 0.5):
                                continue
                            yy = min(max(yy, 0.0), h - 1.0)
                            xx = min(max(xx, 0.0), w - 1.0)
                            y0, x0 = int(math.floor(yy)), int(math.floor(xx))
                            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
                            ly, lx = yy - y0, xx - x0
                            total += ((1 - ly) * (1 - lx) * plane[y0, x0]
                                      + (1 - ly) * lx * plane[y0, x1]
                                      + ly * (1 - lx) * plane[y1, x0] + ly * lx * plane[y1, x1])
                            kept += 1
                    out[k, c, i, j] = total / kept if kept else 0.0
    return out


# ---- helpers ---------------------------------------------------------------------------------


def random_boxes(rng, k: int, image_h: float, image_w: float, min_size: float = 0.5,
                 outside: float = 0.15) -> np.ndarray:
    """Boxes (x1, y1, x2, y2) mostly inside an image_h x image_w image, some crossing its edge."""
    x1 = rng.uniform(-outside * image_w, image_w * 0.9, k)
    y1 = rng.uniform(-outside * image_h, image_h * 0.9, k)
    bw = rng.uniform(min_size, image_w * 0.8, k)
    bh = rng.uniform(min_size, image_h * 0.8, k)
    return np.stack([x1, y1, x1 + bw, y1 + bh], 1)


def t(a, dtype="float64"):
    return paddle.to_tensor(np.asarray(a, dtype=dtype))


def bn(counts):
    return paddle.to_tensor(np.asarray(counts, dtype="int32"))


def finite_difference(f, value: np.ndarray, weights: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d sum(f(value) * weights) / d value by central differences."""
    grad = np.zeros_like(value)
    flat, gflat = value.reshape(-1), grad.reshape(-1)
    for idx in range(flat.size):
        keep = flat[idx]
        flat[idx] = keep + eps
        plus = float((f(value) * weights).sum())
        flat[idx] = keep - eps
        minus = float((f(value) * weights).sum())
        flat[idx] = keep
        gflat[idx] = (plus - minus) / (2 * eps)
    return grad


# ---- zero offsets == roi_align --------------------------------------------------------------

ROI_ALIGN_CASES = [
    # (boxes_num, C, H, W, output_size, spatial_scale, sampling_ratio, aligned)
    ([3, 0, 4], 3, 13, 17, (7, 7), 0.25, -1, True),
    ([3, 0, 4], 3, 13, 17, (7, 7), 0.25, -1, False),
    ([2, 5], 2, 9, 11, (2, 3), 0.5, 2, True),
    ([2, 5], 2, 9, 11, (2, 3), 0.5, 2, False),
    ([0, 6], 4, 16, 12, (4, 1), 1.0 / 3.0, 0, True),
    ([4], 1, 8, 8, (3, 3), 1.0, 3, False),
    ([1, 1, 3], 2, 20, 10, (1, 5), 0.125, -1, True),
    ([2, 1], 2, 1, 5, (2, 2), 1.0, -1, True),  # one-row map: every y is clamped
    ([2, 1], 2, 6, 1, (2, 3), 1.0, 2, False),  # one-column map
]


@pytest.mark.parametrize("case", ROI_ALIGN_CASES)
def test_zero_offset_matches_roi_align(case, float_dtype):
    counts, c, h, w, pooled, scale, sr, aligned = case
    rng = np.random.default_rng(sum(counts) * 31 + c)
    x = t(rng.standard_normal((len(counts), c, h, w)), float_dtype)
    boxes = t(random_boxes(rng, sum(counts), h / scale, w / scale), float_dtype)
    kw = dict(spatial_scale=scale, sampling_ratio=sr, aligned=aligned)
    ours = deform_roi_pool(x, boxes, bn(counts), pooled, **kw)
    ref = paddle.vision.ops.roi_align(x, boxes, bn(counts), pooled, **kw)
    zero = deform_roi_pool(x, boxes, bn(counts), pooled,
                           offset=paddle.zeros([sum(counts), 2, *pooled], float_dtype), **kw)
    assert ours.shape == [sum(counts), c, *pooled]
    tol = 1e-10 if float_dtype == "float64" else 1e-5
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(zero.numpy(), ref.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("aligned", [True, False])
def test_zero_offset_grad_matches_roi_align(aligned):
    # Boxes of at least 1 feature pixel: there Paddle's CPU roi_align gradient
    # is the derivative of its forward (it clamps the box size to 1 even when aligned).
    rng = np.random.default_rng(7)
    counts, scale, pooled = [3, 0, 2], 0.5, (3, 2)
    x_np = rng.standard_normal((3, 2, 10, 9))
    boxes = t(random_boxes(rng, 5, 20, 18, min_size=2.5))
    grads = []
    for op in (deform_roi_pool, paddle.vision.ops.roi_align):
        x = t(x_np)
        x.stop_gradient = False
        out = op(x, boxes, bn(counts), pooled, spatial_scale=scale, sampling_ratio=-1,
                 aligned=aligned)
        (out * t(np.arange(out.size).reshape(out.shape) % 7 - 3.0)).sum().backward()
        grads.append(x.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_many_boxes_and_channels_match_roi_align():
    rng = np.random.default_rng(3)
    counts = [40, 0, 24]
    x = t(rng.standard_normal((3, 37, 25, 25)), "float32")
    boxes = t(random_boxes(rng, 64, 400, 400, outside=0.3), "float32")
    kw = dict(spatial_scale=1 / 16, sampling_ratio=-1, aligned=True)
    ours = deform_roi_pool(x, boxes, bn(counts), 7, **kw)
    ref = paddle.vision.ops.roi_align(x, boxes, bn(counts), 7, **kw)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)


def test_random_configurations_match_roi_align():
    rng = np.random.default_rng(12)
    for _ in range(25):
        n = int(rng.integers(1, 4))
        counts = [int(v) for v in rng.integers(0, 5, n)]
        c, h, w = int(rng.integers(1, 4)), int(rng.integers(1, 15)), int(rng.integers(1, 15))
        pooled = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        scale = float(rng.choice([1.0, 0.5, 0.25, 1 / 3, 0.125]))
        kw = dict(spatial_scale=scale, sampling_ratio=int(rng.integers(-1, 4)),
                  aligned=bool(rng.integers(0, 2)))
        x = t(rng.standard_normal((n, c, h, w)))
        boxes = t(random_boxes(rng, sum(counts), h / scale, w / scale, outside=0.4)
                  .reshape(-1, 4))
        ours = deform_roi_pool(x, boxes, bn(counts), pooled, **kw)
        ref = paddle.vision.ops.roi_align(x, boxes, bn(counts), pooled, **kw)
        np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-10, atol=1e-10,
                                   err_msg=str((counts, c, h, w, pooled, kw)))


def test_degenerate_boxes():
    """Reversed boxes: as roi_align with a fixed grid; with the adaptive grid (where roi_align
    divides by zero or loops over a negative count) an empty grid that pools to zero."""
    rng = np.random.default_rng(8)
    x = t(rng.standard_normal((1, 2, 9, 9)))
    boxes = t([[6.0, 5.0, 2.0, 1.0], [3.0, 3.0, 3.0, 7.0], [4.0, 4.0, 4.2, 4.1]])
    counts = bn([3])
    fixed = deform_roi_pool(x, boxes, counts, 2, sampling_ratio=2, aligned=True)
    ref = paddle.vision.ops.roi_align(x, boxes, counts, 2, sampling_ratio=2, aligned=True)
    np.testing.assert_allclose(fixed.numpy(), ref.numpy(), rtol=1e-12, atol=1e-12)
    adaptive = deform_roi_pool(x, boxes, counts, 2, sampling_ratio=-1, aligned=True).numpy()
    assert np.abs(adaptive[:2]).sum() == 0.0  # reversed and zero-width boxes
    np.testing.assert_allclose(  # a tiny box still has a 1x1 grid per bin, as in roi_align
        adaptive[2], paddle.vision.ops.roi_align(x, boxes[2:], counts - 2, 2).numpy()[0],
        rtol=1e-12, atol=1e-12)


# ---- offsets: numpy reference -----------------------------------------------------------------


@pytest.mark.parametrize("aligned,sr,pooled", [(True, -1, (3, 4)), (False, 2, (2, 2)),
                                               (True, 1, (1, 3))])
def test_offsets_match_numpy_reference(aligned, sr, pooled, float_dtype):
    rng = np.random.default_rng(11)
    counts, c, h, w, scale, gamma = [2, 0, 3], 3, 9, 12, 0.5, 0.3
    x = rng.standard_normal((3, c, h, w))
    boxes = random_boxes(rng, 5, h / scale, w / scale)
    offset = rng.standard_normal((5, 2, *pooled)) * 1.5  # moves bins well off the map too
    ours = deform_roi_pool(t(x, float_dtype), t(boxes, float_dtype), bn(counts), pooled,
                           offset=t(offset, float_dtype), spatial_scale=scale,
                           sampling_ratio=sr, gamma=gamma, aligned=aligned)
    ref = ref_deform_roi_pool(x, boxes, counts, pooled, offset, scale, sr, gamma, aligned)
    tol = 1e-10 if float_dtype == "float64" else 1e-5
    np.testing.assert_allclose(ours.numpy(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("groups,part", [(1, None), (2, (2, 3)), (4, (4, 4))])
def test_psroi_matches_numpy_reference(groups, part, float_dtype):
    rng = np.random.default_rng(5 + groups)
    counts, oc, pooled, h, w, scale = [2, 0, 2], 4, (3, 2), 11, 9, 0.5
    x = rng.standard_normal((3, oc * pooled[0] * pooled[1], h, w))
    boxes = random_boxes(rng, 4, h / scale, w / scale)
    parts = part if part is not None else pooled
    offset = rng.standard_normal((4, 2 * groups, *parts))
    kw = dict(spatial_scale=scale, part_size=part, sample_per_part=3, trans_std=0.2)
    ours = deform_psroi_pool(t(x, float_dtype), t(boxes, float_dtype), bn(counts), oc, pooled,
                             offset=t(offset, float_dtype), **kw)
    plain = deform_psroi_pool(t(x, float_dtype), t(boxes, float_dtype), bn(counts), oc, pooled,
                              **kw)
    tol = 1e-10 if float_dtype == "float64" else 1e-5
    np.testing.assert_allclose(
        ours.numpy(), ref_deform_psroi_pool(x, boxes, counts, oc, pooled, offset, scale, part, 3,
                                            0.2), rtol=tol, atol=tol)
    np.testing.assert_allclose(
        plain.numpy(), ref_deform_psroi_pool(x, boxes, counts, oc, pooled, None, scale, part, 3,
                                             0.2), rtol=tol, atol=tol)


# ---- gradients: central finite differences (float64) ------------------------------------------


def _roi_case(rng):
    counts, c, h, w, pooled, scale = [2, 1], 2, 7, 8, (2, 3), 0.5
    x = rng.standard_normal((2, c, h, w))
    boxes = random_boxes(rng, 3, h / scale, w / scale, min_size=3.0)
    offset = rng.standard_normal((3, 2, *pooled)) * 0.5
    return counts, pooled, scale, x, boxes, offset


@pytest.mark.parametrize("aligned,sr", [(True, -1), (False, 2)])
def test_roi_pool_gradients_finite_differences(aligned, sr):
    rng = np.random.default_rng(21)
    counts, pooled, scale, x_np, boxes_np, off_np = _roi_case(rng)
    boxes = t(boxes_np)
    kw = dict(spatial_scale=scale, sampling_ratio=sr, gamma=0.4, aligned=aligned)
    weights = rng.standard_normal((3, x_np.shape[1], *pooled))

    def run(x_val, off_val):
        return deform_roi_pool(t(x_val), boxes, bn(counts), pooled, offset=t(off_val),
                               **kw).numpy()

    x, off = t(x_np), t(off_np)
    x.stop_gradient = off.stop_gradient = False
    out = deform_roi_pool(x, boxes, bn(counts), pooled, offset=off, **kw)
    (out * t(weights)).sum().backward()
    fd_x = finite_difference(lambda v: run(v, off_np), x_np.copy(), weights)
    fd_off = finite_difference(lambda v: run(x_np, v), off_np.copy(), weights)
    np.testing.assert_allclose(x.grad.numpy(), fd_x, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(off.grad.numpy(), fd_off, rtol=1e-5, atol=1e-6)
    assert np.abs(fd_off).max() > 1e-2  # the offsets do matter here

    # no offset: gradient for x only (the "plain" op)
    x2 = t(x_np)
    x2.stop_gradient = False
    (deform_roi_pool(x2, boxes, bn(counts), pooled, **kw) * t(weights)).sum().backward()
    fd_x2 = finite_difference(
        lambda v: deform_roi_pool(t(v), boxes, bn(counts), pooled, **kw).numpy(), x_np.copy(),
        weights)
    np.testing.assert_allclose(x2.grad.numpy(), fd_x2, rtol=1e-6, atol=1e-7)


def test_psroi_pool_gradients_finite_differences():
    rng = np.random.default_rng(23)
    counts, oc, pooled, h, w, scale = [1, 2], 2, (2, 2), 7, 6, 0.5
    x_np = rng.standard_normal((2, oc * 4, h, w))
    boxes = t(random_boxes(rng, 3, h / scale, w / scale, min_size=3.0))
    off_np = rng.standard_normal((3, 4, 2, 1)) * 0.5  # 2 groups, part size (2, 1)
    kw = dict(spatial_scale=scale, part_size=(2, 1), sample_per_part=2, trans_std=0.3)
    weights = rng.standard_normal((3, oc, *pooled))

    def run(x_val, off_val):
        return deform_psroi_pool(t(x_val), boxes, bn(counts), oc, pooled, offset=t(off_val),
                                 **kw).numpy()

    x, off = t(x_np), t(off_np)
    x.stop_gradient = off.stop_gradient = False
    (deform_psroi_pool(x, boxes, bn(counts), oc, pooled, offset=off, **kw)
     * t(weights)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(),
                               finite_difference(lambda v: run(v, off_np), x_np.copy(), weights),
                               rtol=1e-6, atol=1e-7)
    fd_off = finite_difference(lambda v: run(x_np, v), off_np.copy(), weights)
    np.testing.assert_allclose(off.grad.numpy(), fd_off, rtol=1e-5, atol=1e-6)
    assert np.abs(fd_off).max() > 1e-2


def test_backward_is_deterministic():
    rng = np.random.default_rng(2)
    counts, pooled, scale, x_np, boxes_np, off_np = _roi_case(rng)
    grads = []
    for _ in range(2):
        x, off = t(x_np, "float32"), t(off_np, "float32")
        x.stop_gradient = off.stop_gradient = False
        out = deform_roi_pool(x, t(boxes_np, "float32"), bn(counts), pooled, offset=off,
                              spatial_scale=scale)
        out.sum().backward()
        grads.append((x.grad.numpy(), off.grad.numpy()))
    assert np.array_equal(grads[0][0], grads[1][0]) and np.array_equal(grads[0][1], grads[1][1])


# ---- bad input, empty input, non-finite input ---------------------------------------------------


def _x(c=2):
    return paddle.randn([2, c, 8, 8])


def test_bad_input_raises_value_error_naming_the_argument():
    x, boxes, counts = _x(), paddle.rand([3, 4]) * 8, bn([1, 2])
    with pytest.raises(ValueError, match="boxes"):
        deform_roi_pool(x, paddle.rand([3, 5]), counts, 2)
    with pytest.raises(ValueError, match="boxes"):
        deform_roi_pool(x, paddle.rand([3]), counts, 2)
    with pytest.raises(ValueError, match="boxes_num"):
        deform_roi_pool(x, boxes, bn([1, 1]), 2)
    with pytest.raises(ValueError, match="boxes_num"):
        deform_roi_pool(x, boxes, bn([3]), 2)
    with pytest.raises(ValueError, match="boxes_num"):
        deform_roi_pool(x, boxes, bn([4, -1]), 2)
    with pytest.raises(ValueError, match="offset"):
        deform_roi_pool(x, boxes, counts, 2, offset=paddle.zeros([3, 2, 3, 2]))
    with pytest.raises(ValueError, match="offset"):
        deform_roi_pool(x, boxes, counts, 2, offset=paddle.zeros([3, 1, 2, 2]))
    with pytest.raises(ValueError, match="offset"):
        deform_roi_pool(x, boxes, counts, 2, offset=paddle.zeros([3, 2, 2, 2], "float64"))
    with pytest.raises(ValueError, match="x"):
        deform_roi_pool(paddle.randn([2, 8, 8]), boxes, counts, 2)
    with pytest.raises(ValueError, match="output_size"):
        deform_roi_pool(x, boxes, counts, 0)
    with pytest.raises(ValueError, match="spatial_scale"):
        deform_roi_pool(x, boxes, counts, 2, spatial_scale=0.0)
    with pytest.raises(ValueError, match="sampling_ratio"):
        deform_roi_pool(x, boxes, counts, 2, sampling_ratio=1.5)
    with pytest.raises(ValueError, match="x"):
        deform_roi_pool(x.astype("float16"), boxes, counts, 2)
    # position-sensitive: channels must be output_channels * PH * PW
    with pytest.raises(ValueError, match="x"):
        deform_psroi_pool(_x(7), boxes, counts, 2, 2)
    with pytest.raises(ValueError, match="offset"):
        deform_psroi_pool(_x(8), boxes, counts, 2, 2, offset=paddle.zeros([3, 3, 2, 2]))
    with pytest.raises(ValueError, match="offset"):  # 2 groups do not divide 3 channels
        deform_psroi_pool(_x(12), boxes, counts, 3, 2, offset=paddle.zeros([3, 4, 2, 2]))
    with pytest.raises(ValueError, match="offset"):
        deform_psroi_pool(_x(8), boxes, counts, 2, 2, offset=paddle.zeros([3, 2, 3, 3]))
    with pytest.raises(ValueError, match="boxes_num"):
        deform_psroi_pool(_x(8), boxes, bn([2, 2]), 2, 2)
    with pytest.raises(ValueError, match="output_channels"):
        deform_psroi_pool(_x(8), boxes, counts, 0, 2)
    # an empty feature map (the clamped stencils would index -1) and sample grids past the cap
    for empty in ([2, 4, 0, 8], [2, 8, 8, 0]):
        with pytest.raises(ValueError, match=r"x must have a non-empty feature map"):
            deform_roi_pool(paddle.randn(empty), boxes, counts, 2)
        with pytest.raises(ValueError, match=r"x must have a non-empty feature map"):
            deform_psroi_pool(paddle.randn(empty[:1] + [8] + empty[2:]), boxes, counts, 2, 2)
    deform_roi_pool(x, boxes, counts, 2, sampling_ratio=64).numpy()  # the cap itself runs
    with pytest.raises(ValueError, match=r"sampling_ratio must be at most 64 .* got 65"):
        deform_roi_pool(x, boxes, counts, 2, sampling_ratio=65)
    with pytest.raises(ValueError, match=r"sampling_ratio must be at most 82 .* got 100000"):
        deform_roi_pool(paddle.randn([2, 4, 8, 40]), boxes, counts, 2, sampling_ratio=100000)
    with pytest.raises(ValueError, match=r"sample_per_part must be at most 64 .* got 100000"):
        deform_psroi_pool(_x(8), boxes, counts, 2, 2, sample_per_part=100000)


def test_zero_boxes_give_empty_output_and_zero_grad():
    x = _x()
    x.stop_gradient = False
    empty = paddle.zeros([0, 4])
    out = deform_roi_pool(x, empty, bn([0, 0]), (3, 2))
    assert out.shape == [0, 2, 3, 2]
    out2 = deform_roi_pool(x, empty, bn([0, 0]), (3, 2), offset=paddle.zeros([0, 2, 3, 2]))
    assert out2.shape == [0, 2, 3, 2]
    (out.sum() + out2.sum()).backward()
    assert x.grad.shape == x.shape and float(x.grad.abs().sum()) == 0.0
    xp = paddle.randn([2, 8, 5, 5])
    assert deform_psroi_pool(xp, empty, bn([0, 0]), 2, 2).shape == [0, 2, 2, 2]


def test_nan_and_huge_boxes_and_nan_offsets_do_not_crash():
    x = paddle.randn([2, 2, 8, 8], "float64")
    x.stop_gradient = False
    boxes = t([[float("nan"), 1, 5, 5], [1, 1, float("nan"), 6], [-1e30, -1e30, 1e30, 1e30],
               [1e30, 1e30, 2e30, 2e30], [float("inf"), 0, float("inf"), 4], [1, 1, 6, 6]])
    counts = bn([3, 3])
    offset = t(np.full((6, 2, 2, 2), np.nan))
    offset[5, :, 0, 0] = 1e30
    offset.stop_gradient = False
    for aligned in (True, False):
        plain = deform_roi_pool(x, boxes, counts, 2, aligned=aligned)
        moved = deform_roi_pool(x, boxes, counts, 2, offset=offset, aligned=aligned)
        (plain.sum() + moved.sum()).backward()
        assert np.isfinite(plain.numpy()).all() and np.isfinite(moved.numpy()).all()
        assert np.isfinite(x.grad.numpy()).all() and np.isfinite(offset.grad.numpy()).all()
        # NaN boxes and bins moved by NaN or huge offsets sample nothing: zero
        assert float(plain[:2].abs().sum()) == 0.0 and float(moved.abs().sum()) == 0.0
        x.clear_gradient()
        offset.clear_gradient()
    xp = paddle.randn([2, 8, 8, 8], "float64")
    xp.stop_gradient = False
    ps_off = t(np.full((6, 2, 2, 2), np.nan))
    ps_off.stop_gradient = False
    out = deform_psroi_pool(xp, boxes, counts, 2, 2, offset=ps_off)
    out2 = deform_psroi_pool(xp, boxes, counts, 2, 2)
    (out.sum() + out2.sum()).backward()
    assert np.isfinite(out.numpy()).all() and np.isfinite(out2.numpy()).all()
    assert np.isfinite(xp.grad.numpy()).all() and np.isfinite(ps_off.grad.numpy()).all()
    assert float(out.abs().sum()) == 0.0


def test_to_static_matches_dygraph():
    rng = np.random.default_rng(4)
    x = t(rng.standard_normal((2, 3, 9, 9)), "float32")
    boxes = t(random_boxes(rng, 4, 18, 18), "float32")
    offset = t(rng.standard_normal((4, 2, 2, 2)), "float32")
    counts = bn([1, 3])

    xp = t(rng.standard_normal((2, 8, 9, 9)), "float32")
    ps_offset = t(rng.standard_normal((4, 2, 2, 2)), "float32")
    for v in (x, offset, xp, ps_offset):
        v.stop_gradient = False

    def f(x, boxes, counts, offset, xp, ps_offset):
        a = deform_roi_pool(x, boxes, counts, 2, offset=offset, spatial_scale=0.5)
        b = deform_psroi_pool(xp, boxes, counts, 2, 2, offset=ps_offset, spatial_scale=0.5)
        return a.sum() + (b * b).sum()

    args = (x, boxes, counts, offset, xp, ps_offset)
    static = paddle.jit.to_static(f, full_graph=True)(*args)
    eager = f(*args)
    np.testing.assert_allclose(static.numpy(), eager.numpy(), rtol=1e-6, atol=1e-6)
    wrt = [x, offset, xp, ps_offset]
    for g, e in zip(paddle.grad([static], wrt), paddle.grad([f(*args)], wrt)):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-5)


def test_under_amp_auto_cast_stays_float32_on_cpu():
    rng = np.random.default_rng(6)
    x = t(rng.standard_normal((1, 2, 8, 8)), "float32")
    boxes, counts = t(random_boxes(rng, 3, 8, 8), "float32"), bn([3])
    offset = t(rng.standard_normal((3, 2, 2, 2)), "float32")
    want = deform_roi_pool(x, boxes, counts, 2, offset=offset).numpy()
    for level in ("O1", "O2"):
        with paddle.amp.auto_cast(level=level, dtype="bfloat16"):
            got = deform_roi_pool(x, boxes, counts, 2, offset=offset)
        assert got.dtype == paddle.float32
        np.testing.assert_array_equal(got.numpy(), want)
