"""Layers under paddle.amp.auto_cast and with half-precision inputs on CPU.

On CPU our ops have float32/float64 kernels only: the layers run them in float32 when
activations or parameters arrive in bfloat16/float16. (Measured with Paddle 3.3.1: on CPU
``auto_cast`` warns that it "makes no effect" and ``amp.decorate`` leaves parameters alone, so
there it must simply not break anything; the half-precision paths are exercised by feeding
bfloat16 activations and parameters directly.)
"""
import numpy as np
import paddle
import pytest

from paddle_dcn import CoordConv, DeformConv2D, SpatialTransformer

pytestmark = pytest.mark.filterwarnings("ignore:amp_guard can only be enabled")


def _layers():
    dcn = DeformConv2D(3, 4, 3, padding=1)
    dcn.conv_offset.weight.set_value(paddle.randn(dcn.conv_offset.weight.shape) * 0.1)
    return [
        dcn,
        DeformConv2D(3, 4, 3, padding=1, modulated=False),
        CoordConv(3, 4, 3, padding=1, with_r=True),
        SpatialTransformer(),
    ]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_auto_cast_o1_matches_float32_and_backpropagates(dtype):
    x = paddle.randn([2, 3, 8, 8])
    for layer in _layers():
        expected = layer(x).numpy()
        with paddle.amp.auto_cast(level="O1", dtype=dtype):
            out = layer(x)
        assert out.dtype == paddle.float32
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)
        out.sum().backward()
        grads = [p.grad for p in layer.parameters() if not p.stop_gradient]
        assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)


def test_bfloat16_parameters_are_cast_back():
    layer = DeformConv2D(3, 4, 3, padding=1, modulated=False, offset_branch=False)
    layer.bias.set_value(paddle.randn([4]))
    x = paddle.randn([2, 3, 6, 6])
    offset = paddle.randn([2, 18, 6, 6])
    layer.to(dtype="bfloat16")  # what amp.decorate(level="O2") does on GPU (a no-op on CPU)
    assert layer.weight.dtype == paddle.bfloat16
    with paddle.amp.auto_cast(level="O2", dtype="bfloat16"):
        out = layer(x, offset)
    assert out.dtype == paddle.float32
    # reference: float32 math on the bfloat16-rounded parameters
    rounded = DeformConv2D(3, 4, 3, padding=1, modulated=False, offset_branch=False)
    rounded.weight.set_value(layer.weight.astype("float32"))
    rounded.bias.set_value(layer.bias.astype("float32"))
    np.testing.assert_allclose(out.numpy(), rounded(x, offset).numpy(), rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.dtype == paddle.bfloat16


def test_bfloat16_activations_are_computed_in_float32():
    layer = DeformConv2D(3, 4, 3, padding=1, offset_branch=False)
    x = paddle.randn([1, 3, 5, 5]).astype("bfloat16")
    offset = paddle.randn([1, 18, 5, 5]).astype("bfloat16")
    mask = paddle.rand([1, 9, 5, 5]).astype("bfloat16")
    out = layer(x, offset, mask)
    expected = layer(x.astype("float32"), offset.astype("float32"), mask.astype("float32"))
    assert out.dtype == paddle.float32
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-6)
