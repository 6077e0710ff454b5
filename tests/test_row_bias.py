"""ops.row_bias.add_row_bias (the bias of the DCNv3/DCNv4 layers' channels-last projections;
pdcn_add_row_bias in CPU dygraph) against numpy, the projections against nn.Linear, and where
the op runs (a leaf that needs a gradient and traced programs keep Paddle's add)."""
import numpy as np
import paddle
import pytest
from paddle import nn

from paddle_dcn import DCNv3, DCNv4
from paddle_dcn.layers._aggregate_block import Projection, projection, zero_projection
from paddle_dcn.ops import load_library
from paddle_dcn.ops._library import run_op
from paddle_dcn.ops.row_bias import add_row_bias
from op_spy import spy_on_run_op, traced_op_names
from thread_helpers import assert_same_results_with_1_and_2_threads


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 4, 112), (1, 16), (130, 3), (0, 4), (3, 0)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_values_and_gradients_match_numpy(shape, dtype, monkeypatch):
    calls = spy_on_run_op(monkeypatch, "paddle_dcn.ops.row_bias")
    rng = np.random.default_rng(1)
    x_np = rng.standard_normal(shape).astype(dtype)
    b_np = rng.standard_normal(shape[-1]).astype(dtype)
    g_np = rng.standard_normal(shape).astype(dtype)
    leaf = paddle.to_tensor(x_np, stop_gradient=False)
    b = paddle.to_tensor(b_np, stop_gradient=False)
    x = leaf * 1.0  # not a leaf: the library op's case
    out = add_row_bias(x, b)
    assert calls == ["pdcn_add_row_bias"]
    np.testing.assert_array_equal(out.numpy(), x_np + b_np)  # one rounding: exact
    gx, gb = paddle.grad([out], [leaf, b], grad_outputs=[paddle.to_tensor(g_np)])
    np.testing.assert_array_equal(gx.numpy(), g_np)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(gb.numpy(), g_np.astype("float64").sum(axis=tuple(range(len(shape) - 1))),
                               rtol=tol, atol=tol)


def test_a_leaf_that_needs_a_gradient_takes_paddles_add(monkeypatch):
    """The op hands grad_out on as x's gradient without a copy. A leaf's .grad is written in
    place (accumulation, clear_grad), which would write into whatever shares it: here the
    output's retained gradient."""
    calls = spy_on_run_op(monkeypatch, "paddle_dcn.ops.row_bias")
    x = paddle.ones([2, 3])
    x.stop_gradient = False
    b = paddle.zeros([3])
    b.stop_gradient = False
    y = add_row_bias(x, b)
    assert calls == []
    y.retain_grads()
    y.sum().backward()
    (x * 5).sum().backward()  # accumulates into x.grad in place
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 6.0))
    np.testing.assert_array_equal(y.grad.numpy(), np.ones((2, 3)))
    add_row_bias(paddle.ones([2, 3]), b)  # a leaf without a gradient: the op
    assert calls == ["pdcn_add_row_bias"]


def test_retained_gradients_of_a_non_leaf_input_are_paddles():
    """A non-leaf input's retained gradient behaves as with Paddle's add (replaced by each
    backward, the output's untouched)."""
    got = []
    for add in (add_row_bias, lambda t, bias: t + bias):
        a = paddle.ones([2, 3])
        a.stop_gradient = False
        b = paddle.zeros([3])
        b.stop_gradient = False
        t = a * 1.0
        t.retain_grads()
        y = add(t, b)
        y.retain_grads()
        (y * 1.0).sum().backward(retain_graph=True)
        (y * 2.0).sum().backward()
        got.append([t.grad.numpy(), y.grad.numpy(), a.grad.numpy(), b.grad.numpy()])
    for ours, paddles in zip(*got):
        np.testing.assert_array_equal(ours, paddles)


def test_bad_shapes_raise_clear_errors():
    """The library op's own checks (add_row_bias's callers check shapes first)."""
    load_library()
    with pytest.raises(Exception, match=r"bias must be \[4\] \[C, the last axis of x\], got \[3\]"):
        run_op("pdcn_add_row_bias", paddle.randn([2, 4]), paddle.randn([3]))
    with pytest.raises(Exception, match="dtype"):
        run_op("pdcn_add_row_bias", paddle.randn([2, 4]), paddle.randn([4], dtype="float64"))
    with pytest.raises(Exception, match="float32 or float64"):
        run_op("pdcn_add_row_bias", paddle.ones([2, 4], dtype="int32"), paddle.ones([4], dtype="int32"))


def test_bias_gradient_does_not_depend_on_the_thread_count(tmp_path):
    assert_same_results_with_1_and_2_threads(
        tmp_path,
        "import numpy as np, paddle, sys\n"
        "from paddle_dcn.ops.row_bias import add_row_bias\n"
        "rng = np.random.default_rng(0)\n"
        "leaf = paddle.to_tensor(rng.standard_normal((5, 37, 31, 24)).astype('float32'), stop_gradient=False)\n"
        "b = paddle.to_tensor(rng.standard_normal(24).astype('float32'), stop_gradient=False)\n"
        "out = add_row_bias(leaf * 1.0, b)\n"
        "(gb,) = paddle.grad([(out * out).sum()], [b])\n"
        "np.savez(sys.argv[1], out=out.numpy(), gb=gb.numpy())\n")


@pytest.mark.parametrize("make", [lambda: projection(6, 10), lambda: zero_projection(6, 10, 0.1, 0.5),
                                  lambda: projection(6, 10, bias=False)])
def test_projections_are_linears_with_the_same_results(make, monkeypatch):
    calls = spy_on_run_op(monkeypatch, "paddle_dcn.ops.row_bias")
    paddle.seed(3)
    ours = make()
    linear = nn.Linear(6, 10, bias_attr=None if ours.bias is not None else False)
    assert isinstance(ours, nn.Linear) and list(ours.state_dict()) == list(linear.state_dict())
    if ours.bias is not None:
        ours.bias.set_value(paddle.randn([10]))
    ours.weight.set_value(paddle.randn([6, 10]))
    linear.set_state_dict(ours.state_dict())
    rng = np.random.default_rng(2)
    x_np = rng.standard_normal((2, 3, 4, 6))
    g_np = rng.standard_normal((2, 3, 4, 10))
    results = []
    for layer in (ours.to(dtype="float64"), linear.to(dtype="float64")):
        x = paddle.to_tensor(x_np, stop_gradient=False)
        out = layer(x)
        out.backward(paddle.to_tensor(g_np))
        results.append([out.numpy(), x.grad.numpy()] + [p.grad.numpy() for p in layer.parameters()])
    assert calls == (["pdcn_add_row_bias"] if ours.bias is not None else [])
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [DCNv3, DCNv4])
def test_traced_layers_hold_paddles_add(cls):
    layer = cls(8, groups=2)
    layer.eval()
    assert all(isinstance(p, Projection) for name, p in layer.named_sublayers() if "proj" in name)
    ops = traced_op_names(layer)
    assert "pd_op.add" in ops and "pd_op.matmul" in ops
    assert not any("row_bias" in name for name in ops)
