"""Arguments are checked once (issue 16): one pair helper, one positive-int check, one number
check and one dtype policy in paddle_dcn.ops._checks, used by the ops and the layers alike;
one wrapper (layers._args.run_op) between every layer and its op."""
import ast
import os

import numpy as np
import paddle
import pytest

from paddle_dcn import ops
from paddle_dcn.layers import DeformConv2D, DeformPSRoIPool, DeformRoIPool
from paddle_dcn.layers._args import OpArgs, run_op
from paddle_dcn.ops import _checks

PACKAGE = os.path.join(os.path.dirname(__file__), "..", "paddle_dcn")


def _definitions(name):
    """Files of paddle_dcn that define ``name`` (function, class or module-level assignment)."""
    found = []
    for directory, _, files in os.walk(PACKAGE):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(directory, f)
            tree = ast.parse(open(path, encoding="utf-8").read())
            for node in tree.body:
                names = ([node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else
                         [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)])
                if name in names:
                    found.append(os.path.relpath(path, PACKAGE))
    return found


@pytest.mark.parametrize("name", ["IntPair", "CPU_DTYPES", "GPU_DTYPES", "pair", "positive_int", "op_dtype",
                                  "positive_number", "divisible"])
def test_each_check_is_defined_once(name):
    assert _definitions(name) == [os.path.join("ops", "_checks.py")]


def test_no_module_defines_its_own_int_pair_or_float_checks():
    for name in ("int_pair", "positive_float", "_positive_float", "_float", "_int", "_out_size", "_BOX_DTYPES"):
        assert _definitions(name) == [], name


@pytest.mark.parametrize("kwargs,message", [
    (dict(stride=0), "stride must be positive, got 0"),
    (dict(padding=(1, 2, 3)), r"padding must be an int or a pair of ints \(h, w\), got \(1, 2, 3\)"),
    (dict(groups=0), "groups must be a positive int, got 0"),
])
def test_layer_and_op_say_the_same(kwargs, message):
    x, w = paddle.zeros([1, 4, 6, 6]), paddle.zeros([4, 4, 3, 3])
    with pytest.raises(ValueError, match=message):
        ops.deform_conv2d(x, paddle.zeros([1, 18, 4, 4]), w, **kwargs)
    with pytest.raises(ValueError, match=message):
        DeformConv2D(4, 4, 3, **kwargs)


def test_numbers_are_checked_alike():
    for bad in (float("inf"), "1", True):
        with pytest.raises(ValueError, match="spatial_scale must be a (finite|positive) number"):
            DeformRoIPool(2, spatial_scale=bad)
        with pytest.raises(ValueError, match="trans_std must be a finite number"):
            DeformPSRoIPool(2, 2, trans_std=bad)
    assert _checks.positive_number(np.float32(0.5), "s") == 0.5 and _checks.pair(np.int64(2), "k", 1) == [2, 2]


def test_float32_attributes_refuse_what_float32_cannot_hold():
    """The ops carry these numbers as float32 attributes: past float32's range they would reach
    the kernels as inf (offset_scale 1e39 gave all-zero samples and NaN offset gradients), and a
    tiny nonzero one as 0. Both are refused by the op and the layer alike."""
    from paddle_dcn.layers import DCNv3, DCNv4

    value, offset, weight = paddle.zeros([1, 4, 4, 8]), paddle.zeros([1, 4, 4, 36]), paddle.zeros([1, 4, 4, 18])
    for big in (1e39, -1e300):
        with pytest.raises(ValueError, match=r"offset_scale must be within float32's range"):
            ops.deform_aggregate(value, offset, weight, groups=2, offset_scale=big)
    with pytest.raises(ValueError, match="offset_scale = 1e-50 rounds to zero in float32"):
        ops.deform_aggregate(value, offset, weight, groups=2, offset_scale=1e-50)
    for layer in (DCNv3, DCNv4):
        with pytest.raises(ValueError, match=r"offset_scale must be within float32's range"):
            layer(8, groups=2, offset_scale=1e39)
    with pytest.raises(ValueError, match=r"spatial_scale must be within float32's range"):
        DeformRoIPool(2, spatial_scale=1e39)
    with pytest.raises(ValueError, match="spatial_scale = 1e-60 rounds to zero in float32"):
        DeformPSRoIPool(2, 2, spatial_scale=1e-60)
    with pytest.raises(ValueError, match=r"gamma must be within float32's range"):
        DeformRoIPool(2, gamma=-1e40)
    with pytest.raises(ValueError, match=r"trans_std must be within float32's range"):
        DeformPSRoIPool(2, 2, trans_std=1e40)
    # the largest float32 and its smallest subnormal are accepted
    assert _checks.number(float(np.finfo(np.float32).max), "s", float32=True) > 3e38
    assert _checks.positive_number(1.5e-45, "s", float32=True) == 1.5e-45
    assert _checks.number(1e300, "s") == 1e300  # numbers the ops do not carry as float32 attributes


def test_one_dtype_policy_for_ops_and_layers():
    """On CPU: what expect_supported_dtype refuses, op_dtype (the layers' cast) maps to float32."""
    for dtype in ("float16", "bfloat16", "float32", "float64"):
        x = paddle.zeros([1, 2], dtype=dtype)
        supported = x.dtype in _checks.supported_dtypes(x)
        assert supported == (dtype in ("float32", "float64"))
        assert _checks.op_dtype(x) == (x.dtype if supported else paddle.float32)
        if not supported:
            with pytest.raises(ValueError, match=f"x has dtype .*{dtype}.*CPU support float32, float64"):
                _checks.expect_supported_dtype("x", x)


def test_run_op_casts_floating_inputs_only_and_passes_the_op_args():
    seen = {}

    def op(x, boxes_num, offset=None, scale=None):
        seen.update(x=x.dtype, boxes_num=boxes_num.dtype, offset=offset, scale=scale)
        return x

    out = run_op(op, OpArgs(scale=(1, 2)), paddle.zeros([2], dtype="bfloat16"), paddle.to_tensor([1], "int32"),
                 offset=None)
    assert out.dtype == paddle.float32
    assert seen == {"x": paddle.float32, "boxes_num": paddle.int32, "offset": None, "scale": [1, 2]}
