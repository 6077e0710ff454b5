"""ops.layer_norm.layer_norm_last_axis (the DCNv3 layer's LayerNorm; pdcn_layer_norm_last_axis in
CPU dygraph) against Paddle's layer_norm and a numpy reference, and where it runs (traced
programs keep Paddle's layer_norm)."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddle_dcn import DCNv3
from paddle_dcn.ops import load_library
from paddle_dcn.ops._library import run_op
from paddle_dcn.ops.layer_norm import layer_norm_last_axis
from op_spy import spy_on_run_op, traced_op_names
from thread_helpers import assert_same_results_with_1_and_2_threads


def _numpy_layer_norm(x, w, b, g, eps):
    """float64 LayerNorm over the last axis and its gradients, written out."""
    mu = x.mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    xhat = (x - mu) * rstd
    gy = g * w
    gx = rstd * (gy - gy.mean(-1, keepdims=True) - xhat * (gy * xhat).mean(-1, keepdims=True))
    axes = tuple(range(x.ndim - 1))
    return xhat * w + b, gx, (g * xhat).sum(axis=axes), g.sum(axis=axes)


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 4, 16), (3, 130), (70, 9), (1, 1), (0, 8)])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 2e-5)])
def test_values_and_gradients_match_paddle_and_numpy(shape, dtype, tol, monkeypatch):
    calls = spy_on_run_op(monkeypatch, "paddle_dcn.ops.layer_norm")
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(shape) * 3 + 1
    w_np, b_np = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    g_np = rng.standard_normal(shape)
    want = _numpy_layer_norm(x_np, w_np, b_np, g_np, 1e-5)
    results = []
    for f in (layer_norm_last_axis, lambda x, w, b, e: F.layer_norm(x, x.shape[-1:], w, b, e)):
        x, w, b = (paddle.to_tensor(a.astype(dtype), stop_gradient=False) for a in (x_np, w_np, b_np))
        y = f(x, w, b, 1e-5)
        grads = paddle.grad([y], [x, w, b], grad_outputs=[paddle.to_tensor(g_np.astype(dtype))])
        results.append([y.numpy()] + [t.numpy() for t in grads])
    assert calls == ["pdcn_layer_norm_last_axis"]
    for ours, paddles, reference in zip(results[0], results[1], want):
        scale = max(1.0, float(np.abs(reference).max())) if reference.size else 1.0
        np.testing.assert_allclose(ours, reference, rtol=0, atol=tol * scale)
        np.testing.assert_allclose(ours, paddles, rtol=0, atol=tol * scale)


def test_a_constant_row_normalises_to_the_bias():
    """var = 0: xhat = 0 (rstd = 1/sqrt(eps)), y = bias, finite gradients."""
    x = paddle.full([2, 6], 3.5, dtype="float64")
    x.stop_gradient = False
    w, b = paddle.full([6], 2.0, dtype="float64"), paddle.arange(6, dtype="float64")
    y = layer_norm_last_axis(x, w, b, 1e-5)
    np.testing.assert_array_equal(y.numpy(), np.tile(np.arange(6.0), (2, 1)))
    (gx,) = paddle.grad([y.sum()], [x])
    assert np.isfinite(gx.numpy()).all()


def test_bad_shapes_raise_clear_errors():
    load_library()
    x = paddle.randn([2, 4])
    with pytest.raises(Exception, match=r"scale must be \[4\] \[C, the last axis of x\], got \[3\]"):
        run_op("pdcn_layer_norm_last_axis", x, paddle.ones([3]), paddle.zeros([4]), 1e-5)
    with pytest.raises(Exception, match=r"bias must be \[4\]"):
        run_op("pdcn_layer_norm_last_axis", x, paddle.ones([4]), paddle.zeros([5]), 1e-5)
    with pytest.raises(Exception, match="dtype"):
        run_op("pdcn_layer_norm_last_axis", x, paddle.ones([4], dtype="float64"), paddle.zeros([4]), 1e-5)
    with pytest.raises(Exception, match="epsilon must be >= 0"):
        run_op("pdcn_layer_norm_last_axis", x, paddle.ones([4]), paddle.zeros([4]), -1.0)


def test_results_do_not_depend_on_the_thread_count(tmp_path):
    assert_same_results_with_1_and_2_threads(
        tmp_path,
        "import numpy as np, paddle, sys\n"
        "from paddle_dcn.ops.layer_norm import layer_norm_last_axis\n"
        "rng = np.random.default_rng(0)\n"
        "t = lambda *s: paddle.to_tensor(rng.standard_normal(s).astype('float32'), stop_gradient=False)\n"
        "x, w, b = t(5, 37, 31, 24), t(24), t(24)\n"
        "y = layer_norm_last_axis(x, w, b, 1e-6)\n"
        "gx, gw, gb = paddle.grad([(y * y).sum()], [x, w, b])\n"
        "np.savez(sys.argv[1], y=y.numpy(), gx=gx.numpy(), gw=gw.numpy(), gb=gb.numpy())\n")


def test_dcnv3_runs_it_in_cpu_dygraph_and_paddles_layer_norm_when_traced(monkeypatch):
    calls = spy_on_run_op(monkeypatch, "paddle_dcn.ops.layer_norm")
    paddle.seed(1)
    layer = DCNv3(8, groups=2)
    assert list(layer.dw_norm.state_dict()) == ["weight", "bias"]  # nn.LayerNorm's keys
    layer(paddle.randn([2, 8, 5, 5]))
    assert calls == ["pdcn_layer_norm_last_axis"]
    layer.eval()
    ops = traced_op_names(layer)
    assert "pd_op.layer_norm" in ops
    assert not any("layer_norm_last_axis" in name for name in ops)


@pytest.mark.parametrize("path", ["to_static", "auto_cast"])
def test_a_frozen_norm_weight_keeps_the_input_gradient_right_off_the_library_op(path):
    """Paddle 3.3.1's CPU layer_norm gets the input gradient wrong when its weight needs no
    gradient; DCNv3's LayerNorm takes Paddle's op when traced and under auto_cast, so with
    dw_norm.weight frozen it applies the affine step itself there. Reference: CPU dygraph
    (this library's op, checked against numpy above)."""
    paddle.seed(2)
    layer = DCNv3(8, groups=2)
    for _, p in layer.named_parameters():  # trained-like: the zero-initialised offset and mask
        p.set_value(paddle.randn(p.shape) * 0.3)  # projections would pass no gradient to the norm
    layer.dw_norm.weight.stop_gradient = True
    x = paddle.randn([2, 8, 6, 5])
    cot = paddle.randn([2, 8, 6, 5])

    def grads(run):
        xv = x.detach()
        xv.stop_gradient = False
        (run(xv) * cot).sum().backward()
        out = [xv.grad.numpy(), layer.dw_conv.bias.grad.numpy()]
        layer.clear_gradients()
        return out

    want = grads(layer)
    if path == "to_static":
        static = paddle.jit.to_static(layer, full_graph=True)
        got = grads(static)
    else:
        def amp(xv):
            with paddle.amp.auto_cast(dtype="bfloat16"):
                return layer(xv)
        got = grads(amp)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5)
