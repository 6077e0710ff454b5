"""ops.channel_bias.add_channel_bias (the deformable op's bias; pdcn_add_channel_bias in CPU
dygraph) against numpy, and where it runs (to_static programs keep Paddle's add)."""
import os

import numpy as np
import paddle
import pytest

from paddle_dcn import DeformConv2D
from paddle_dcn.ops import deform_conv2d, load_library
from paddle_dcn.ops._library import run_op
from paddle_dcn.ops.channel_bias import add_channel_bias, in_cpu_dygraph
from op_spy import spy_on_run_op
from thread_helpers import assert_same_results_with_1_and_2_threads


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4), (1, 2, 3, 2, 2), (0, 3, 2, 2)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_values_and_gradients_match_numpy(shape, dtype):
    rng = np.random.default_rng(1)
    x_np = rng.standard_normal(shape).astype(dtype)
    b_np = rng.standard_normal(shape[1]).astype(dtype)
    g_np = rng.standard_normal(shape).astype(dtype)
    x = paddle.to_tensor(x_np, stop_gradient=False)
    b = paddle.to_tensor(b_np, stop_gradient=False)
    out = add_channel_bias(x, b)
    b_view = b_np.reshape([1, -1] + [1] * (len(shape) - 2))
    np.testing.assert_array_equal(out.numpy(), x_np + b_view)  # one rounding: exact
    gx, gb = paddle.grad([out], [x, b], grad_outputs=[paddle.to_tensor(g_np)])
    np.testing.assert_array_equal(gx.numpy(), g_np)
    axes = (0,) + tuple(range(2, len(shape)))
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(gb.numpy(), g_np.astype("float64").sum(axis=axes), rtol=tol, atol=tol)


def test_the_library_op_runs_in_cpu_dygraph(monkeypatch):
    calls = spy_on_run_op(monkeypatch, "paddle_dcn.ops.channel_bias")
    x = paddle.randn([2, 4, 3, 3])
    add_channel_bias(x, paddle.randn([4]))
    assert calls == ["pdcn_add_channel_bias"]
    assert in_cpu_dygraph(x) and not in_cpu_dygraph(x.astype("float16"))


def test_deform_conv2d_bias_gradient_matches_the_output_gradient_sum():
    rng = np.random.default_rng(2)
    t = lambda *s: paddle.to_tensor(rng.standard_normal(s).astype("float64"), stop_gradient=False)
    x, off, w, b = t(2, 4, 6, 6), t(2, 18, 6, 6), t(5, 4, 3, 3), t(5)
    g = rng.standard_normal((2, 5, 6, 6))
    with_bias = deform_conv2d(x, off, w, bias=b, padding=1)
    without = deform_conv2d(x, off, w, padding=1)
    np.testing.assert_allclose(with_bias.numpy(), without.numpy() + b.numpy().reshape(1, -1, 1, 1),
                               rtol=1e-13, atol=1e-13)
    (gb,) = paddle.grad([with_bias], [b], grad_outputs=[paddle.to_tensor(g)])
    np.testing.assert_allclose(gb.numpy(), g.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)


def test_bad_shapes_raise_clear_errors():
    """The library op's own checks (add_channel_bias's callers check shapes first)."""
    load_library()
    with pytest.raises(Exception, match=r"bias must be \[4\] \[C\], got \[3\]"):
        run_op("pdcn_add_channel_bias", paddle.randn([2, 4, 3, 3]), paddle.randn([3]))
    with pytest.raises(Exception, match=r"x must be \[N, C, \.\.\.\]"):
        run_op("pdcn_add_channel_bias", paddle.randn([4]), paddle.randn([4]))
    with pytest.raises(Exception, match="dtype"):
        run_op("pdcn_add_channel_bias", paddle.randn([2, 4]), paddle.randn([4], dtype="float64"))


def test_saved_programs_hold_paddles_add(tmp_path):
    layer = DeformConv2D(3, 4, 3, padding=1)
    layer.eval()
    spec = [paddle.static.InputSpec([None, 3, 8, 8], "float32", "x")]
    prefix = str(tmp_path / "m")
    paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True), prefix)
    program = open(next(p for p in (prefix + ".json", prefix + ".pdmodel") if os.path.exists(p)), "rb").read()
    assert b"pdcn_modulated_deform_conv2d" in program
    assert b"pdcn_add_channel_bias" not in program
    eager = DeformConv2D(3, 4, 3, padding=1)
    paddle.assign(paddle.randn([4]), eager.bias)
    x = paddle.randn([1, 3, 8, 8])
    expected = eager(x).numpy()
    sot = paddle.jit.to_static(eager, full_graph=False)  # SOT traces in dynamic mode
    np.testing.assert_allclose(sot(x).numpy(), expected, rtol=1e-6, atol=1e-6)


def test_bias_gradient_does_not_depend_on_the_thread_count(tmp_path):
    assert_same_results_with_1_and_2_threads(
        tmp_path,
        "import numpy as np, paddle, sys\n"
        "from paddle_dcn.ops.channel_bias import add_channel_bias\n"
        "rng = np.random.default_rng(0)\n"
        "x = paddle.to_tensor(rng.standard_normal((5, 7, 33, 31)).astype('float32'), stop_gradient=False)\n"
        "b = paddle.to_tensor(rng.standard_normal(7).astype('float32'), stop_gradient=False)\n"
        "out = add_channel_bias(x, b)\n"
        "(gb,) = paddle.grad([(out * out).sum()], [b])\n"
        "np.savez(sys.argv[1], out=out.numpy(), gb=gb.numpy())\n")
