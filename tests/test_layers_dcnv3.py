"""DCNv3 / DCNv4 layers: the block wiring against a pure-Paddle reference (grid_sample core),
initial behaviour, layouts, to_static + Paddle Inference, the ResNet stage option, errors."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddle_dcn import DCNv3, DCNv4, inference
from paddle_dcn.ops.deform_aggregate_reference import deform_aggregate_reference


@pytest.fixture
def float64():
    paddle.set_default_dtype("float64")
    yield
    paddle.set_default_dtype("float32")


def _randomise(layer, names, std):
    paddle.seed(3)
    for name, p in layer.named_parameters():
        if any(name.startswith(n) for n in names):
            p.set_value(paddle.randn(p.shape, dtype=p.dtype) * std)


def _nhwc(x):
    return x.transpose([0, 2, 3, 1])


def dcnv3_reference(layer, x):
    """InternImage's DCNv3 forward with the grid_sample core, from the layer's parameters."""
    value = layer.input_proj(_nhwc(x))
    feat = F.gelu(layer.dw_norm(_nhwc(layer.dw_conv(x))))
    k = layer.kernel_size[0] * layer.kernel_size[1]
    logits = layer.mask(feat)
    n, ho, wo, _ = logits.shape
    weight = F.softmax(logits.reshape([n, ho, wo, layer.groups, k]), -1).reshape([n, ho, wo, -1])
    out = deform_aggregate_reference(value, layer.offset(feat), weight, layer.kernel_size, layer.stride,
                                     layer.padding, layer.dilation, layer.groups, layer.offset_scale)
    if layer.center_feature_scale:
        out = _centre_blend(layer, out, value, feat)
    return layer.output_proj(out).transpose([0, 3, 1, 2])


def _centre_blend(layer, out, value, query):
    """InternImage's center_feature_scale as its code writes it: sigmoid(F.linear(query, W, b))
    per group, repeated over the group's channels, out * (1 - s) + x_proj * s; x_proj taken at
    the kernel centres (every stride-th input pixel, the padding keeping the centre on it)."""
    sh, sw = layer.stride
    centre = value[:, ::sh, ::sw, :]
    s = F.sigmoid(paddle.matmul(query, layer.center_feature_scale_proj_weight.t())
                  + layer.center_feature_scale_proj_bias)
    s = paddle.repeat_interleave(s, layer.channels // layer.groups, axis=-1)
    return out * (1 - s) + centre * s


def dcnv4_reference(layer, x):
    """DCNv4's forward with the grid_sample core: split the fused projection per group."""
    value = layer.value_proj(_nhwc(x))
    if layer.offset_mask_dw is not None:
        om_in = _nhwc(layer.offset_mask_dw(x))
    else:  # the input pixel under each output pixel's kernel centre, gathered by index
        sh, sw = layer.stride
        rows, cols = np.arange(0, x.shape[2], sh), np.arange(0, x.shape[3], sw)
        om_in = paddle.index_select(paddle.index_select(_nhwc(x), paddle.to_tensor(rows), axis=1),
                                    paddle.to_tensor(cols), axis=2)
    om = layer.offset_mask(om_in)
    k = layer.kernel_size[0] * layer.kernel_size[1]
    n, ho, wo, _ = om.shape
    om = om[..., : layer.groups * 3 * k].reshape([n, ho, wo, layer.groups, 3 * k])
    offset = om[..., : 2 * k].reshape([n, ho, wo, -1])
    weight = om[..., 2 * k:].reshape([n, ho, wo, -1])
    out = deform_aggregate_reference(value, offset, weight, layer.kernel_size, layer.stride, layer.padding,
                                     layer.dilation, layer.groups, layer.offset_scale)
    if layer.center_feature_scale:
        out = _centre_blend(layer, out, value, out)  # DCNv4 gates by the aggregation
    return layer.output_proj(out).transpose([0, 3, 1, 2])


@pytest.mark.parametrize("kwargs", [dict(channels=12, groups=3), dict(channels=16, groups=4, stride=2),
                                    dict(channels=8, groups=2, kernel_size=5, dilation=2, offset_scale=0.5),
                                    dict(channels=12, groups=3, center_feature_scale=True),
                                    dict(channels=16, groups=4, stride=(2, 3), center_feature_scale=True)])
def test_dcnv3_matches_the_reference_block(float64, kwargs):
    paddle.seed(0)
    layer = DCNv3(**kwargs)
    _randomise(layer, ("offset", "mask", "center_feature_scale"), 0.3)
    x = paddle.randn([2, kwargs["channels"], 9, 10])
    x.stop_gradient = False
    got, want = layer(x), dcnv3_reference(layer, x)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-10)
    params = [layer.offset.weight, layer.mask.weight, layer.input_proj.weight, layer.dw_conv.weight]
    if layer.center_feature_scale:
        params += [layer.center_feature_scale_proj_weight, layer.center_feature_scale_proj_bias]
    ga = paddle.grad(got.sum(), [x] + params)
    gb = paddle.grad(want.sum(), [x] + params)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-9)


@pytest.mark.parametrize("kwargs", [dict(channels=12, groups=3), dict(channels=16, groups=2, stride=2),
                                    dict(channels=12, groups=3, dw_kernel_size=None),
                                    dict(channels=16, groups=2, stride=2, dw_kernel_size=None),
                                    dict(channels=8, groups=4, stride=(3, 2), kernel_size=5, dilation=2,
                                         dw_kernel_size=None, output_bias=False),
                                    dict(channels=12, groups=3, center_feature_scale=True),
                                    dict(channels=16, groups=2, stride=2, dw_kernel_size=None, center_feature_scale=True)])
def test_dcnv4_matches_the_reference_block(float64, kwargs):
    paddle.seed(0)
    layer = DCNv4(**kwargs)
    _randomise(layer, ("offset_mask", "center_feature_scale"), 0.3)
    x = paddle.randn([2, kwargs["channels"], 9, 10])
    x.stop_gradient = False
    got, want = layer(x), dcnv4_reference(layer, x)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-10)
    params = [layer.offset_mask.weight, layer.value_proj.weight]
    if layer.center_feature_scale:
        params += [layer.center_feature_scale_proj_weight, layer.center_feature_scale_proj_bias]
    for a, b in zip(paddle.grad(got.sum(), [x] + params), paddle.grad(want.sum(), [x] + params)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-9)
    assert layer.offset_mask.weight.shape[1] % 8 == 0  # DCNv4's padded projection width


def test_initial_layers_average_each_window(float64):
    paddle.seed(1)
    x = paddle.randn([2, 8, 7, 7])
    box = lambda v: F.avg_pool2d(v, 3, stride=1, padding=1, exclusive=False)  # zeros outside count
    v3 = DCNv3(8, groups=2)
    want = v3.output_proj(_nhwc(box(v3.input_proj(_nhwc(x)).transpose([0, 3, 1, 2])))).transpose([0, 3, 1, 2])
    np.testing.assert_allclose(v3(x).numpy(), want.numpy(), atol=1e-12)
    v4 = DCNv4(8, groups=2, mask_init="mean")
    want = v4.output_proj(_nhwc(box(v4.value_proj(_nhwc(x)).transpose([0, 3, 1, 2])))).transpose([0, 3, 1, 2])
    np.testing.assert_allclose(v4(x).numpy(), want.numpy(), atol=1e-12)
    assert not DCNv4(8, groups=2)(x).numpy().any()  # DCNv4's own zero start


def test_channels_last_option_and_without_pointwise():
    paddle.seed(2)
    x = paddle.randn([2, 8, 6, 5])
    nchw = DCNv3(8, groups=2)
    nhwc = DCNv3(8, groups=2, data_format="NHWC")
    nhwc.set_state_dict(nchw.state_dict())
    _randomise(nchw, ("offset", "mask"), 0.2)
    nhwc.set_state_dict(nchw.state_dict())
    np.testing.assert_allclose(nhwc(_nhwc(x)).numpy(), _nhwc(nchw(x)).numpy(), atol=1e-6)
    bare = DCNv4(8, groups=2, dw_kernel_size=None, without_pointwise=True, mask_init="mean")
    assert not hasattr(bare, "value_proj") and bare(x).shape == [2, 8, 6, 5]


@pytest.mark.parametrize("spatial", [(7, 7), (None, None)], ids=["fixed_hw", "dynamic_hw"])
@pytest.mark.parametrize("cls, kwargs", [(DCNv3, {}), (DCNv4, {}), (DCNv4, dict(stride=2, dw_kernel_size=None)),
                                         (DCNv3, dict(stride=2, center_feature_scale=True)),
                                         (DCNv4, dict(center_feature_scale=True))])
def test_to_static_jit_save_and_paddle_inference(tmp_path, cls, kwargs, spatial):
    """Dynamic H and W (InputSpec None) once failed DCNv3's export: its traced group softmax
    unflattened a tensor of several unknown sizes."""
    paddle.seed(4)
    layer = cls(8, groups=2, **kwargs)
    _randomise(layer, ("offset", "mask", "center"), 0.3)
    layer.eval()
    sizes = [(7, 7)] if spatial[0] else [(7, 7), (9, 11)]
    xs = [paddle.randn([3, 8, h, w]) for h, w in sizes]
    wants = [layer(x).numpy() for x in xs]
    spec = [paddle.static.InputSpec([None, 8, *spatial], "float32", "x")]
    static = paddle.jit.to_static(layer, input_spec=spec, full_graph=True)
    for x, want in zip(xs, wants):
        np.testing.assert_allclose(static(x).numpy(), want, atol=1e-5)
    # an empty batch (a shape of 0s once read as literal zeros in the traced group softmax)
    assert static(paddle.randn([0, 8, 7, 7])).shape == layer(paddle.randn([0, 8, 7, 7])).shape
    prefix = str(tmp_path / "model")
    inference.export_model(layer, prefix, spec)
    predictor = inference.create_predictor(prefix)
    for x, want in zip(xs, wants):
        (got,) = inference.run_predictor(predictor, [x.numpy()])
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("cls", [DCNv3, DCNv4])
def test_default_to_static_layers_of_different_strides_in_one_process(cls):
    """SOT turns ints read from layers of one class that differ (stride 1 here, 2 there) into
    symbolic values; the op's arguments travel in an OpArgs (as every other layer's), so each
    layer still traces (they raised 'stride must be an int or a pair of ints' from the second
    stride on)."""
    for stride, kwargs in ((1, {}), (2, {}), ((3, 2), dict(center_feature_scale=True)),
                           (2, dict(center_feature_scale=True)), (1, dict(center_feature_scale=True))):
        paddle.seed(7)
        layer = cls(8, groups=2, stride=stride, **kwargs)
        _randomise(layer, ("offset", "mask", "center"), 0.3)
        x = paddle.randn([2, 8, 7, 9])
        np.testing.assert_allclose(paddle.jit.to_static(layer)(x).numpy(), layer(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("cls", [DCNv3, DCNv4])
def test_default_to_static_matches_dygraph_from_the_first_call(cls):
    """paddle.jit.to_static's default mode (SOT, graphs may break): DCNv3's first two calls
    once raised inside Paddle, after a graph break left the CPU-only ops running on traced
    tensors. Training and eval, shapes changing between calls."""
    paddle.seed(5)
    layer = cls(8, groups=2)
    _randomise(layer, ("offset", "mask"), 0.3)
    static = paddle.jit.to_static(cls(8, groups=2))
    static.set_state_dict(layer.state_dict())
    for train in (True, False):
        layer.train(train)
        static.train(train)
        for shape in ([1, 8, 5, 5], [2, 8, 7, 6], [3, 8, 9, 4]):
            x = paddle.randn(shape)
            np.testing.assert_allclose(static(x).numpy(), layer(x).numpy(), atol=1e-5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="channels=10 must be divisible by groups=4"):
        DCNv3(10, groups=4)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        DCNv3(8, kernel_size=2)
    with pytest.raises(ValueError, match=r"padding must be dilation\*\(kernel_size-1\)//2"):
        DCNv4(8, padding=0)
    with pytest.raises(ValueError, match="dw_kernel_size must be odd"):
        DCNv4(8, dw_kernel_size=2)
    with pytest.raises(ValueError, match="mask_init must be one of"):
        DCNv4(8, mask_init="ones")
    with pytest.raises(ValueError, match=r"DCNv3: x must be \[N, C, H, W\] with C = channels = 8"):
        DCNv3(8, groups=2)(paddle.randn([1, 4, 5, 5]))


@pytest.mark.parametrize("layer_cls", [DCNv3, DCNv4])
def test_input_dtypes_on_cpu(layer_cls):
    """Half activations are computed in float32 (as the other layers do); half parameters, a
    dtype other than the parameters' and integer input are ValueErrors naming the layer and
    the fix (they were Paddle's matmul errors)."""
    paddle.seed(6)
    layer = layer_cls(8, groups=2)
    _randomise(layer, ("offset", "mask"), 0.3)
    x = paddle.randn([2, 8, 5, 6])
    for half in ("bfloat16", "float16"):
        xh = x.astype(half)
        out = layer(xh)
        assert out.dtype == paddle.float32
        np.testing.assert_allclose(out.numpy(), layer(xh.astype("float32")).numpy(), rtol=1e-6, atol=1e-6)
    name = layer_cls.__name__
    with pytest.raises(ValueError, match=rf"{name}: x has dtype paddle.float64 but the layer's parameters are "
                                         r"paddle.float32: cast one to the other"):
        layer(x.astype("float64"))
    with pytest.raises(ValueError, match=rf"{name}: x must be a floating-point tensor, got dtype paddle.int32"):
        layer(x.astype("int32"))
    layer.to(dtype="bfloat16")
    with pytest.raises(ValueError, match=rf"{name}: its parameters are paddle.bfloat16; on CPU the layer computes "
                                         "in float32 or float64"):
        layer(x)


@pytest.mark.parametrize("layer_cls", [DCNv3, DCNv4])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_an_empty_batch_gives_an_empty_output(layer_cls, data_format):
    layer = layer_cls(16, groups=4, stride=2, data_format=data_format)
    shape = [0, 16, 9, 9] if data_format == "NCHW" else [0, 9, 9, 16]
    out = layer(paddle.randn(shape))
    assert out.shape == ([0, 16, 5, 5] if data_format == "NCHW" else [0, 5, 5, 16])


def test_resnet_takes_them_as_the_deformable_stage_operator():
    from paddle_dcn.models.resnet import ResNet

    for kind, layer_cls in (("DCNv3", DCNv3), ("DCNv4", DCNv4)):
        net = ResNet(depth=50, dcn_stages=[3], dcn={"type": kind, "groups": 2, "offset_lr_mult": 0.1},
                     stem="small", base_channels=8)
        layers = [l for l in net.sublayers() if isinstance(l, layer_cls)]
        assert len(layers) == 4 and layers[0].stride == [2, 2]  # conv3_x: 4 blocks, the first strided
        assert [o.shape for o in net(paddle.randn([2, 3, 16, 16]))] == [[2, 256, 2, 2]]
    flash = ResNet(depth=50, dcn_stages=[3], dcn={"type": "DCNv4", "groups": 2, "dw_kernel_size": None},
                   stem="small", base_channels=8)
    layers = [l for l in flash.sublayers() if isinstance(l, DCNv4)]
    assert layers[0].stride == [2, 2] and all(l.offset_mask_dw is None for l in layers)
    assert [o.shape for o in flash(paddle.randn([2, 3, 16, 16]))] == [[2, 256, 2, 2]]
    with pytest.raises(ValueError, match=r"dcn \(DCNv3\): unknown key\(s\) 'modulated'; valid keys: .*offset_scale"):
        ResNet(depth=50, dcn_stages=[3], dcn={"type": "DCNv3", "modulated": True})
    with pytest.raises(ValueError, match="keeps the channel count"):
        ResNet(depth=18, dcn_stages=[3], dcn={"type": "DCNv3"})


@pytest.mark.parametrize("config", ["configs/dcnv3_r50.yml", "configs/dcnv4_r50.yml", "configs/dcnv4_flash_r50.yml"])
def test_shipped_config_trains_end_to_end(tmp_path, config):
    import os

    from engine_helpers import tool_main

    cache = str(tmp_path / "cache")
    metrics = tool_main("train")(["-c", config, "--output", str(tmp_path / "out"), "-o", "epochs=1",
                          "train_dataset.num_samples=64", "eval_dataset.num_samples=32",
                          f"train_dataset.cache_dir={cache}", f"eval_dataset.cache_dir={cache}",
                          "visualdl.num_images=1"])
    assert 0.0 <= metrics["top1"] <= 100.0 and os.path.exists(tmp_path / "out" / "best.pdparams")
    # VisualDL: the offsets of the deformable stages (once recorded for DeformConv2D only)
    import glob

    from visualdl import LogReader

    (records,) = glob.glob(str(tmp_path / "out" / "vdl" / "vdlrecords.*"))
    tags = LogReader(file_path=records).get_tags()
    assert sorted(tags["histogram"]) == ["offsets/backbone.res2", "offsets/backbone.res3"]
    assert {"offsets_mean/backbone.res2", "offsets_mean/backbone.res3"} <= set(tags["scalar"])
    assert any(t.startswith("sampling_locations/backbone.res3") for t in tags["image"])
