"""Offset visualisation: sampling locations, drawn images, the command line tool."""
import os
import runpy

import numpy as np
import paddle
import pytest
from PIL import Image

from paddle_dcn import DeformConv2D
from paddle_dcn.visualize import sampling_locations, to_display_image, visualize_offsets

TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "visualize_offsets.py")


def _set_constant_offsets(layer: DeformConv2D, dy: float, dx: float) -> None:
    """Offset branch bias: every kernel point shifted by (dy, dx); mask logits 0."""
    bias = np.zeros(layer.conv_offset.bias.shape, np.float32)
    bias[0:2 * layer.num_points:2] = dy
    bias[1:2 * layer.num_points:2] = dx
    layer.conv_offset.bias.set_value(paddle.to_tensor(bias))


def test_sampling_locations_follow_the_conv_arithmetic():
    layer = DeformConv2D(2, 2, (3, 2), stride=2, padding=(1, 0), dilation=(1, 3), deformable_groups=2)
    _set_constant_offsets(layer, 1.5, -0.25)
    offset, mask = layer.predict_offsets(paddle.randn([1, 2, 9, 9]))
    locations, weights = sampling_locations(layer, offset[0].numpy(), mask[0].numpy(), [(2, 1)])
    # independent reference: y = i*s - p + a*d + dy for kernel points (a, b), per group
    expected = [(2 * 2 - 1 + a * 1 + 1.5, 1 * 2 - 0 + b * 3 - 0.25) for _ in range(2)
                for a in range(3) for b in range(2)]
    np.testing.assert_allclose(locations[0], expected, rtol=1e-6)
    np.testing.assert_allclose(weights, 0.5, rtol=1e-6)


def test_drawn_dots_land_on_the_sampling_locations():
    layer = DeformConv2D(1, 1, 3, padding=1, modulated=False)
    _set_constant_offsets(layer, 0.0, 0.0)
    x = paddle.zeros([1, 1, 32, 32])
    (picture,) = visualize_offsets(layer, x, points=[(10, 20)]).values()
    assert picture.dtype == np.uint8 and picture.shape == (256, 256, 3)  # 8x enlarged
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue  # the green cross of the output pixel covers the centre sample
            r, g, b = picture[(10 + dy) * 8 + 4, (20 + dx) * 8 + 4].astype(int)
            assert r > 200 and g < 120 and b < 120, (dy, dx, (r, g, b))
    r, g, b = picture[10 * 8 + 4, 20 * 8 + 4].astype(int)
    assert g > 200 and r < 120
    assert picture[2 * 8 + 4, 2 * 8 + 4].tolist() == [0, 0, 0]  # far from any point: the image


def test_every_deform_conv_of_a_model_is_drawn_on_the_image_grid():
    class Model(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.a = DeformConv2D(3, 4, 3, padding=1)
            self.pool = paddle.nn.MaxPool2D(2)
            self.b = DeformConv2D(4, 4, 3, stride=2, padding=1, modulated=False)

        def forward(self, x):
            return self.b(self.pool(self.a(x)))

    model = Model()
    _set_constant_offsets(model.b, 2.0, 0.0)
    model.train()
    pictures = visualize_offsets(model, paddle.rand([2, 3, 40, 40]), points=[(20, 20)], batch_index=1)
    assert list(pictures) == ["a", "b"] and model.training
    assert all(p.shape == (280, 280, 3) for p in pictures.values())  # 7x enlarged
    only = visualize_offsets(model, paddle.rand([3, 40, 40]), layer_names=["b"])
    assert list(only) == ["b"]
    with pytest.raises(ValueError, match="DeformConv2D"):
        visualize_offsets(paddle.nn.Conv2D(3, 3, 1), paddle.rand([1, 3, 8, 8]))
    with pytest.raises(ValueError, match="image"):
        visualize_offsets(model, paddle.rand([1, 3, 40, 40]), image=np.zeros((8, 8, 3), np.uint8))


def test_explicit_offsets_are_the_ones_drawn():
    class Model(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.dcn = DeformConv2D(1, 1, 1, modulated=False, offset_branch=False)

        def forward(self, x):
            offset = paddle.concat([paddle.full_like(x, 3.0), paddle.full_like(x, -2.0)], axis=1)
            return self.dcn(x, offset=offset)  # by keyword

    (picture,) = visualize_offsets(Model(), paddle.zeros([1, 1, 32, 32]), points=[(10, 20)]).values()
    r, g, b = picture[(10 + 3) * 8 + 4, (20 - 2) * 8 + 4].astype(int)  # the 1x1 kernel's sample
    assert r > 200 and g < 120 and b < 120


def test_display_image_scales_to_uint8():
    img = to_display_image(np.stack([np.zeros((2, 2)), np.ones((2, 2)), np.full((2, 2), 0.5)]))
    assert img.shape == (2, 2, 3) and img.dtype == np.uint8
    assert img[0, 0].tolist() == [0, 255, 128]


def test_command_line_demo_writes_a_png(tmp_path, monkeypatch):
    out = tmp_path / "sub" / "offsets.png"
    monkeypatch.setattr("sys.argv", [TOOL, "--demo", "--out", str(out), "--points", "20,20", "40,30"])
    runpy.run_path(TOOL, run_name="__main__")
    with Image.open(out) as image:
        assert image.size == (256, 256) and image.mode == "RGB"


def test_effective_dilation_measures_the_sampling_grid():
    """DCN v1's footprint measure: a plain grid gives its dilation, a grid stretched by k about
    any point gives k times it, and shapes are checked."""
    from paddle_dcn.engine.offsets import effective_dilation

    rng = np.random.default_rng(0)
    n, dg, kh, kw, h, w = 2, 2, 3, 3, 4, 5
    zero = np.zeros((n, dg * kh * kw, 2, h, w), np.float32)
    np.testing.assert_allclose(effective_dilation(zero, (kh, kw), (1, 1)), 1.0)
    np.testing.assert_allclose(effective_dilation(zero, (kh, kw), (2, 2)), 2.0)
    # stretch the grid by k about a random centre: offset = (k - 1) * (position - centre)
    k = rng.uniform(0.5, 3.0, size=(n, 1, 1, 1, h, w))
    centre = rng.normal(size=(n, 1, 1, 1, 2, h, w))
    pos = np.stack(np.meshgrid(np.arange(kh) * 2.0, np.arange(kw) * 2.0, indexing="ij"), -1)  # dilation 2
    pos = pos[None, None, :, :, :, None, None]
    off = ((k[:, :, :, :, None] - 1) * (pos - centre)) * np.ones((1, dg, 1, 1, 1, 1, 1))
    got = effective_dilation(off.reshape(n, dg * kh * kw, 2, h, w), (kh, kw), (2, 2))
    np.testing.assert_allclose(got, 2.0 * k[:, 0, 0, 0], rtol=1e-10)
    # a 1x3 kernel has horizontal neighbours only
    one_row = np.zeros((1, 3, 2, 1, 1))
    one_row[0, 2, 1] = 2.0  # last point moves 2 px right: distances 1 and 3
    np.testing.assert_allclose(effective_dilation(one_row, (1, 3)), 2.0)
    with pytest.raises(ValueError, match="offsets must be"):
        effective_dilation(zero[:, :5], (kh, kw))


def _probe_sampling_positions(layer, prediction, h, w):
    """Where layer's aggregation op samples, measured through the op itself: a value map whose
    two channels per group are the y and x pixel coordinates (bilinear sampling of a ramp is
    exact away from the border) and one-hot weights per kernel point. Returns [Ho, Wo, G, K, 2]
    (y, x) in the op's point order k = iw*kh + ih, for image 0."""
    from paddle_dcn.ops import deform_aggregate

    kh, kw = layer.kernel_size
    k, g = kh * kw, layer.groups
    n, ho, wo = prediction.shape[:3]
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    value = paddle.to_tensor(np.tile(np.stack([ys, xs], -1)[None], [n, 1, 1, g]))
    pred = prediction.astype("float64").numpy()
    if hasattr(layer, "offset_mask"):  # DCNv4: per group 2K offsets, K weights
        offset = pred[..., : g * 3 * k].reshape(n, ho, wo, g, 3 * k)[..., : 2 * k].reshape(n, ho, wo, -1)
    else:
        offset = pred
    out = np.zeros([ho, wo, g, k, 2])
    for point in range(k):
        weight = np.zeros([n, ho, wo, g, k])
        weight[..., point] = 1.0
        y = deform_aggregate(value, paddle.to_tensor(offset), paddle.to_tensor(weight.reshape(n, ho, wo, -1)),
                             layer.kernel_size, layer.stride, layer.padding, layer.dilation, g, layer.offset_scale)
        out[:, :, :, point] = y.numpy()[0].reshape(ho, wo, g, 2)
    return out


@pytest.mark.parametrize("kind", ["DCNv3", "DCNv4"])
def test_dcnv3_dcnv4_offsets_read_as_the_op_samples(kind):
    """engine.offsets / visualize read DCNv3 and DCNv4 offsets (their projections' outputs) in
    DeformConv2D's layout: the locations drawn are where the op samples, measured through the
    op on a coordinate ramp (kernel 3x5, dilation (1, 2), offset_scale 0.7, 2 groups)."""
    from paddle_dcn import DCNv3, DCNv4
    from paddle_dcn.engine.offsets import capture_offsets

    paddle.seed(0)
    cls = DCNv3 if kind == "DCNv3" else DCNv4
    layer = cls(8, kernel_size=(3, 5), dilation=(1, 2), groups=2, offset_scale=0.7)
    predictor = layer.offset_predictor
    predictor.weight.set_value(paddle.randn(predictor.weight.shape) * 0.2)
    predictor.bias.set_value(paddle.randn(predictor.bias.shape) * 0.3)
    x = paddle.randn([1, 8, 12, 13])
    seen = {}
    handle = predictor.register_forward_post_hook(lambda _l, _i, out: seen.setdefault("p", out))
    model = paddle.nn.Sequential(layer)
    offsets = capture_offsets(model, lambda: model(x))
    handle.remove()
    assert list(offsets) == ["0"]
    off = offsets["0"]
    assert off.shape == (1, 2 * 15, 2, 12, 13)
    probe = _probe_sampling_positions(layer, seen["p"], 12, 13)
    checked = 0
    for i, j in [(3, 4), (6, 6), (8, 9), (5, 10)]:
        locations, _ = sampling_locations(layer, off[0].reshape(-1, 12, 13), None, [(i, j)])
        got = locations[0].reshape(2, 3, 5, 2)  # [G, kh, kw, (y, x)] row-major
        for grp in range(2):
            for ih in range(3):
                for iw in range(5):
                    want = probe[i, j, grp, iw * 3 + ih]
                    y, x_ = got[grp, ih, iw]
                    if 1 <= y <= 10 and 1 <= x_ <= 11:  # all four neighbours inside the map
                        np.testing.assert_allclose([y, x_], want, atol=1e-4)
                        checked += 1
    assert checked > 60
    (picture,) = visualize_offsets(layer, x, points=[(6, 6)]).values()
    assert picture.dtype == np.uint8 and picture.ndim == 3
