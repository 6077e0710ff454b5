"""AddCoords / CoordConv against a conv over explicitly concatenated numpy coordinates."""
import numpy as np
import paddle
import pytest

from paddle_dcn import AddCoords, CoordConv


def numpy_coords(n: int, h: int, w: int, with_r: bool) -> np.ndarray:
    """``[n, 2(+1), h, w]``: x then y, each arange(k)/(k-1)*2-1 (0 when k == 1), then r."""
    xs = np.arange(w) / (w - 1) * 2 - 1 if w > 1 else np.zeros(1)
    ys = np.arange(h) / (h - 1) * 2 - 1 if h > 1 else np.zeros(1)
    xx = np.broadcast_to(xs[None, :], (h, w))
    yy = np.broadcast_to(ys[:, None], (h, w))
    channels = [xx, yy] + ([np.sqrt(xx**2 + yy**2)] if with_r else [])
    return np.broadcast_to(np.stack(channels)[None], (n, len(channels), h, w))


@pytest.mark.parametrize("with_r", [False, True])
@pytest.mark.parametrize("hw", [(5, 7), (4, 1), (1, 6), (1, 1)])
def test_add_coords_matches_numpy(with_r, hw):
    x = paddle.randn([2, 3, *hw])
    out = AddCoords(with_r)(x).numpy()
    assert out.shape == (2, 3 + 2 + with_r, *hw)
    np.testing.assert_array_equal(out[:, :3], x.numpy())
    np.testing.assert_allclose(out[:, 3:], numpy_coords(2, *hw, with_r), rtol=1e-6, atol=1e-7)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("with_r", [False, True])
@pytest.mark.parametrize("hw", [(6, 5), (7, 1)])
def test_coord_conv_equals_conv_over_concatenated_coords(with_r, hw):
    layer = CoordConv(3, 4, 3, stride=1, padding=1, with_r=with_r)
    layer.conv.bias.set_value(paddle.randn([4]))
    x = paddle.randn([2, 3, *hw])
    concatenated = np.concatenate([x.numpy(), numpy_coords(2, *hw, with_r)], axis=1).astype("float32")
    reference = paddle.nn.Conv2D(3 + 2 + with_r, 4, 3, padding=1)
    reference.weight.set_value(layer.conv.weight)
    reference.bias.set_value(layer.conv.bias)
    expected = reference(paddle.to_tensor(concatenated)).numpy()
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_coordinates_carry_no_gradient_and_x_does():
    x = paddle.randn([1, 2, 4, 4])
    x.stop_gradient = False
    out = AddCoords(with_r=True)(x)
    (out * out).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy(), rtol=1e-6)


def test_coord_conv_conv_kwargs_and_parameter_count():
    layer = CoordConv(4, 8, 3, stride=2, padding=1, with_r=True, dilation=1, groups=1, bias_attr=False)
    assert layer.conv.bias is None
    assert sum(int(np.prod(p.shape)) for p in layer.parameters()) == 8 * 7 * 9
    assert layer(paddle.randn([1, 4, 9, 9])).shape == [1, 8, 5, 5]
    assert sum(int(np.prod(p.shape)) for p in CoordConv(4, 8, 1).parameters()) == 8 * 6 + 8
    assert "with_r=True" in repr(layer)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(in_channels=0), "in_channels"),
        (dict(out_channels=0), "out_channels"),
        (dict(with_r=1), "with_r"),
        (dict(data_format="NHWC"), "data_format"),
    ],
)
def test_bad_arguments(kwargs, argument):
    base = dict(in_channels=3, out_channels=4, kernel_size=3)
    base.update(kwargs)
    with pytest.raises(ValueError, match=argument):
        CoordConv(**base)


def test_wrong_input_channels():
    with pytest.raises(ValueError, match="in_channels=3"):
        CoordConv(3, 4, 1)(paddle.randn([1, 5, 4, 4]))
