"""ops.deform_conv2d_packed (DeformConv2D's CPU path over its offset branch's packed output)
against the composition it replaces: paddle.split + paddle's sigmoid + ops.deform_conv2d,
forward and every gradient; and the layer's packed path against its separate-tensor path."""
import copy

import numpy as np
import paddle
import pytest

from paddle_dcn import DeformConv2D
from paddle_dcn.ops import deform_conv2d
from paddle_dcn.ops.deform_conv_packed import deform_conv2d_packed

# (N, C_in, H, C_out, deformable_groups, groups, stride, mask_scale)
CONFIGS = [
    (2, 8, 7, 6, 2, 1, 1, 1.0),
    (3, 4, 9, 4, 4, 2, 2, 2.0),   # one channel per deformable group: the plane path
    (2, 16, 10, 16, 1, 1, 1, 1.0),
    (1, 6, 6, 3, 3, 3, 1, 0.5),
]


def _run(packed, arrays, dtype, n_points, cfg):
    _, _, _, _, dg, groups, stride, scale = cfg
    x, om, w, b, g = (paddle.to_tensor(a.astype(dtype), stop_gradient=False) for a in arrays)
    if packed:
        out = deform_conv2d_packed(x, om, w, b, stride=stride, padding=1, deformable_groups=dg,
                                   groups=groups, mask_scale=scale)
    else:
        offset, logits = paddle.split(om, [2 * n_points, n_points], axis=1)
        out = deform_conv2d(x, offset, w, b, stride=stride, padding=1, deformable_groups=dg,
                            groups=groups, mask=scale * paddle.nn.functional.sigmoid(logits))
    (out * g).sum().backward()
    return [out.numpy()] + [t.grad.numpy() for t in (x, om, w, b)]


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 2e-6)])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_packed_equals_split_sigmoid_composition(cfg, dtype, tol):
    n, c, h, c_out, dg, groups, stride, _ = cfg
    rng = np.random.default_rng(sum(cfg[:6]))
    p = dg * 9
    ho = (h + 2 - 3) // stride + 1
    om = rng.standard_normal((n, 3 * p, ho, ho)) * 2
    om[0, 0, 0, 0] = 1e9            # an offset far outside: zero sample
    om[0, 2 * p, 0, 1] = -1e4       # logits whose sigmoid saturates at 0 and 1
    om[-1, 3 * p - 1, -1, -1] = 60.0
    arrays = (rng.standard_normal((n, c, h, h)), om,
              rng.standard_normal((c_out, c // groups, 3, 3)), rng.standard_normal(c_out),
              rng.standard_normal((n, c_out, ho, ho)))
    ours = _run(True, arrays, dtype, p, cfg)
    ref = _run(False, arrays, dtype, p, cfg)
    for name, a, r in zip(["out", "grad_x", "grad_offset_mask", "grad_weight", "grad_bias"],
                          ours, ref):
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol * max(1.0, np.abs(r).max()),
                                   err_msg=name)


def test_packed_checks_arguments():
    x = paddle.randn([1, 4, 5, 5])
    w = paddle.randn([4, 4, 3, 3])
    with pytest.raises(ValueError, match="offset_mask"):
        deform_conv2d_packed(x, paddle.randn([1, 18, 5, 5]), w, padding=1)
    with pytest.raises(ValueError, match="mask_scale"):
        deform_conv2d_packed(x, paddle.randn([1, 27, 5, 5]), w, padding=1, mask_scale=0.0)


@pytest.mark.parametrize("kwargs", [{}, {"mask_init": 1.0}, {"stride": 2, "deformable_groups": 2},
                                    {"groups": 2, "deformable_groups": 2,
                                     "deformable_groups_over": "output"}])
def test_layer_packed_path_equals_separate_path(kwargs):
    rng = np.random.default_rng(3)
    layer = DeformConv2D(8, 8, 3, padding=1, **kwargs)
    for param in layer.conv_offset.parameters():
        param.set_value(paddle.to_tensor(rng.standard_normal(param.shape) * 0.3, dtype="float32"))
    separate = copy.deepcopy(layer)
    separate._takes_packed_path = lambda x: False
    x_np = rng.standard_normal((2, 8, 9, 9)).astype("float32")
    assert layer._takes_packed_path(paddle.to_tensor(x_np))
    results = []
    for candidate in (layer, separate):
        x = paddle.to_tensor(x_np, stop_gradient=False)
        out = candidate(x)
        (out * out).sum().backward()
        results.append([out.numpy(), x.grad.numpy()] + [q.grad.numpy() for q in candidate.parameters()])
    for a, r in zip(*results):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(r).max()))
