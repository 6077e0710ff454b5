"""Every paddle_dcn operator under Paddle's grad modes: ``paddle.no_grad()`` gives an output
with no backward (Paddle's custom-op call would trace one anyway: the inputs would stay alive
and gradients would flow into the weights of a branch run under no_grad), and a second
derivative through an op (backward of a gradient taken with ``create_graph=True``) raises
instead of silently leaving the op's second-order terms out."""
import numpy as np
import paddle
import pytest

from paddle_dcn.ops import (deform_aggregate, deform_aggregate_fused, deform_conv2d, deform_conv2d_packed,
                            deform_psroi_pool, deform_roi_pool)
from paddle_dcn.ops.channel_bias import add_channel_bias
from paddle_dcn.ops.depthwise_conv import depthwise_conv2d_nhwc
from paddle_dcn.ops.group_softmax import group_softmax
from paddle_dcn.ops.layer_norm import layer_norm_last_axis
from paddle_dcn.ops.plain_conv import conv2d_cpu
from paddle_dcn.ops.row_bias import add_row_bias


def _t(rng, *shape, scale=1.0):
    t = paddle.to_tensor(rng.standard_normal(shape) * scale)
    t.stop_gradient = False
    return t


def _boxes():
    boxes = paddle.to_tensor(np.array([[0.5, 1.0, 5.0, 6.5], [2.0, 0.0, 7.0, 4.0], [1.0, 1.0, 3.0, 3.0]]))
    return boxes, paddle.to_tensor(np.array([2, 1], dtype="int32"))


def _cases():
    """name -> (inputs factory, op call): the inputs are leaves that need gradients."""
    rng = np.random.default_rng(0)
    boxes, boxes_num = _boxes()
    return {
        "deform_conv2d v1": (lambda: [_t(rng, 2, 4, 5, 5), _t(rng, 2, 18, 5, 5), _t(rng, 3, 4, 3, 3)],
                             lambda x, o, w: deform_conv2d(x, o, w, padding=1)),
        "deform_conv2d v2": (lambda: [_t(rng, 2, 4, 5, 5), _t(rng, 2, 18, 5, 5), _t(rng, 2, 9, 5, 5),
                                      _t(rng, 3, 4, 3, 3)],
                             lambda x, o, m, w: deform_conv2d(x, o, w, padding=1, mask=m)),
        "deform_conv2d_packed": (lambda: [_t(rng, 1, 4, 5, 5), _t(rng, 1, 27, 5, 5), _t(rng, 3, 4, 3, 3)],
                                 lambda x, om, w: deform_conv2d_packed(x, om, w, padding=1)),
        "deform_roi_pool": (lambda: [_t(rng, 2, 3, 8, 8), _t(rng, 3, 2, 2, 2, scale=0.1)],
                            lambda x, o: deform_roi_pool(x, boxes, boxes_num, 2, offset=o)),
        "deform_roi_pool plain": (lambda: [_t(rng, 2, 3, 8, 8)],
                                  lambda x: deform_roi_pool(x, boxes, boxes_num, 2)),
        "deform_psroi_pool": (lambda: [_t(rng, 2, 8, 8, 8), _t(rng, 3, 2, 2, 2, scale=0.1)],
                              lambda x, o: deform_psroi_pool(x, boxes, boxes_num, 2, 2, offset=o)),
        "deform_psroi_pool plain": (lambda: [_t(rng, 2, 8, 8, 8)],
                                    lambda x: deform_psroi_pool(x, boxes, boxes_num, 2, 2)),
        "deform_aggregate": (lambda: [_t(rng, 1, 4, 4, 4), _t(rng, 1, 4, 4, 18), _t(rng, 1, 4, 4, 9)],
                             lambda v, o, w: deform_aggregate(v, o, w)),
        "deform_aggregate_fused": (lambda: [_t(rng, 1, 4, 4, 4), _t(rng, 1, 4, 4, 32)],
                                   lambda v, om: deform_aggregate_fused(v, om)),
        "depthwise_conv2d_nhwc": (lambda: [_t(rng, 1, 5, 5, 3), _t(rng, 3, 1, 3, 3), _t(rng, 3)],
                                  lambda x, w, b: depthwise_conv2d_nhwc(x, w, b, padding=1)),
        "conv2d_cpu": (lambda: [_t(rng, 1, 3, 5, 5), _t(rng, 4, 3, 3, 3), _t(rng, 4)],
                       lambda x, w, b: conv2d_cpu(x, w, b, padding=1)),
        "add_channel_bias": (lambda: [_t(rng, 2, 3, 4, 4), _t(rng, 3)],
                             lambda x, b: add_channel_bias(x, b)),
        # x * 1.0: a leaf that needs a gradient takes Paddle's add (tests/test_row_bias.py)
        "add_row_bias": (lambda: [_t(rng, 2, 3, 5), _t(rng, 5)], lambda x, b: add_row_bias(x * 1.0, b)),
        "layer_norm_last_axis": (lambda: [_t(rng, 2, 3, 5), _t(rng, 5), _t(rng, 5)],
                                 lambda x, w, b: layer_norm_last_axis(x, w, b, 1e-5)),
        "group_softmax": (lambda: [_t(rng, 2, 3, 18)], lambda x: group_softmax(x, 9)),
    }


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_no_grad_gives_an_output_without_backward(name):
    make, op = CASES[name]
    inputs = make()
    with paddle.no_grad():
        out = op(*inputs)
    assert out.stop_gradient
    out.sum().backward()  # nothing to run: no gradient reaches the inputs
    assert all(t.grad is None for t in inputs)
    again = op(*inputs)  # grad mode back on: the op traces its backward again
    assert not again.stop_gradient
    np.testing.assert_array_equal(again.numpy(), out.numpy())
    again.sum().backward()
    assert all(t.grad is not None for t in inputs)


@pytest.mark.parametrize("name", list(CASES))
def test_a_second_derivative_through_the_op_raises(name):
    make, op = CASES[name]
    inputs = make()
    out = op(*inputs)
    first = paddle.grad((out * out).sum(), inputs[:1], create_graph=True)[0]
    assert not first.stop_gradient
    with pytest.raises(Exception, match="has no double backward"):
        (first * first).sum().backward()
    # a first-order gradient is unaffected
    inputs = make()
    grads = paddle.grad((op(*inputs) ** 2).sum(), inputs)
    assert all(np.isfinite(g.numpy()).all() for g in grads)
