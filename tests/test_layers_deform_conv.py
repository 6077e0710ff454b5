"""DeformConv2D: equivalences at initialisation, explicit offsets, training, arguments, checkpoints."""
import re

import numpy as np
import paddle
import pytest

import paddle_dcn
from paddle_dcn import DeformConv2D
from paddle_dcn.layers import load_state_dict


def _conv_like(layer: DeformConv2D, bias: bool = True) -> paddle.nn.Conv2D:
    conv = paddle.nn.Conv2D(
        layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
        padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
        bias_attr=None if bias else False,
    )
    conv.weight.set_value(layer.weight)
    if bias:
        conv.bias.set_value(layer.bias)
    return conv


CONFIGS = [
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, padding=(1, 0), dilation=(1, 2)),
    dict(in_channels=6, out_channels=4, kernel_size=3, padding=2, dilation=2, groups=2, deformable_groups=3),
]


def _randomise_bias(layer: DeformConv2D) -> None:
    layer.bias.set_value(paddle.randn(layer.bias.shape))


@pytest.mark.parametrize("config", CONFIGS)
def test_v1_at_init_equals_conv2d(config):
    layer = DeformConv2D(modulated=False, **config)
    _randomise_bias(layer)
    x = paddle.randn([2, config["in_channels"], 9, 8])
    np.testing.assert_allclose(layer(x).numpy(), _conv_like(layer)(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", CONFIGS)
def test_v2_at_init_is_half_the_conv_by_default(config):
    layer = DeformConv2D(**config)
    assert layer.mask_init == 0.5
    _randomise_bias(layer)
    x = paddle.randn([2, config["in_channels"], 9, 8])
    conv = _conv_like(layer, bias=False)(x).numpy()
    expected = 0.5 * conv + layer.bias.numpy().reshape(1, -1, 1, 1)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", CONFIGS)
def test_v2_with_mask_init_one_equals_conv2d(config):
    layer = DeformConv2D(mask_init=1.0, **config)
    _randomise_bias(layer)
    x = paddle.randn([2, config["in_channels"], 9, 8])
    np.testing.assert_allclose(layer(x).numpy(), _conv_like(layer)(x).numpy(), rtol=1e-5, atol=1e-5)


def test_weight_and_bias_match_conv2d_shapes_and_init():
    paddle.seed(7)
    conv = paddle.nn.Conv2D(8, 16, 3, groups=2)
    paddle.seed(7)
    layer = DeformConv2D(8, 16, 3, groups=2)
    assert layer.weight.shape == conv.weight.shape and layer.bias.shape == conv.bias.shape
    # same seed, same default initialiser (Normal(0, sqrt(2/(C_in*kh*kw)))) -> same values
    np.testing.assert_array_equal(layer.weight.numpy(), conv.weight.numpy())
    np.testing.assert_array_equal(layer.bias.numpy(), np.zeros(16, np.float32))


def test_conv2d_state_dict_loads_and_from_conv2d_copies():
    conv = paddle.nn.Conv2D(3, 5, 3, padding=1)
    conv.bias.set_value(paddle.randn([5]))
    x = paddle.randn([1, 3, 7, 7])
    layer = DeformConv2D(3, 5, 3, padding=1, modulated=False)
    missing, _ = load_state_dict(layer, conv.state_dict())
    assert set(missing) == {"conv_offset.weight", "conv_offset.bias"}
    np.testing.assert_allclose(layer(x).numpy(), conv(x).numpy(), rtol=1e-5, atol=1e-5)
    converted = DeformConv2D.from_conv2d(conv, mask_init=1.0)
    assert converted.modulated and converted.padding == [1, 1]
    np.testing.assert_allclose(converted(x).numpy(), conv(x).numpy(), rtol=1e-5, atol=1e-5)


def test_explicit_offsets_match_the_op():
    layer = DeformConv2D(4, 6, 3, padding=1, deformable_groups=2)
    x = paddle.randn([2, 4, 6, 5])
    offset = paddle.randn([2, 2 * 2 * 9, 6, 5])
    mask = paddle.rand([2, 2 * 9, 6, 5])
    expected = paddle_dcn.ops.deform_conv2d(
        x, offset, layer.weight, layer.bias, padding=1, deformable_groups=2, mask=mask
    )
    np.testing.assert_allclose(layer(x, offset, mask).numpy(), expected.numpy(), rtol=1e-6)
    v1 = DeformConv2D(4, 6, 3, padding=1, modulated=False, offset_branch=False)
    assert v1.conv_offset is None
    offset1 = paddle.randn([2, 18, 6, 5])
    expected1 = paddle_dcn.ops.deform_conv2d(x, offset1, v1.weight, v1.bias, padding=1)
    np.testing.assert_allclose(v1(x, offset1).numpy(), expected1.numpy(), rtol=1e-6)


def test_predicted_offsets_are_used():
    layer = DeformConv2D(3, 4, 3, padding=1)
    layer.conv_offset.weight.set_value(paddle.randn(layer.conv_offset.weight.shape) * 0.2)
    layer.conv_offset.bias.set_value(paddle.randn(layer.conv_offset.bias.shape))
    x = paddle.randn([2, 3, 6, 6])
    offset, mask = layer.predict_offsets(x)
    branch = layer.conv_offset(x).numpy()  # Paddle's conv2d; the layer's CPU path rounds apart
    np.testing.assert_allclose(offset.numpy(), branch[:, :18], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mask.numpy(), 1 / (1 + np.exp(-branch[:, 18:])), rtol=1e-5)
    np.testing.assert_allclose(layer(x).numpy(), layer(x, offset, mask).numpy(), rtol=1e-6)


@pytest.mark.parametrize("modulated", [False, True])
def test_one_step_trains_the_offset_branch(modulated):
    layer = DeformConv2D(3, 4, 3, padding=1, modulated=modulated)
    optimizer = paddle.optimizer.SGD(learning_rate=0.1, parameters=layer.parameters())
    x = paddle.randn([2, 3, 8, 8])
    target = paddle.randn([2, 4, 8, 8])
    before = layer.conv_offset.weight.numpy().copy()
    loss = ((layer(x) - target) ** 2).mean()
    loss.backward()
    grad = layer.conv_offset.weight.grad.numpy()
    assert np.abs(grad).max() > 0
    optimizer.step()
    assert np.abs(layer.conv_offset.weight.numpy() - before).max() > 0
    np.testing.assert_allclose(layer.conv_offset.weight.numpy(), before - 0.1 * grad, rtol=1e-5, atol=1e-7)


def test_offset_lr_mult_scales_the_offset_step():
    deltas = []
    for mult in (1.0, 0.1):
        paddle.seed(3)
        layer = DeformConv2D(3, 4, 3, padding=1, offset_lr_mult=mult)
        optimizer = paddle.optimizer.SGD(learning_rate=0.5, parameters=layer.parameters())
        paddle.seed(4)
        x = paddle.randn([1, 3, 6, 6])
        (layer(x) ** 2).mean().backward()
        optimizer.step()
        deltas.append((layer.conv_offset.bias.numpy(), layer.weight.numpy()))
    np.testing.assert_allclose(deltas[1][0], 0.1 * deltas[0][0], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(deltas[1][1], deltas[0][1], rtol=1e-6)  # main weight: full rate


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(in_channels=8, out_channels=16, kernel_size=3), 16 * 8 * 9 + 16 + (27 * 8 * 9 + 27)),
        (dict(in_channels=8, out_channels=16, kernel_size=3, modulated=False, bias_attr=False),
         16 * 8 * 9 + (18 * 8 * 9 + 18)),
        (dict(in_channels=8, out_channels=16, kernel_size=3, groups=4, deformable_groups=2),
         16 * 2 * 9 + 16 + (54 * 8 * 9 + 54)),
        (dict(in_channels=8, out_channels=16, kernel_size=(1, 3), offset_branch=False), 16 * 8 * 3 + 16),
    ],
)
def test_parameter_count(kwargs, expected):
    layer = DeformConv2D(**kwargs)
    assert sum(int(np.prod(p.shape)) for p in layer.parameters()) == expected


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(in_channels=0), "in_channels"),
        (dict(out_channels=-2), "out_channels"),
        (dict(kernel_size=(3, 0)), "kernel_size"),
        (dict(kernel_size=2.5), "kernel_size"),
        (dict(stride=0), "stride"),
        (dict(padding=-1), "padding"),
        (dict(dilation=(1, 0)), "dilation"),
        (dict(groups=3), "groups"),
        (dict(deformable_groups=3), "deformable_groups"),
        (dict(out_channels=6, groups=4, in_channels=8), "out_channels"),
        (dict(mask_init=0.7), "mask_init"),
        (dict(offset_lr_mult=0.0), "offset_lr_mult"),
        (dict(modulated="yes"), "modulated"),
        (dict(padding_mode="reflect"), "padding_mode"),
        (dict(data_format="NHWC"), "data_format"),
    ],
)
def test_bad_constructor_arguments(kwargs, argument):
    base = dict(in_channels=4, out_channels=8, kernel_size=3)
    base.update(kwargs)
    with pytest.raises(ValueError, match=argument):
        DeformConv2D(**base)


def test_bad_forward_arguments():
    x = paddle.randn([1, 4, 5, 5])
    v2 = DeformConv2D(4, 4, 3, padding=1)
    with pytest.raises(ValueError, match="mask"):
        v2(x, paddle.zeros([1, 18, 5, 5]))
    with pytest.raises(ValueError, match="mask"):
        v2(x, mask=paddle.ones([1, 9, 5, 5]))
    v1 = DeformConv2D(4, 4, 3, padding=1, modulated=False, offset_branch=False)
    with pytest.raises(ValueError, match="offset_branch"):
        v1(x)
    with pytest.raises(ValueError, match="mask"):
        v1(x, paddle.zeros([1, 18, 5, 5]), paddle.ones([1, 9, 5, 5]))
    with pytest.raises(ValueError, match="offset"):
        v1(x, paddle.zeros([1, 16, 5, 5]))
    # x itself is named (was: the offset branch's weight shape, a tensor the user never made)
    for bad in ([1, 8, 5, 5], [1, 5, 5, 4], [4, 5, 5]):
        with pytest.raises(ValueError, match=r"x must have shape \[N, in_channels=4, H, W\] \(NCHW\), got " +
                           re.escape(str(bad))):
            v2(paddle.randn(bad))
    with pytest.raises(TypeError, match="x must be a paddle.Tensor"):
        v2(np.zeros((1, 4, 5, 5), "float32"))


def test_extra_repr_shows_configuration():
    text = repr(DeformConv2D(4, 8, 3, stride=2, padding=1, deformable_groups=2, mask_init=1.0,
                             offset_lr_mult=0.1))
    for piece in ("4, 8", "kernel_size=[3, 3]", "stride=[2, 2]", "deformable_groups=2",
                  "modulated=True", "mask_init=1.0", "offset_lr_mult=0.1"):
        assert piece in text


def test_state_dict_carries_a_version_and_round_trips(tmp_path):
    layer = DeformConv2D(3, 4, 3, padding=1)
    layer.conv_offset.bias.set_value(paddle.randn(layer.conv_offset.bias.shape))
    state = layer.state_dict()
    assert int(state["version"].numpy()[0]) == DeformConv2D.VERSION
    paddle.save(state, str(tmp_path / "layer.pdparams"))
    other = DeformConv2D(3, 4, 3, padding=1)
    missing, unexpected = load_state_dict(other, paddle.load(str(tmp_path / "layer.pdparams")))
    assert not missing and not unexpected
    x = paddle.randn([1, 3, 5, 5])
    np.testing.assert_allclose(other(x).numpy(), layer(x).numpy(), rtol=1e-6)


def test_newer_checkpoint_version_is_refused():
    model = paddle.nn.Sequential(DeformConv2D(3, 4, 3))
    state = model.state_dict()
    state["0.version"] = paddle.to_tensor([DeformConv2D.VERSION + 1], dtype="int64")
    with pytest.raises(ValueError, match="0.version"):
        load_state_dict(model, state)


def test_float64():
    layer = DeformConv2D(3, 4, 3, padding=1, modulated=False)
    layer.to(dtype="float64")
    x = paddle.randn([1, 3, 5, 5], dtype="float64")
    out = layer(x)
    assert out.dtype == paddle.float64
    assert float(layer.version.numpy()[0]) == DeformConv2D.VERSION  # .to() casts it, keeps it
    expected = paddle.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-10)
    fresh = DeformConv2D(3, 4, 3, padding=1, modulated=False)  # int64 version buffer
    state = {k: (v if k == "version" else v.astype("float64")) for k, v in fresh.state_dict().items()}
    missing, _ = load_state_dict(layer, state)  # the version entries' dtypes differ
    assert not missing


@pytest.mark.parametrize("padding", [0, 2, (1, 2), [1, 1, 2, 2], "same", "valid"])
def test_from_conv2d_keeps_the_padding(padding):
    dilation = 1 if padding == "same" else (2, 1)
    conv = paddle.nn.Conv2D(3, 4, (3, 5), padding=padding, dilation=dilation)
    x = paddle.randn([1, 3, 9, 11])
    layer = DeformConv2D.from_conv2d(conv, modulated=False)
    np.testing.assert_allclose(layer(x).numpy(), conv(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "conv, message",
    [
        (paddle.nn.Conv2D(3, 4, 3, padding=[1, 2, 1, 1]), "asymmetric"),
        (paddle.nn.Conv2D(3, 4, 3, padding="same", stride=2), "same"),
        (paddle.nn.Conv2D(3, 4, 3, padding="same", dilation=2), "same"),
        (paddle.nn.Conv2D(3, 4, 3, data_format="NHWC"), "data_format"),
        (paddle.nn.Conv2D(3, 4, 3, padding=1, padding_mode="reflect"), "padding_mode"),
        (paddle.nn.Linear(3, 4), "conv"),
    ],
)
def test_from_conv2d_refuses_what_it_cannot_copy(conv, message):
    with pytest.raises(ValueError, match=message):
        DeformConv2D.from_conv2d(conv)
