"""The compiled ops' own checks: what a bad input says with no Python in front.

Under Paddle Inference (and for anyone calling ``_C_ops._run_custom_op``) the
bindings' ``PD_CHECK``s are the only checks that run, so each must name the
argument, the value it got and the value it expected, and refuse tensors of
another dtype instead of reading their bytes as the wrong type. These tests run
the registered ops directly, bypassing ``paddle_dcn.ops``'s Python checks.
"""
from __future__ import annotations

import re

import numpy as np
import paddle
import pytest

from paddle_dcn.ops._library import load_library, run_op

CONV_ATTRS = ([1, 1], [1, 1], [1, 1], 1, 1, 1 << 26, False)  # strides, paddings, dilations, groups, dg, ws, det


@pytest.fixture(autouse=True, scope="module")
def _library():
    load_library()


def _t(shape, dtype="float32"):
    return paddle.to_tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype))


def _raises(pattern: str, op: str, *args):
    with pytest.raises(Exception, match=pattern):
        out = run_op(op, *args)
        (out[0] if isinstance(out, tuple) else out).numpy()


def test_conv_offset_shape_names_got_and_expected():
    x, w = _t([2, 4, 6, 6]), _t([8, 4, 3, 3])
    _raises(r"offset must be \[2, 18, 6, 6\].*got \[2, 18, 5, 6\]",
            "pdcn_deform_conv2d", x, _t([2, 18, 5, 6]), w, *CONV_ATTRS)


def test_conv_mask_shape_names_got_and_expected():
    x, w = _t([2, 4, 6, 6]), _t([8, 4, 3, 3])
    _raises(r"mask must be \[2, 9, 6, 6\].*got \[2, 8, 6, 6\]",
            "pdcn_modulated_deform_conv2d", x, _t([2, 18, 6, 6]), _t([2, 8, 6, 6]), w, *CONV_ATTRS)


def test_conv_weight_and_groups_say_the_numbers():
    x = _t([1, 4, 6, 6])
    _raises(r"weight must be \[Cout, 4, kh, kw\].*got \[8, 3, 3, 3\]",
            "pdcn_deform_conv2d", x, _t([1, 18, 6, 6]), _t([8, 3, 3, 3]), *CONV_ATTRS)
    attrs = list(CONV_ATTRS)
    attrs[4] = 3  # deformable_groups
    _raises(r"in_channels \(4\) must divide by deformable_groups \(3\)",
            "pdcn_deform_conv2d", x, _t([1, 54, 6, 6]), _t([8, 4, 3, 3]), *attrs)
    attrs = list(CONV_ATTRS)
    attrs[0] = [0, 1]
    _raises(r"strides and dilations must be positive, got strides \[0, 1\]",
            "pdcn_deform_conv2d", x, _t([1, 18, 6, 6]), _t([8, 4, 3, 3]), *attrs)


def test_conv_refuses_a_dtype_mix_instead_of_reading_its_bytes():
    x, w = _t([1, 4, 6, 6]), _t([8, 4, 3, 3])
    _raises(r"offset must have x's dtype \(float32\), got float64",
            "pdcn_deform_conv2d", x, _t([1, 18, 6, 6], "float64"), w, *CONV_ATTRS)


def test_conv_backward_checks_grad_out_shape():
    x, offset, w = _t([1, 4, 6, 6]), _t([1, 18, 6, 6]), _t([8, 4, 3, 3])
    # pdcn_deform_conv2d_grad is registered as the op's grad kernel; reach it through autograd
    # with a wrong-shaped upstream gradient.
    x.stop_gradient = False
    out = run_op("pdcn_deform_conv2d", x, offset, w, *CONV_ATTRS)
    with pytest.raises(Exception, match=r"grad_out must be \[1, 8, 6, 6\], got \[1, 8, 6, 5\]"):
        paddle.autograd.backward([out], [paddle.ones([1, 8, 6, 5])])


def test_roi_pool_checks_say_the_numbers():
    x = _t([2, 4, 8, 8])
    boxes = paddle.to_tensor([[0, 0, 4, 4], [1, 1, 6, 6], [2, 2, 7, 7]], dtype="float32")
    attrs = ([2, 2], 1.0, 2, 0.1, True, False)
    _raises(r"boxes_num sums to more than the 3 boxes \(4 by image 1\)", "pdcn_deform_roi_pool_plain",
            x, boxes, paddle.to_tensor([2, 2], dtype="int32"), *attrs)
    _raises(r"boxes must be \[K, 4\], got \[3, 3\]", "pdcn_deform_roi_pool_plain",
            x, boxes[:, :3], paddle.to_tensor([2, 1], dtype="int32"), *attrs)
    _raises(r"offset must be \[3, 2, 2, 2\].*got \[3, 2, 3, 2\]", "pdcn_deform_roi_pool",
            x, boxes, paddle.to_tensor([2, 1], dtype="int32"), _t([3, 2, 3, 2]), *attrs)
    _raises(r"offset must have x's dtype \(float32\), got float64", "pdcn_deform_roi_pool",
            x, boxes, paddle.to_tensor([2, 1], dtype="int32"), _t([3, 2, 2, 2], "float64"), *attrs)
    _raises(r"x must have a non-empty feature map \(H, W >= 1\), got \[2, 4, 0, 8\]",
            "pdcn_deform_roi_pool_plain", _t([2, 4, 0, 8]), boxes, paddle.to_tensor([2, 1], dtype="int32"), *attrs)
    _raises(r"sampling_ratio must be at most 64 .* got 100000", "pdcn_deform_roi_pool_plain",
            x, boxes, paddle.to_tensor([2, 1], dtype="int32"), [2, 2], 1.0, 100000, 0.1, True, False)


def test_psroi_pool_channel_rule_says_the_numbers():
    x = _t([1, 10, 8, 8])
    boxes = paddle.to_tensor([[0, 0, 4, 4]], dtype="float32")
    attrs = (2, [2, 2], [2, 2], 1.0, 2, 0.1, False)  # output_channels, pooled, parts, scale, spp, trans_std, det
    _raises(r"output_channels \* PH \* PW = 8 channels, got 10", "pdcn_deform_psroi_pool_plain",
            x, boxes, paddle.to_tensor([1], dtype="int32"), *attrs)
    _raises(r"sample_per_part must be at most 64 .* got 100000", "pdcn_deform_psroi_pool_plain",
            _t([1, 8, 8, 8]), boxes, paddle.to_tensor([1], dtype="int32"), 2, [2, 2], [2, 2], 1.0, 100000, 0.1,
            False)


def test_aggregate_checks_say_the_numbers():
    value = _t([1, 6, 6, 8])
    attrs = ([3, 3], [1, 1], [1, 1], [1, 1], 2, [1.0, 0.0], False)
    _raises(r"offset must be \[1, 6, 6, 36\].*got \[1, 6, 6, 35\]", "pdcn_deform_aggregate",
            value, _t([1, 6, 6, 35]), _t([1, 6, 6, 18]), *attrs)
    _raises(r"weight must have value's dtype \(float32\), got float64", "pdcn_deform_aggregate",
            value, _t([1, 6, 6, 36]), _t([1, 6, 6, 18], "float64"), *attrs)
    bad = list(attrs)
    bad[0] = [0, 3]
    _raises(r"kernel_size needs two values >= 1, got \[0, 3\]", "pdcn_deform_aggregate",
            value, _t([1, 6, 6, 36]), _t([1, 6, 6, 18]), *bad)


_TRACED_BAD_INPUTS = r'''
import paddle
import paddle_dcn.ops as O
from paddle.static import InputSpec

def pool_fn(x, b, n):
    return O.deform_roi_pool(x, b, n, 2)


def conv_fn(x, o, w):
    return O.deform_conv2d(x, o, w, padding=1)


pool = paddle.jit.to_static(pool_fn, full_graph=True, input_spec=[
    InputSpec([None, 3, None, None]), InputSpec([None, 4]), InputSpec([None], "int32")])
conv = paddle.jit.to_static(conv_fn, full_graph=True, input_spec=[
    InputSpec([None, 4, None, None]), InputSpec([None, 18, None, None]), InputSpec([3, 4, 3, 3])])
print("good", list(pool(paddle.randn([2, 3, 6, 6]), paddle.rand([3, 4]) * 4,
                   paddle.to_tensor([1, 2], dtype="int32")).shape))
for name, call in [
        ("pool", lambda: pool(paddle.randn([2, 3, 6, 6]), paddle.rand([3, 4]) * 4,
                              paddle.to_tensor([2, 2], dtype="int32"))),  # sums to 4, 3 boxes
        ("conv", lambda: conv(paddle.randn([2, 4, 5, 5]), paddle.randn([2, 18, 4, 4]),
                              paddle.randn([3, 4, 3, 3])))]:  # offset's H, W are not the output's
    try:
        call()
        print(name, "no error")
    except ValueError as error:
        print(name, "ValueError", " ".join(str(error).split()))
print("survived")
'''


def test_traced_bad_inputs_raise_value_errors_not_aborts(tmp_path):
    """Under to_static with dynamic shapes the Python checks cannot see the sizes, so the
    compiled checks are the ones that fire; they throw Paddle's typed errors, which the static
    executor turns into a Python ValueError (a PD_CHECK's PD_Exception aborted the process)."""
    import subprocess
    import sys

    script = tmp_path / "traced_bad_inputs.py"  # to_static needs the functions' source in a file
    script.write_text(_TRACED_BAD_INPUTS)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "good [3, 3, 2, 2]" in run.stdout
    assert re.search(r"pool ValueError .*boxes_num sums to more than the 3 boxes", run.stdout), run.stdout
    assert re.search(r"conv ValueError .*offset must be \[2, 18, 5, 5\]", run.stdout), run.stdout
    assert "survived" in run.stdout
