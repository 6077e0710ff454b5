"""ops.depthwise_conv2d_nhwc (the CPU channels-last depthwise conv of the DCNv3/v4 layers)
against Paddle's own grouped conv2d on NCHW, float64 and float32, every gradient; thread-count
independence; errors; and the layers' use of it (CPU dygraph only)."""

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddle_dcn import DCNv3
from paddle_dcn.layers._aggregate_block import DepthwiseConv2D
from paddle_dcn.ops.depthwise_conv import depthwise_conv2d_nhwc
from op_spy import traced_op_names
from thread_helpers import assert_same_results_with_1_and_2_threads

CONFIGS = {  # (N, H, W, C, kh, kw, stride, padding, dilation)
    "3x3": (2, 9, 10, 5, 3, 3, 1, 1, 1),
    "5x5_stride2": (2, 11, 9, 16, 5, 5, 2, 2, 1),
    "3x5_stride2x1_pad1x0": (1, 8, 12, 24, 3, 5, (2, 1), (1, 0), 1),
    "dilation2": (3, 10, 10, 9, 3, 3, 1, 2, 2),
    "one_channel_7x7": (2, 7, 8, 1, 7, 7, 1, 3, 1),
    "no_padding_wide": (1, 6, 6, 40, 3, 3, 1, 0, 1),
}


def _inputs(cfg, dtype, seed=0):
    n, h, w, c, kh, kw = cfg[:6]
    rng = np.random.default_rng(seed)
    t = lambda *s: paddle.to_tensor(rng.standard_normal(s).astype(dtype), stop_gradient=False)  # noqa: E731
    return t(n, h, w, c), t(c, 1, kh, kw), t(c)


def _paddle_reference(x, weight, bias, stride, padding, dilation):
    y = F.conv2d(x.transpose([0, 3, 1, 2]), weight, bias, stride=stride, padding=padding, dilation=dilation,
                 groups=x.shape[3])
    return y.transpose([0, 2, 3, 1])


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_paddle_grouped_conv2d_with_every_gradient(name, dtype, tol):
    cfg = CONFIGS[name]
    stride, padding, dilation = cfg[6:]
    x, w, b = _inputs(cfg, dtype)
    got = depthwise_conv2d_nhwc(x, w, b, stride, padding, dilation)
    want = _paddle_reference(x, w, b, stride, padding, dilation)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=tol, atol=tol)
    g = paddle.randn(got.shape, dtype=dtype)  # a non-uniform output gradient
    for a, r, what in zip(paddle.grad([got], [x, w, b], [g]), paddle.grad([want], [x, w, b], [g]),
                          ("grad_x", "grad_weight", "grad_bias")):
        np.testing.assert_allclose(a.numpy(), r.numpy(), rtol=tol, atol=tol * 10, err_msg=what)


def test_results_do_not_depend_on_the_thread_count(tmp_path):
    """Every output and gradient bitwise equal with 1 and 2 threads (the weight and bias
    gradients are sums over fixed chunks of rows)."""
    assert_same_results_with_1_and_2_threads(
        tmp_path,
        "import numpy as np, paddle, sys\n"
        "from paddle_dcn.ops.depthwise_conv import depthwise_conv2d_nhwc\n"
        "rng = np.random.default_rng(0)\n"
        "t = lambda *s: paddle.to_tensor(rng.standard_normal(s).astype('float32'), stop_gradient=False)\n"
        "x, w, b = t(3, 13, 11, 20), t(20, 1, 3, 3), t(20)\n"
        "y = depthwise_conv2d_nhwc(x, w, b, 2, 1, 1)\n"
        "gx, gw, gb = paddle.grad([(y * y).sum()], [x, w, b])\n"
        "np.savez(sys.argv[1], y=y.numpy(), gx=gx.numpy(), gw=gw.numpy(), gb=gb.numpy())\n")


def test_bad_arguments_are_named():
    x, w, b = _inputs((1, 5, 5, 4, 3, 3), "float32")
    with pytest.raises(ValueError, match=r"x must be 4-D \[N, H, W, C\]"):
        depthwise_conv2d_nhwc(x[0], w, b)
    with pytest.raises(ValueError, match=r"weight must be \[C, 1, kh, kw\] with C = 4"):
        depthwise_conv2d_nhwc(x, paddle.zeros([4, 2, 3, 3]), b)
    with pytest.raises(ValueError, match=r"bias must have shape \[C\] = \[4\], got \[3\]"):
        depthwise_conv2d_nhwc(x, w, paddle.zeros([3]))
    with pytest.raises(ValueError, match="weight must have the dtype of x"):
        depthwise_conv2d_nhwc(x, w.astype("float64"), b)
    with pytest.raises(ValueError, match="the output would be empty"):
        depthwise_conv2d_nhwc(x, paddle.zeros([4, 1, 7, 7]), b)
    with pytest.raises(ValueError, match="supports float32 and float64"):
        depthwise_conv2d_nhwc(x.astype("int32"), w, b)


def test_layers_take_it_in_cpu_dygraph_and_paddle_conv2d_when_traced():
    paddle.seed(0)
    conv = DepthwiseConv2D(6, 3, [2, 2])
    conv.bias.set_value(paddle.randn([6]))
    x = paddle.randn([2, 7, 9, 6])
    eager = conv.forward_nhwc(x)
    np.testing.assert_allclose(eager.numpy(), conv(x.transpose([0, 3, 1, 2])).transpose([0, 2, 3, 1]).numpy(),
                               atol=1e-5)
    assert list(conv.state_dict()) == ["weight", "bias"]  # nn.Conv2D's keys: old checkpoints load
    layer = DCNv3(8, groups=2)
    layer.eval()
    ops = traced_op_names(layer)
    assert "pd_op.depthwise_conv2d" in ops or "pd_op.conv2d" in ops
    assert not any("depthwise_conv2d_nhwc" in name for name in ops)
