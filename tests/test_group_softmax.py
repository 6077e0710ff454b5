"""ops.group_softmax.group_softmax (the DCNv3 layer's softmax over each group's K weights;
pdcn_group_softmax in CPU dygraph) against Paddle's softmax and numpy, and where it runs
(traced programs keep Paddle's softmax)."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddle_dcn import DCNv3
from paddle_dcn.ops import load_library
from paddle_dcn.ops._library import run_op
from paddle_dcn.ops.group_softmax import group_softmax
from op_spy import spy_on_run_op, traced_op_names
from thread_helpers import assert_same_results_with_1_and_2_threads


def _paddle_group_softmax(x, k):
    return paddle.flatten(F.softmax(paddle.unflatten(x, -1, [x.shape[-1] // k, k]), axis=-1),
                          start_axis=len(x.shape) - 1)


@pytest.mark.parametrize("shape, k", [((5, 18), 9), ((2, 3, 4, 36), 9), ((7, 5), 5), ((3, 16), 1), ((4, 24), 8),
                                      ((3, 2, 50), 25), ((0, 9), 9)])
@pytest.mark.parametrize("dtype, rtol, atol", [("float64", 1e-14, 1e-14), ("float32", 4e-7, 1e-6)])
def test_values_and_gradients_match_paddle_and_numpy(shape, k, dtype, rtol, atol, monkeypatch):
    """float32 gradients to 1e-6 absolute: y * (g - sum y g) cancels."""
    calls = spy_on_run_op(monkeypatch, "paddle_dcn.ops.group_softmax")
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(shape) * 4
    g_np = rng.standard_normal(shape)
    z = x_np.reshape(-1, k)
    e = np.exp(z - z.max(-1, keepdims=True))
    y_ref = (e / e.sum(-1, keepdims=True))
    g = g_np.reshape(-1, k)
    gx_ref = (y_ref * (g - (y_ref * g).sum(-1, keepdims=True))).reshape(shape)
    results = []
    for f in (group_softmax, _paddle_group_softmax):
        x = paddle.to_tensor(x_np.astype(dtype), stop_gradient=False)
        y = f(x, k)
        (gx,) = paddle.grad([y], [x], grad_outputs=[paddle.to_tensor(g_np.astype(dtype))])
        results.append((y.numpy(), gx.numpy()))
    assert calls == ["pdcn_group_softmax"]
    for ours, paddles, reference in zip(results[0], results[1], (y_ref.reshape(shape), gx_ref)):
        np.testing.assert_allclose(ours, reference, rtol=rtol, atol=atol)
        np.testing.assert_allclose(ours, paddles, rtol=rtol, atol=atol)


def test_float32_exponential_over_its_range():
    """Rows [x, 0]: y0 = e^x / (e^x + 1), x from -100 to 0 (the range a softmax feeds its
    exponential: value minus the row's maximum), against float64 to 2 ulp where e^x is a
    normal float; below that the result is 0."""
    load_library()
    xs = np.linspace(-100, 0, 400001).astype("float32")
    y = run_op("pdcn_group_softmax", paddle.to_tensor(np.stack([xs, np.zeros_like(xs)], 1)), 2).numpy()
    ex = np.exp(xs.astype("float64"))
    ref = ex / (ex + 1)
    normal = ref > np.finfo("float32").tiny
    np.testing.assert_allclose(y[normal, 0], ref[normal], rtol=2.4e-7, atol=0)
    assert (y[~normal, 0] <= np.finfo("float32").tiny).all()
    np.testing.assert_allclose(y[:, 1], 1 / (ex + 1), rtol=2.4e-7)


def test_non_finite_rows():
    """A NaN or +inf makes its row NaN (as Paddle's); -inf is a zero weight; the other rows are
    untouched."""
    x = paddle.to_tensor(np.array([[1, np.nan, 2, 0, 1, 2], [1, np.inf, 2, -np.inf, 1, 2]], "float32"))
    y = group_softmax(x, 3).numpy()
    assert np.isnan(y[0, :3]).all() and np.isnan(y[1, :3]).all()
    e = np.exp(np.array([0, 1, 2]) - 2.0)
    np.testing.assert_allclose(y[0, 3:], e / e.sum(), rtol=1e-6)
    np.testing.assert_allclose(y[1, 3:], [0, 1 / (1 + np.e), np.e / (1 + np.e)], rtol=1e-6)


def test_bad_shapes_raise_clear_errors():
    load_library()
    with pytest.raises(Exception, match="last axis must be a multiple of group_size 4"):
        run_op("pdcn_group_softmax", paddle.randn([2, 9]), 4)
    with pytest.raises(Exception, match="group_size must be positive"):
        run_op("pdcn_group_softmax", paddle.randn([2, 9]), 0)
    with pytest.raises(Exception, match="float32 or float64"):
        run_op("pdcn_group_softmax", paddle.ones([2, 9], dtype="int32"), 9)


def test_results_do_not_depend_on_the_thread_count(tmp_path):
    assert_same_results_with_1_and_2_threads(
        tmp_path,
        "import numpy as np, paddle, sys\n"
        "from paddle_dcn.ops.group_softmax import group_softmax\n"
        "rng = np.random.default_rng(0)\n"
        "x = paddle.to_tensor(rng.standard_normal((5, 37, 31, 36)).astype('float32'), stop_gradient=False)\n"
        "y = group_softmax(x, 9)\n"
        "(gx,) = paddle.grad([(y * y).sum()], [x])\n"
        "np.savez(sys.argv[1], y=y.numpy(), gx=gx.numpy())\n")


def test_dcnv3_runs_it_in_cpu_dygraph_and_paddles_softmax_when_traced(monkeypatch):
    calls = spy_on_run_op(monkeypatch, "paddle_dcn.ops.group_softmax")
    layer = DCNv3(8, groups=2)
    layer(paddle.randn([2, 8, 5, 5]))
    assert calls == ["pdcn_group_softmax"]
    layer.eval()
    ops = traced_op_names(layer)
    assert "pd_op.softmax" in ops
    assert not any("group_softmax" in name for name in ops)
