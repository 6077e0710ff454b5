"""ops.plain_conv.conv2d_cpu (DeformConv2D's offset/mask branch on the CPU) against Paddle's
conv2d, and the layer's choice of path (CPU dygraph only; to_static programs keep conv2d)."""
import os

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddle_dcn import DeformConv2D
from paddle_dcn.layers._offset_conv import OffsetConv2D, takes_cpu_path
from paddle_dcn.ops import get_workspace_limit, set_workspace_limit
from paddle_dcn.ops import plain_conv
from paddle_dcn.ops.plain_conv import conv2d_cpu
from thread_helpers import assert_same_results_with_1_and_2_threads

# (N, C_in, H, W, C_out, kernel, stride, padding, dilation)
CONFIGS = [
    (2, 3, 7, 9, 5, (3, 3), 1, 1, 1),
    (3, 5, 9, 7, 6, (3, 3), (2, 2), (1, 2), (1, 2)),
    (1, 4, 6, 6, 27, (3, 3), 2, 0, 1),
    (2, 2, 5, 8, 3, (1, 3), 1, (0, 1), 1),
    (1, 3, 8, 8, 4, (5, 5), 1, 2, 1),
    (2, 6, 4, 5, 2, (1, 1), 1, 0, 1),
    (1, 1, 3, 3, 2, (3, 3), 1, 3, 2),  # padding wider than the map: many zero taps
]


def _inputs(n, c, h, w, cout, kernel, dtype, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    t = lambda *s: paddle.to_tensor(rng.standard_normal(s).astype(dtype), stop_gradient=False)  # noqa: E731
    return t(n, c, h, w), t(cout, c, *kernel), (t(cout) if bias else None)


def _both(x, weight, bias, stride, padding, dilation):
    """(ours, Paddle's): output and the gradients of sum(out * g) for x, weight, bias."""
    results = []
    for fn in (conv2d_cpu, F.conv2d):
        out = fn(x, weight, bias, stride=stride, padding=padding, dilation=dilation)
        g = paddle.to_tensor(np.random.default_rng(1).standard_normal(out.shape)).astype(out.dtype)
        leaves = [x, weight] + ([bias] if bias is not None else [])
        grads = paddle.grad([(out * g).sum()], leaves)
        results.append([out.numpy()] + [v.numpy() for v in grads])
    return results


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_matches_paddle_conv2d_in_float64(config, with_bias):
    n, c, h, w, cout, kernel, stride, padding, dilation = config
    x, weight, bias = _inputs(n, c, h, w, cout, kernel, "float64", bias=with_bias)
    ours, theirs = _both(x, weight, bias, stride, padding, dilation)
    for name, a, b in zip(("out", "grad_x", "grad_weight", "grad_bias"), ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=name)


def test_matches_paddle_conv2d_in_float32():
    x, weight, bias = _inputs(4, 16, 12, 12, 27, (3, 3), "float32")
    ours, theirs = _both(x, weight, bias, 1, 1, 1)
    for name, a, b in zip(("out", "grad_x", "grad_weight", "grad_bias"), ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)


def test_chunked_batches_equal_unchunked():
    x, weight, bias = _inputs(5, 3, 7, 6, 4, (3, 3), "float64")
    whole, _ = _both(x, weight, bias, 1, 1, 1)
    previous = get_workspace_limit()
    set_workspace_limit(1)  # one image per chunk
    try:
        chunked, _ = _both(x, weight, bias, 1, 1, 1)
    finally:
        set_workspace_limit(previous)
    for a, b in zip(whole, chunked):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("overrides, pattern", [
    (dict(weight=np.zeros((4, 2, 3, 3), dtype="float32")), r"weight must have shape .*\[4, 3, 3, 3\]"),
    (dict(bias=np.zeros((5,), dtype="float32")), r"bias must have shape .*\[4\]"),
    (dict(x=np.zeros((3, 6, 6), dtype="float32")), r"x must be a 4-D tensor \[N, C_in, H, W\], got shape \[3, 6, 6\]"),
    (dict(weight=np.zeros((4, 3, 3, 3), dtype="float64")), "weight .*dtype"),
])
def test_bad_input_raises_value_error(overrides, pattern):
    f32 = lambda *s: np.zeros(s, dtype="float32")  # noqa: E731
    args = dict(x=f32(2, 3, 6, 6), weight=f32(4, 3, 3, 3), bias=f32(4))
    args.update(overrides)
    tensors = {k: paddle.to_tensor(v) for k, v in args.items()}
    with pytest.raises(ValueError, match=pattern):
        conv2d_cpu(tensors["x"], tensors["weight"], tensors["bias"], padding=1)


def test_the_layer_branch_runs_on_the_cpu_path_in_dygraph(monkeypatch):
    calls = []
    real = plain_conv.conv2d_cpu

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)
    monkeypatch.setattr("paddle_dcn.layers._offset_conv.conv2d_cpu", spy)
    layer = DeformConv2D(4, 6, 3, padding=1)
    assert isinstance(layer.conv_offset, (OffsetConv2D, paddle.nn.Conv2D))
    x = paddle.randn([2, 4, 8, 8])
    layer(x)
    assert calls == [[2, 4, 8, 8]]
    assert takes_cpu_path(layer.conv_offset, x)
    assert not takes_cpu_path(layer.conv_offset, x.astype("float16"))
    same = OffsetConv2D(4, 6, 3, padding="same")
    assert not takes_cpu_path(same, x)  # 'same' padding stays on Paddle's conv2d
    np.testing.assert_allclose(same(x).numpy(), F.conv2d(x, same.weight, same.bias, padding=1).numpy(),
                               rtol=1e-6, atol=1e-6)


def test_forward_hooks_on_the_branch_still_fire():
    layer = DeformConv2D(3, 4, 3, padding=1)
    seen = []
    layer.conv_offset.register_forward_post_hook(lambda lay, inp, out: seen.append(out.shape))
    layer(paddle.randn([1, 3, 5, 5]))
    assert seen == [[1, 27, 5, 5]]


def test_saved_programs_hold_paddles_conv2d(tmp_path):
    layer = DeformConv2D(3, 4, 3, padding=1)
    layer.eval()
    spec = [paddle.static.InputSpec([None, 3, 8, 8], "float32", "x")]
    prefix = str(tmp_path / "m")
    paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True), prefix)
    program = open(next(p for p in (prefix + ".json", prefix + ".pdmodel") if os.path.exists(p)), "rb").read()
    assert b"pdcn_modulated_deform_conv2d" in program and b"conv2d" in program
    assert b"pdcn_conv2d" not in program
    sot = paddle.jit.to_static(DeformConv2D(3, 4, 3, padding=1), full_graph=False)
    sot(paddle.randn([1, 3, 8, 8]))  # SOT traces in dynamic mode: must still take conv2d


def test_results_do_not_depend_on_the_thread_count(tmp_path):
    """grad_x and grad_bias are bitwise equal with 1 and 2 threads (the weight gradient is a
    GEMM reduction the math library may split by thread count)."""
    assert_same_results_with_1_and_2_threads(
        tmp_path,
        "import numpy as np, paddle, sys\n"
        "from paddle_dcn.ops.plain_conv import conv2d_cpu\n"
        "rng = np.random.default_rng(0)\n"
        "t = lambda *s: paddle.to_tensor(rng.standard_normal(s).astype('float32'), stop_gradient=False)\n"
        "x, w, b = t(3, 8, 12, 12), t(27, 8, 3, 3), t(27)\n"
        "y = conv2d_cpu(x, w, b, padding=1)\n"
        "gx, gb = paddle.grad([(y * y).sum()], [x, b])\n"
        "np.savez(sys.argv[1], y=y.numpy(), gx=gx.numpy(), gb=gb.numpy())\n")
