"""Deformable variants (issue 7): per-channel deformable sampling (ConvOffset2D), offset fields
over output channels (TensorFlow DeformableConvLayer), bounded offsets.

References: ``paddle.nn.functional.grid_sample`` for the sampling, one DeformConv2D per output
split for the output-grouped form, numpy ``tanh`` / ``sigmoid`` for the bounds.
"""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import paddle_dcn
from paddle_dcn import ConvOffset2D, DeformConv2D, DeformableSampling2D
from paddle_dcn.ops import deform_conv2d, deform_sample2d


def _tensor(array, dtype="float32", grad=True) -> paddle.Tensor:
    t = paddle.to_tensor(np.asarray(array, dtype=dtype))
    t.stop_gradient = not grad
    return t


def _tol(dtype: str) -> dict:
    return dict(rtol=1e-10, atol=1e-10) if dtype == "float64" else dict(rtol=2e-5, atol=2e-5)


# --------------------------------------------------------------------------------------------
# Per-channel deformable sampling against grid_sample
# --------------------------------------------------------------------------------------------

def grid_sample_per_channel(x: paddle.Tensor, offset: paddle.Tensor) -> paddle.Tensor:
    """The same sampling written with grid_sample: each channel is its own image, the grid is
    the pixel position ``(i + dy, j + dx)`` in align_corners=True normalised coordinates.

    With ``align_corners=True`` pixel k sits at ``-1 + 2k/(size-1)`` and ``padding_mode='zeros'``
    counts every neighbour outside the map as zero: exactly our op's convention (a sample is
    zero once it is a full pixel outside), so the positions convert exactly.
    """
    n, c, h, w = x.shape
    o = offset.reshape([n, c, 2, h, w])
    rows = paddle.arange(h, dtype=x.dtype).reshape([1, 1, h, 1])
    cols = paddle.arange(w, dtype=x.dtype).reshape([1, 1, 1, w])
    y = rows + o[:, :, 0]
    xx = cols + o[:, :, 1]
    grid = paddle.stack([2.0 * xx / (w - 1) - 1.0, 2.0 * y / (h - 1) - 1.0], axis=-1)
    out = F.grid_sample(
        x.reshape([n * c, 1, h, w]), grid.reshape([n * c, h, w, 2]),
        mode="bilinear", padding_mode="zeros", align_corners=True,
    )
    return out.reshape([n, c, h, w])


def test_deform_sample2d_matches_grid_sample_forward_and_gradients(float_dtype):
    rng = np.random.default_rng(0)
    n, c, h, w = 2, 3, 5, 6
    x = _tensor(rng.standard_normal((n, c, h, w)), float_dtype)
    # up to 3 px: many samples partly or wholly outside the 5x6 map (the zero border)
    offset = _tensor(rng.uniform(-3, 3, (n, 2 * c, h, w)), float_dtype)
    ours = deform_sample2d(x, offset)
    ref = grid_sample_per_channel(x, offset)
    assert ours.shape == [n, c, h, w]
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), **_tol(float_dtype))
    # the border was exercised: some outputs are exactly zero, some partly outside
    positions = np.arange(h).reshape(1, 1, h, 1) + offset.numpy()[:, 0::2]
    assert (positions <= -1).any() and ((positions > -1) & (positions < 0)).any()

    cotangent = _tensor(rng.standard_normal((n, c, h, w)), float_dtype, grad=False)
    gx, goff = paddle.grad(ours, [x, offset], cotangent)
    rx, roff = paddle.grad(ref, [x, offset], cotangent)
    np.testing.assert_allclose(gx.numpy(), rx.numpy(), **_tol(float_dtype))
    np.testing.assert_allclose(goff.numpy(), roff.numpy(), **_tol(float_dtype))
    assert np.abs(goff.numpy()).max() > 0.1


def test_deform_sample2d_non_finite_and_huge_offsets_sample_zero(float_dtype):
    """NaN / Inf / huge offsets give zero samples and zero, finite gradients (the
    per-channel path computes its stencils inline: no table to index out of)."""
    rng = np.random.default_rng(5)
    x = _tensor(rng.standard_normal((1, 2, 4, 5)), float_dtype)
    raw = rng.uniform(-0.4, 0.4, (1, 4, 4, 5))
    bad = [np.nan, np.inf, -np.inf, 1e30, -1e30, 3e9]
    for i, value in enumerate(bad):
        raw[0, i % 4, i % 4, i % 5] = value
    offset = _tensor(raw, float_dtype)
    out = deform_sample2d(x, offset)
    gx, goff = paddle.grad(out, [x, offset], paddle.ones_like(out))
    is_bad = ~np.isfinite(raw) | (np.abs(raw) > 1e6)
    # a channel's output is zero where its dy or dx is bad
    bad_sample = is_bad[:, 0::2] | is_bad[:, 1::2]
    assert bad_sample.sum() == len(bad)
    np.testing.assert_array_equal(out.numpy()[bad_sample], 0.0)
    np.testing.assert_array_equal(goff.numpy()[np.repeat(bad_sample, 2, axis=1)], 0.0)
    assert np.isfinite(gx.numpy()).all() and np.isfinite(goff.numpy()).all()
    good = ~bad_sample
    ref = grid_sample_per_channel(x, _tensor(np.where(is_bad, 0.0, raw), float_dtype))
    np.testing.assert_allclose(out.numpy()[good], ref.numpy()[good], **_tol(float_dtype))


def test_layer_with_trained_branch_matches_grid_sample(float_dtype):
    """The layer wiring: conv_offset's channel 2c is channel c's dy, 2c+1 its dx; gradients
    reach x through both paths and the branch's weights."""
    paddle.set_default_dtype(float_dtype)
    try:
        layer = DeformableSampling2D(4)
    finally:
        paddle.set_default_dtype("float32")
    rng = np.random.default_rng(1)
    layer.conv_offset.weight.set_value(
        rng.standard_normal(layer.conv_offset.weight.shape).astype(float_dtype) * 0.5)
    layer.conv_offset.bias.set_value(
        rng.standard_normal(layer.conv_offset.bias.shape).astype(float_dtype))
    x = _tensor(rng.standard_normal((2, 4, 6, 7)), float_dtype)
    ours = layer(x)
    ref = grid_sample_per_channel(x, layer.conv_offset(x))
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), **_tol(float_dtype))
    params = [x, layer.conv_offset.weight, layer.conv_offset.bias]
    for g_ours, g_ref in zip(paddle.grad(ours.sum(), params), paddle.grad(ref.sum(), params)):
        np.testing.assert_allclose(g_ours.numpy(), g_ref.numpy(), **_tol(float_dtype))


def test_sampling_layer_is_identity_at_init_and_has_only_the_branch_parameters():
    layer = DeformableSampling2D(5)
    x = paddle.randn([2, 5, 7, 4])
    np.testing.assert_allclose(layer(x).numpy(), x.numpy(), rtol=1e-6, atol=1e-6)
    names = {name for name, _ in layer.named_parameters()}
    assert names == {"conv_offset.weight", "conv_offset.bias"}  # the identity weight is no parameter
    assert sum(int(np.prod(p.shape)) for p in layer.parameters()) == 10 * 5 * 9 + 10
    assert layer.conv_offset.weight.shape == [10, 5, 3, 3]
    assert ConvOffset2D is DeformableSampling2D
    assert paddle_dcn.layers.ConvOffset2D is DeformableSampling2D


def test_sampling_layer_trains_its_offsets():
    layer = DeformableSampling2D(3)
    opt = paddle.optimizer.SGD(learning_rate=0.1, parameters=layer.parameters())
    x = paddle.randn([2, 3, 8, 8])
    target = paddle.roll(x, shifts=1, axis=3)  # a shift the offsets can learn
    loss0 = float(((layer(x) - target) ** 2).mean())
    for _ in range(3):
        loss = ((layer(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
        opt.clear_grad()
    assert np.abs(layer.predict_offsets(x).numpy()).max() > 0  # zero-initialised, now moved
    assert float(((layer(x) - target) ** 2).mean()) < loss0


def test_sampling_layer_explicit_offsets_and_to_static(tmp_path):
    layer = DeformableSampling2D(2, offset_kernel_size=1)
    layer.conv_offset.weight.set_value(paddle.randn(layer.conv_offset.weight.shape) * 0.3)
    x = paddle.randn([1, 2, 5, 5])
    offset = paddle.randn([1, 4, 5, 5])
    np.testing.assert_allclose(layer(x, offset).numpy(), deform_sample2d(x, offset).numpy())
    eager = layer(x).numpy()
    spec = [paddle.static.InputSpec([None, 2, None, None], "float32", "x")]
    static = paddle.jit.to_static(layer, input_spec=spec, full_graph=True)
    np.testing.assert_allclose(static(x).numpy(), eager, rtol=1e-6, atol=1e-6)
    path = str(tmp_path / "sampling")
    paddle.jit.save(static, path)
    loaded = paddle.jit.load(path)
    x2 = paddle.randn([3, 2, 6, 4])
    np.testing.assert_allclose(loaded(x2).numpy(), layer(x2).numpy(), rtol=1e-6, atol=1e-6)


def test_variants_run_under_paddle_inference_with_onednn(tmp_path):
    """A saved model with both new layers (after a oneDNN conv) runs in the predictor with
    oneDNN on."""
    from paddle.static import InputSpec

    from paddle_dcn import inference

    sampling = DeformableSampling2D(4, offset_bound=3.0)
    grouped = DeformConv2D(4, 6, 3, padding=1, groups=2, deformable_groups_over="output")
    tiled = DeformConv2D(6, 4, 1, modulated=False, deformable_groups_over="output")  # groups=1
    for layer in (sampling, grouped, tiled):
        layer.conv_offset.weight.set_value(paddle.randn(layer.conv_offset.weight.shape) * 0.3)
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3, padding=1), sampling, grouped, tiled)
    prefix = str(tmp_path / "model")
    model_file, _ = inference.export_model(model, prefix, [InputSpec([None, 3, 9, 9], "float32", "x")])
    x = np.random.default_rng(3).random((2, 3, 9, 9)).astype("float32")
    (y,) = inference.run_predictor(inference.create_predictor(prefix, cpu_threads=1, onednn=True), [x])
    np.testing.assert_allclose(y, model(paddle.to_tensor(x)).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(in_channels=0), "in_channels"),
        (dict(in_channels=3, offset_kernel_size=2), "offset_kernel_size"),
        (dict(in_channels=3, offset_lr_mult=0), "offset_lr_mult"),
        (dict(in_channels=3, offset_bound=-1.0), "offset_bound"),
        (dict(in_channels=3, offset_bound=float("inf")), "offset_bound"),
        (dict(in_channels=3, offset_bound=1.0, offset_bound_fn="clip"), "offset_bound_fn"),
        (dict(in_channels=3, data_format="NHWC"), "data_format"),
    ],
)
def test_sampling_layer_rejects_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        DeformableSampling2D(**kwargs)


def test_sampling_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"C=3"):
        DeformableSampling2D(3)(paddle.randn([1, 4, 5, 5]))
    with pytest.raises(ValueError, match=r"offset must have shape \[N, 2\*C, H, W\]"):
        deform_sample2d(paddle.randn([1, 3, 5, 5]), paddle.randn([1, 3, 5, 5]))
    with pytest.raises(ValueError, match="x must be a 4-D"):
        deform_sample2d(paddle.randn([3, 5, 5]), paddle.randn([1, 6, 5, 5]))


# --------------------------------------------------------------------------------------------
# Offset fields over output channels against one DeformConv2D per split
# --------------------------------------------------------------------------------------------

OUTPUT_CONFIGS = [
    # S splits of the output channels; groups = conv groups (T = lcm(S, groups) op groups)
    dict(in_channels=3, out_channels=4, kernel_size=3, padding=1, deformable_groups=2),
    dict(in_channels=2, out_channels=3, kernel_size=(2, 3), stride=2, padding=(1, 0),
         dilation=(2, 1)),  # default: one field per output channel
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, groups=2, deformable_groups=3),
    dict(in_channels=4, out_channels=8, kernel_size=1, groups=4, deformable_groups=2),
    dict(in_channels=4, out_channels=4, kernel_size=3, groups=2, deformable_groups=4),
]


def _dense_weight(weight: np.ndarray, groups: int, in_channels: int) -> np.ndarray:
    """A grouped conv weight ``[C_out, C_in/groups, kh, kw]`` as the equivalent dense
    ``[C_out, C_in, kh, kw]`` (zero outside each output channel's group)."""
    c_out, cpg = weight.shape[:2]
    dense = np.zeros((c_out, in_channels) + weight.shape[2:], weight.dtype)
    for o in range(c_out):
        g = o // (c_out // groups)
        dense[o, g * cpg:(g + 1) * cpg] = weight[o]
    return dense


def _per_split_reference(layer: DeformConv2D, x, offset, mask):
    """One ordinary DeformConv2D (offsets over its inputs, one field) per output split, with
    the layer's weights (dense form) and that split's offset field; outputs concatenated."""
    splits = layer.deformable_groups
    kk = layer.kernel_size[0] * layer.kernel_size[1]
    per = layer.out_channels // splits
    dense = _dense_weight(layer.weight.numpy(), layer.groups, layer.in_channels)
    outs, convs = [], []
    for s in range(splits):
        conv = DeformConv2D(
            layer.in_channels, per, layer.kernel_size, stride=layer.stride,
            padding=layer.padding, dilation=layer.dilation, modulated=layer.modulated,
            offset_branch=False,
        )
        conv.weight.set_value(dense[s * per:(s + 1) * per])
        conv.bias.set_value(layer.bias.numpy()[s * per:(s + 1) * per])
        field_offset = offset[:, 2 * s * kk:2 * (s + 1) * kk]
        field_mask = None if mask is None else mask[:, s * kk:(s + 1) * kk]
        outs.append(conv(x, field_offset, field_mask))
        convs.append(conv)
    return paddle.concat(outs, axis=1), convs


@pytest.mark.parametrize("modulated", [False, True])
@pytest.mark.parametrize("config", OUTPUT_CONFIGS)
def test_output_groups_match_one_deform_conv_per_split(config, modulated):
    layer = DeformConv2D(modulated=modulated, deformable_groups_over="output", **config)
    splits = config.get("deformable_groups", config["out_channels"])
    assert layer.deformable_groups == splits
    kk = layer.kernel_size[0] * layer.kernel_size[1]
    assert layer.conv_offset.weight.shape[0] == (3 if modulated else 2) * splits * kk
    rng = np.random.default_rng(2)
    layer.bias.set_value(rng.standard_normal(layer.bias.shape).astype("float32"))
    layer.conv_offset.weight.set_value(
        rng.standard_normal(layer.conv_offset.weight.shape).astype("float32") * 0.3)
    x = _tensor(rng.standard_normal((2, config["in_channels"], 7, 6)))
    offset, mask = layer.predict_offsets(x)
    offset, mask = offset.detach(), None if mask is None else mask.detach()
    offset.stop_gradient = False
    if mask is not None:
        mask.stop_gradient = False

    ours = layer(x, offset, mask)
    ref, convs = _per_split_reference(layer, x, offset, mask)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=2e-5, atol=2e-5)
    # the predicted-offset path is the same computation
    np.testing.assert_allclose(layer(x).numpy(), ours.numpy(), rtol=1e-6, atol=1e-6)

    leaves = [x, offset] + ([mask] if mask is not None else [])
    cot = _tensor(rng.standard_normal(ours.shape), grad=False)
    g_ours = paddle.grad(ours, leaves + [layer.weight, layer.bias], cot)
    g_ref = paddle.grad(ref, leaves + [c.weight for c in convs] + [c.bias for c in convs], cot)
    for a, b in zip(g_ours[:len(leaves)], g_ref[:len(leaves)]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    n_conv = len(convs)
    dense_grad = np.concatenate([g.numpy() for g in g_ref[len(leaves):len(leaves) + n_conv]])
    weight_grad = g_ours[len(leaves)].numpy()
    # the grouped weight's gradient is the dense gradient inside each output channel's group
    cpg = layer.in_channels // layer.groups
    for o in range(layer.out_channels):
        g = o // (layer.out_channels // layer.groups)
        np.testing.assert_allclose(weight_grad[o], dense_grad[o, g * cpg:(g + 1) * cpg],
                                   rtol=1e-4, atol=1e-4)
    bias_grad = np.concatenate([g.numpy() for g in g_ref[len(leaves) + n_conv:]])
    np.testing.assert_allclose(g_ours[-1].numpy(), bias_grad, rtol=1e-4, atol=1e-4)


def test_output_groups_run_one_op_call(monkeypatch):
    calls = []
    original = paddle_dcn.ops.deform_conv2d

    def counting(*args, **kwargs):
        calls.append(kwargs.get("groups"))
        return original(*args, **kwargs)

    monkeypatch.setattr(paddle_dcn.ops, "deform_conv2d", counting)
    # CPU dygraph: the layer reads its offset branch's output packed (one op call too)
    import paddle_dcn.layers.deform_conv as deform_conv_module
    original_packed = deform_conv_module.deform_conv2d_packed

    def counting_packed(*args, **kwargs):
        calls.append(kwargs.get("groups"))
        return original_packed(*args, **kwargs)

    monkeypatch.setattr(deform_conv_module, "deform_conv2d_packed", counting_packed)
    layer = DeformConv2D(4, 6, 3, padding=1, groups=2, deformable_groups_over="output")
    y = layer(paddle.randn([1, 4, 5, 5]))
    assert y.shape == [1, 6, 5, 5]
    assert calls == [6]  # one call, lcm(6 splits, 2 groups) op groups


def test_output_groups_at_init_equal_conv2d_and_to_static():
    layer = DeformConv2D(4, 6, 3, padding=1, groups=2, deformable_groups=3, mask_init=1.0,
                         deformable_groups_over="output")
    conv = paddle.nn.Conv2D(4, 6, 3, padding=1, groups=2)
    conv.weight.set_value(layer.weight)
    conv.bias.set_value(paddle.randn([6]))
    layer.bias.set_value(conv.bias)
    x = paddle.randn([2, 4, 6, 5])
    np.testing.assert_allclose(layer(x).numpy(), conv(x).numpy(), rtol=1e-5, atol=1e-5)
    layer.conv_offset.weight.set_value(paddle.randn(layer.conv_offset.weight.shape) * 0.3)
    eager = layer(x).numpy()
    spec = [paddle.static.InputSpec([None, 4, None, None], "float32", "x")]
    static = paddle.jit.to_static(layer, input_spec=spec, full_graph=True)
    np.testing.assert_allclose(static(x).numpy(), eager, rtol=1e-5, atol=1e-5)
    assert "deformable_groups_over='output'" in repr(layer)


def test_output_groups_arguments():
    assert DeformConv2D(3, 4, 3).deformable_groups == 1  # the input form keeps its default
    assert DeformConv2D(3, 4, 3, deformable_groups_over="output").deformable_groups == 4
    # 'output' needs out_channels (not in_channels) to divide by deformable_groups
    DeformConv2D(3, 4, 3, deformable_groups=2, deformable_groups_over="output")
    with pytest.raises(ValueError, match="out_channels=4 must be divisible by deformable_groups=3"):
        DeformConv2D(3, 4, 3, deformable_groups=3, deformable_groups_over="output")
    with pytest.raises(ValueError, match="in_channels=3 must be divisible by deformable_groups=2"):
        DeformConv2D(3, 4, 3, deformable_groups=2)
    with pytest.raises(ValueError, match="deformable_groups_over"):
        DeformConv2D(3, 4, 3, deformable_groups_over="outputs")


# --------------------------------------------------------------------------------------------
# Bounded offsets
# --------------------------------------------------------------------------------------------

HUGE = [-np.inf, -1e30, -1e4, -60.0, 0.0, 60.0, 1e4, 1e30, np.inf]


@pytest.mark.parametrize("fn", ["tanh", "sigmoid"])
def test_bound_is_exact_at_saturation_with_finite_gradients(fn, float_dtype):
    bound = 2.5
    layer = DeformableSampling2D(1, offset_kernel_size=1, offset_bound=bound, offset_bound_fn=fn)
    raw = _tensor(np.array(HUGE).reshape(1, 1, 3, 3), float_dtype)
    from paddle_dcn.layers import _offset_bound

    out = _offset_bound.apply(raw, layer.offset_bound, layer.offset_bound_fn)
    expected = np.array([-1, -1, -1, -1, 0, 1, 1, 1, 1], dtype=float_dtype).reshape(1, 1, 3, 3)
    np.testing.assert_array_equal(out.numpy(), bound * expected)  # exactly +-bound
    (grad,) = paddle.grad(out.sum(), [raw])
    assert np.isfinite(grad.numpy()).all()
    slope_at_zero = 1.0 if fn == "tanh" else 0.5
    np.testing.assert_allclose(grad.numpy().reshape(-1)[4], bound * slope_at_zero, rtol=1e-6)
    np.testing.assert_array_equal(grad.numpy().reshape(-1)[[0, 1, 2, 6, 7, 8]], 0.0)
    # away from saturation: the formula itself (numpy)
    moderate = np.linspace(-3, 3, 9).reshape(1, 1, 3, 3)
    ref = bound * (np.tanh(moderate) if fn == "tanh" else 2 / (1 + np.exp(-moderate)) - 1)
    np.testing.assert_allclose(
        _offset_bound.apply(_tensor(moderate, float_dtype), bound, fn).numpy(), ref,
        **_tol(float_dtype))


@pytest.mark.parametrize("fn", ["tanh", "sigmoid"])
@pytest.mark.parametrize("modulated", [False, True])
def test_deform_conv_bounded_offsets_hit_the_bound(fn, modulated):
    bound = 1.5
    layer = DeformConv2D(2, 3, 3, padding=1, modulated=modulated, offset_bound=bound,
                         offset_bound_fn=fn)
    p = layer.num_points
    sign = np.where(np.arange(2 * p) % 3 == 0, -1.0, 1.0)
    bias = np.concatenate([sign * 1e8, np.zeros(p if modulated else 0)]).astype("float32")
    layer.conv_offset.bias.set_value(bias)
    x = paddle.randn([1, 2, 5, 5])
    x.stop_gradient = False
    offset, mask = layer.predict_offsets(x)
    expected = np.broadcast_to((sign * bound).reshape(1, -1, 1, 1), offset.shape)
    np.testing.assert_array_equal(offset.numpy(), expected.astype("float32"))
    y = layer(x)
    explicit = deform_conv2d(x, paddle.to_tensor(expected.astype("float32")), layer.weight,
                             layer.bias, padding=1, mask=mask)
    np.testing.assert_allclose(y.numpy(), explicit.numpy(), rtol=1e-6, atol=1e-6)
    y.sum().backward()
    for t in (x.grad, layer.weight.grad, layer.conv_offset.weight.grad, layer.conv_offset.bias.grad):
        assert t is not None and np.isfinite(t.numpy()).all()
    assert f"offset_bound={bound}" in repr(layer)


def test_bounded_sampling_layer_hits_the_bound_and_stays_finite():
    layer = DeformableSampling2D(2, offset_bound=1.0, offset_bound_fn="sigmoid")
    layer.conv_offset.bias.set_value(paddle.to_tensor([1e9, -1e9, -1e9, 1e9]))
    x = paddle.randn([1, 2, 4, 5])
    x.stop_gradient = False
    offset = layer.predict_offsets(x)
    np.testing.assert_array_equal(offset.numpy()[0, :, 0, 0], [1.0, -1.0, -1.0, 1.0])
    y = layer(x)
    np.testing.assert_allclose(y.numpy(), grid_sample_per_channel(x, offset).numpy(),
                               rtol=1e-5, atol=1e-5)
    y.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()
    assert np.isfinite(layer.conv_offset.weight.grad.numpy()).all()
    # unbounded layers are unchanged
    assert DeformConv2D(2, 3, 3).offset_bound is None


@pytest.mark.parametrize(
    "kwargs, word",
    [(dict(offset_bound=0), "offset_bound"), (dict(offset_bound=True), "offset_bound"),
     (dict(offset_bound=1.0, offset_bound_fn="softsign"), "offset_bound_fn")],
)
def test_deform_conv_rejects_bad_bounds(kwargs, word):
    with pytest.raises(ValueError, match=word):
        DeformConv2D(2, 3, 3, **kwargs)
