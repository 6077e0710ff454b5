"""SpatialTransformer: identity at initialisation, known transforms, gradients, arguments."""
import numpy as np
import paddle
import pytest

from paddle_dcn import SpatialTransformer
from paddle_dcn.layers import DefaultLocalization


def small_localization(channels: int) -> paddle.nn.Layer:
    return paddle.nn.Sequential(
        paddle.nn.Conv2D(channels, 4, 3, padding=1), paddle.nn.ReLU(),
        paddle.nn.AdaptiveAvgPool2D(2), paddle.nn.Flatten(), paddle.nn.Linear(16, 6),
    )


@pytest.mark.parametrize("localization", [None, "custom"])
def test_identity_at_init_returns_input(localization):
    x = paddle.randn([2, 3, 9, 7])
    layer = SpatialTransformer(small_localization(3) if localization else None)
    np.testing.assert_allclose(layer(x).numpy(), x.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        layer.theta(x).numpy(), np.tile([[1, 0, 0], [0, 1, 0]], (2, 1, 1)), atol=0
    )


def test_output_size_at_init_is_a_half_pixel_resize():
    x = paddle.randn([1, 2, 5, 6])
    out = SpatialTransformer(output_size=(9, 11))(x)
    # grid_sample zero-pads outside the map; interpolate clamps: compare away from the border
    expected = paddle.nn.functional.interpolate(x, size=[9, 11], mode="bilinear", align_corners=False)
    np.testing.assert_allclose(out.numpy()[..., 1:-1, 1:-1], expected.numpy()[..., 1:-1, 1:-1],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [[1, 3, 4, 1], [2, 1, 1, 5], [1, 2, 1, 1]])
def test_one_pixel_maps(shape):
    x = paddle.randn(shape)
    out = SpatialTransformer()(x)
    np.testing.assert_allclose(out.numpy(), x.numpy(), rtol=1e-5, atol=1e-5)


def test_flip_transform_flips_the_input():
    layer = SpatialTransformer()
    layer.localization.head[-1].bias.set_value(paddle.to_tensor([-1.0, 0, 0, 0, 1, 0]))
    x = paddle.randn([2, 3, 4, 5])
    np.testing.assert_allclose(layer(x).numpy(), x.numpy()[..., ::-1], rtol=1e-5, atol=1e-5)


def test_gradients_reach_the_localization():
    layer = SpatialTransformer(small_localization(3))
    optimizer = paddle.optimizer.SGD(learning_rate=0.1, parameters=layer.parameters())
    x = paddle.randn([2, 3, 8, 8])  # stop_gradient=True, like data
    before = layer.localization[-1].bias.numpy().copy()
    (layer(x) * paddle.randn([2, 3, 8, 8])).sum().backward()
    optimizer.step()
    assert np.abs(layer.localization[-1].bias.numpy() - before).max() > 0


def test_parameter_count_of_the_default_localization():
    expected = (8 * 25 + 8) + (10 * 8 * 9 + 10) + (160 * 32 + 32) + (32 * 6 + 6)
    assert sum(int(np.prod(p.shape)) for p in SpatialTransformer().parameters()) == expected
    assert DefaultLocalization()(paddle.randn([1, 5, 30, 20])).shape == [1, 6]


@pytest.mark.parametrize(
    "localization",
    [
        paddle.nn.Sequential(paddle.nn.Flatten(), paddle.nn.Linear(12, 5)),
        paddle.nn.Sequential(paddle.nn.Conv2D(3, 6, 1)),
        paddle.nn.Sequential(paddle.nn.Flatten(), paddle.nn.Linear(12, 6, bias_attr=False)),
        paddle.nn.ReLU(),
        "not a layer",
    ],
)
def test_bad_localization(localization):
    with pytest.raises(ValueError, match="localization"):
        SpatialTransformer(localization)


def test_bad_output_size():
    with pytest.raises(ValueError, match="output_size"):
        SpatialTransformer(output_size=(0, 4))
