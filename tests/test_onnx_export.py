"""ONNX export (paddle_dcn.onnx_export, tools/export.py --format onnx) checked in onnxruntime.

Every file must pass onnx.checker; its onnxruntime output on a batch the exporter did not see
(other batch size than the export's own check) must equal Paddle's to 1e-4 of the output's
scale, and each deformable conv must be one DeformConv node carrying its own attributes.
"""
import os

import numpy as np
import onnx
import onnxruntime as ort
import paddle
import pytest

from engine_helpers import tool_main as _tool
from paddle_dcn import CoordConv, DCNv3, DCNv4, DeformableSampling2D, DeformConv2D, DeformRoIPool, SpatialTransformer
from paddle_dcn.config import load_config
from paddle_dcn.data import GeometricShapes
from paddle_dcn.engine import deploy, onnx_deploy
from paddle_dcn import inference, onnx_export
from paddle_dcn.onnx_export import OnnxExportError, export_onnx
from paddle_dcn.registry import MODELS, build

RTOL = 1e-4


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _paddle(layer, *arrays):
    layer.eval()
    with paddle.no_grad():
        out = layer(*[paddle.to_tensor(a) for a in arrays])
    return [o.numpy() for o in (out if isinstance(out, (list, tuple)) else [out])]


def _assert_close(got, want):
    assert got.shape == want.shape
    scale = float(np.max(np.abs(want)))
    assert scale > 0
    assert float(np.max(np.abs(got - want))) <= RTOL * scale, float(np.max(np.abs(got - want))) / scale


def _randomise_offsets(layer, std):
    """Non-zero offset/mask predictions (zero-initialised layers would test a plain conv)."""
    paddle.seed(1)
    for p in layer.conv_offset.parameters():
        p.set_value(paddle.randn(p.shape, dtype=p.dtype) * std)


def _nodes(path, op_type):
    return [n for n in onnx.load(str(path)).graph.node if n.op_type == op_type]


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


DCN_GRID = {
    "v1": dict(in_channels=6, out_channels=4, kernel_size=3, padding=1, modulated=False),
    "v2_dg2_cout5": dict(in_channels=8, out_channels=5, kernel_size=3, padding=1, deformable_groups=2),
    "groups2_dg4_stride2_dil2": dict(in_channels=8, out_channels=6, kernel_size=3, stride=2, padding=2, dilation=2,
                                     groups=2, deformable_groups=4),
    "kernel3x5_pad1x2_stride2x1": dict(in_channels=4, out_channels=4, kernel_size=(3, 5), stride=(2, 1),
                                       padding=(1, 2), dilation=(1, 2)),
    "pad2x0_no_bias": dict(in_channels=4, out_channels=3, kernel_size=3, padding=(2, 0), bias_attr=False),
    "over_output_groups2": dict(in_channels=8, out_channels=6, kernel_size=3, padding=1, groups=2,
                                deformable_groups=3, deformable_groups_over="output"),
    "bounded_tanh": dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, offset_bound=1.5),
    "bounded_sigmoid_v1": dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, offset_bound=2.0,
                               offset_bound_fn="sigmoid", modulated=False),
    "mask_init_1": dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, mask_init=1.0),
    "kernel1": dict(in_channels=4, out_channels=8, kernel_size=1, deformable_groups=2),
}


@pytest.mark.parametrize("name", sorted(DCN_GRID))
def test_deform_conv2d_exports_as_one_deform_conv_node(tmp_path, name):
    kwargs = DCN_GRID[name]
    paddle.seed(0)
    layer = DeformConv2D(**kwargs)
    _randomise_offsets(layer, std=0.5)  # offsets of several pixels: samples leave the map
    path = export_onnx(layer, str(tmp_path / f"{name}.onnx"), [paddle.static.InputSpec([None, kwargs["in_channels"], 11, 9])])
    onnx.checker.check_model(path, full_check=True)
    x = np.random.default_rng(2).standard_normal([3, kwargs["in_channels"], 11, 9]).astype(np.float32)
    (got,) = _session(path).run(None, {_session(path).get_inputs()[0].name: x})
    (want,) = _paddle(layer, x)
    _assert_close(got, want)

    (node,) = _nodes(path, "DeformConv")
    attrs = _attrs(node)
    modulated = kwargs.get("modulated", True)
    assert attrs["offset_group"] == layer._op_args.deformable_groups
    assert attrs["group"] == layer._op_args.groups
    assert attrs["strides"] == list(layer.stride) and attrs["dilations"] == list(layer.dilation)
    assert attrs["pads"] == [layer.padding[0], layer.padding[1]] * 2
    has_bias = len(node.input) > 3 and node.input[3] != ""
    assert has_bias == (kwargs.get("bias_attr", None) is not False)
    assert (len(node.input) == 5) == modulated  # the mask input only for v2


def test_deform_conv2d_with_explicit_offsets_and_opset_22(tmp_path):
    layer = DeformConv2D(4, 6, 3, padding=1, deformable_groups=2, offset_branch=False)
    spec = [paddle.static.InputSpec([None, 4, 8, 8]), paddle.static.InputSpec([None, 36, 8, 8]),
            paddle.static.InputSpec([None, 18, 8, 8])]
    path = inference.export_onnx(layer, str(tmp_path / "explicit.onnx"), spec, opset=22)  # the public wrapper
    model = onnx.load(path)
    assert model.opset_import[0].version == 22
    rng = np.random.default_rng(3)
    x = rng.standard_normal([2, 4, 8, 8]).astype(np.float32)
    offset = (rng.standard_normal([2, 36, 8, 8]) * 4).astype(np.float32)  # far outside the map too
    mask = rng.uniform(0, 1, [2, 18, 8, 8]).astype(np.float32)
    session = _session(path)
    feeds = dict(zip([i.name for i in session.get_inputs()], [x, offset, mask]))
    (got,) = session.run(None, feeds)
    _assert_close(got, _paddle(layer, x, offset, mask)[0])


def test_other_layers_export(tmp_path):
    paddle.seed(0)
    stn = SpatialTransformer()
    last = stn.localization.head[-1]
    last.bias.set_value(paddle.to_tensor([0.8, -0.3, 0.1, 0.25, 0.9, -0.2]))  # not the identity
    sampling = DeformableSampling2D(3)
    _randomise_offsets(sampling, std=0.5)
    cases = {"coord_conv": (CoordConv(3, 4, 3, padding=1), [3, 10, 12]),
             "coord_conv_r": (CoordConv(3, 4, 3, with_r=True), [3, 9, 9]),
             "spatial_transformer": (stn, [3, 20, 24]),
             "deformable_sampling": (sampling, [3, 9, 10])}
    for name, (layer, shape) in cases.items():
        path = export_onnx(layer, str(tmp_path / f"{name}.onnx"), [paddle.static.InputSpec([None] + shape)])
        x = np.random.default_rng(4).standard_normal([3] + shape).astype(np.float32)
        session = _session(path)
        (got,) = session.run(None, {session.get_inputs()[0].name: x})
        _assert_close(got, _paddle(layer, x)[0])
    assert len(_nodes(tmp_path / "spatial_transformer.onnx", "GridSample")) == 1
    assert len(_nodes(tmp_path / "deformable_sampling.onnx", "DeformConv")) == 1


AGGREGATE_GRID = {  # (layer, input shape without the batch)
    "dcnv3": (lambda: DCNv3(8, groups=2), [8, 9, 10]),
    "dcnv3_k5_dil2_stride2_scale0.5": (lambda: DCNv3(12, kernel_size=5, stride=2, dilation=2, groups=3,
                                                     offset_scale=0.5), [12, 11, 9]),
    "dcnv3_nhwc_width1": (lambda: DCNv3(6, groups=6, data_format="NHWC"), [7, 8, 6]),
    "dcnv4_dw_conv": (lambda: DCNv4(8, groups=2, mask_init="mean"), [8, 9, 10]),
    "dcnv4_flash_stride2_scale2": (lambda: DCNv4(16, groups=4, stride=2, dw_kernel_size=None, output_bias=False,
                                                 offset_scale=2.0), [16, 9, 10]),
    "dcnv4_without_pointwise": (lambda: DCNv4(8, groups=2, without_pointwise=True, dw_kernel_size=None), [8, 6, 7]),
    "dcnv3_center_feature_scale_stride2": (lambda: DCNv3(8, groups=2, stride=2, center_feature_scale=True),
                                           [8, 9, 10]),
    "dcnv4_center_feature_scale": (lambda: DCNv4(8, groups=2, dw_kernel_size=None, center_feature_scale=True),
                                   [8, 7, 6]),
}


@pytest.mark.parametrize("name", sorted(AGGREGATE_GRID))
def test_dcnv3_dcnv4_export_as_one_deform_conv_node(tmp_path, name):
    """The aggregation becomes DeformConv with one all-ones channel per group (offsets and
    weights reordered); offsets of about a pixel, so that the samples fall between pixels."""
    make, shape = AGGREGATE_GRID[name]
    paddle.seed(0)
    layer = make()
    for pname, p in layer.named_parameters():
        if pname.startswith(("offset", "mask", "center")):
            p.set_value(paddle.randn(p.shape, dtype=p.dtype) * 0.5)
    path = export_onnx(layer, str(tmp_path / "m.onnx"), [paddle.static.InputSpec([None] + shape)])
    (node,) = _nodes(path, "DeformConv")
    a = _attrs(node)
    assert a["group"] == layer.channels and a["offset_group"] == layer.groups
    assert a["kernel_shape"] == layer.kernel_size and a["strides"] == layer.stride
    x = np.random.default_rng(2).standard_normal([3] + shape).astype(np.float32)
    session = _session(path)
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    want = _paddle(layer, x)[0]
    _assert_close(got, want)
    with paddle.no_grad():  # the offsets move the samples: not the zero-offset layer's output
        for pname, p in layer.named_parameters():
            if pname.startswith("offset"):
                p.set_value(paddle.zeros_like(p))
        assert float(np.max(np.abs(_paddle(layer, x)[0] - want))) > 100 * RTOL * float(np.max(np.abs(want)))


@pytest.mark.parametrize("cls", [DCNv3, DCNv4])
def test_dcnv3_dcnv4_export_with_dynamic_spatial_size(tmp_path, cls):
    """InputSpec [None, C, None, None]: one file serves every image size (DCNv3's traced
    group softmax once refused several unknown sizes)."""
    paddle.seed(1)
    layer = cls(8, groups=2)
    for pname, p in layer.named_parameters():
        if pname.startswith(("offset", "mask")):
            p.set_value(paddle.randn(p.shape, dtype=p.dtype) * 0.5)
    path = export_onnx(layer, str(tmp_path / "m.onnx"), [paddle.static.InputSpec([None, 8, None, None])])
    session = _session(path)
    for shape in ([2, 8, 7, 7], [1, 8, 9, 11]):
        x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
        (got,) = session.run(None, {session.get_inputs()[0].name: x})
        _assert_close(got, _paddle(layer, x)[0])


class _NormGeluStride(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.norm = paddle.nn.LayerNorm([5])
        self.gelu = paddle.nn.GELU(approximate=True)

    def forward(self, x):
        return self.gelu(self.norm(x))[:, ::2, 1::3, :] + paddle.nn.functional.gelu(x)[:, ::2, 1::3, :]


def test_layer_norm_gelu_and_strided_slices_export(tmp_path):
    paddle.seed(3)
    layer = _NormGeluStride()
    layer.norm.weight.set_value(paddle.rand([5]) + 0.5)
    layer.norm.bias.set_value(paddle.randn([5]))
    path = export_onnx(layer, str(tmp_path / "m.onnx"), [paddle.static.InputSpec([None, 7, 8, 5])])
    assert [len(_nodes(path, t)) for t in ("LayerNormalization", "Erf", "Tanh")] == [1, 1, 1]
    x = (np.random.default_rng(5).standard_normal([2, 7, 8, 5]) * 2).astype(np.float32)
    session = _session(path)
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    _assert_close(got, _paddle(layer, x)[0])


class _WithRoIPool(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 3, padding=1)
        self.pool = DeformRoIPool(output_size=2)

    def forward(self, x, boxes, boxes_num):
        return self.pool(self.conv(x), boxes, boxes_num)


class _WithCumsum(paddle.nn.Layer):
    def forward(self, x):
        return paddle.cumsum(x, axis=1)


def test_unexportable_layers_raise_a_clear_error_and_leave_no_file(tmp_path):
    spec = [paddle.static.InputSpec([1, 3, 8, 8]), paddle.static.InputSpec([2, 4]),
            paddle.static.InputSpec([1], "int32")]
    path = tmp_path / "roi.onnx"
    with pytest.raises(OnnxExportError, match=r"layer /_WithRoIPool/DeformRoIPool.*deformable RoI pooling\) has no "
                                              r"standard ONNX operator"):
        export_onnx(_WithRoIPool(), str(path), spec)
    assert not path.exists() and not os.listdir(tmp_path)
    with pytest.raises(OnnxExportError, match=r"Paddle op pd_op.cumsum has no converter"):
        export_onnx(_WithCumsum(), str(tmp_path / "cumsum.onnx"), [paddle.static.InputSpec([None, 3])])
    with pytest.raises(ValueError, match="opset must be one of"):
        export_onnx(DeformConv2D(2, 2, 3), str(tmp_path / "old.onnx"), [paddle.static.InputSpec([None, 2, 5, 5])],
                    opset=18)
    assert not os.listdir(tmp_path)


def _train_few_iterations(tmp_path, config):
    cache = str(tmp_path / "cache")
    overrides = ["epochs=1", "train_dataset.num_samples=64", "eval_dataset.num_samples=32",
                 f"train_dataset.cache_dir={cache}", f"eval_dataset.cache_dir={cache}", "loader.eval_batch_size=32",
                 "visualdl.enabled=false"]
    out = tmp_path / "train"
    _tool("train")(["-c", config, "--output", str(out), "-o", *overrides])
    return overrides, out / "best"


@pytest.mark.parametrize("config,deform_convs", [("configs/dcn_r50.yml", 7), ("configs/r50.yml", 0),
                                                 ("configs/dcnv3_r50.yml", 7), ("configs/dcnv4_flash_r50.yml", 7)])
def test_shipped_classifier_exports_with_same_top1_at_batch_1_and_5(tmp_path, config, deform_convs):
    overrides, weights = _train_few_iterations(tmp_path, config)
    result = _tool("export")(["-c", config, "-w", str(weights), "--output", str(tmp_path / "inference"),
                              "--format", "onnx", "-o", *overrides])
    path = result["onnx"]
    onnx.checker.check_model(path, full_check=True)
    assert len(_nodes(path, "DeformConv")) == deform_convs
    assert onnx.load(path).graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    cfg = load_config(config, overrides)
    eval_set = GeometricShapes(**{k: v for k, v in cfg["eval_dataset"].items() if k != "type"})
    batch = np.stack([eval_set[i]["image"] for i in range(5)]).astype(np.float32)
    model = deploy.build_model_with_weights(cfg, str(weights))
    with paddle.no_grad():
        want = model.predict(paddle.to_tensor(batch)).numpy()
    session = _session(path)
    (five,) = session.run(None, {"image": batch})
    ones = np.concatenate([session.run(None, {"image": batch[i: i + 1]})[0] for i in range(5)])
    np.testing.assert_array_equal(five.argmax(1), want.argmax(1))
    np.testing.assert_array_equal(ones.argmax(1), want.argmax(1))
    np.testing.assert_allclose(five, want, atol=1e-4)


def test_detector_exports_backbone_fpn_rpn_and_names_what_it_cannot(tmp_path):
    cfg = load_config("configs/dcn_faster_rcnn_r50_fpn.yml")
    paddle.seed(0)
    model = build(MODELS, cfg["model"])
    weights = str(tmp_path / "init.pdparams")
    paddle.save(model.state_dict(), weights)
    result = onnx_deploy.export(cfg, weights, str(tmp_path / "det"))
    roi = [layer for op, layer in result["not_exported"] if op == "custom_op.pdcn_deform_roi_pool"]
    assert len(roi) == 4 and all("RoIExtractor/ModulatedDeformRoIPoolPack" in layer for layer in roi)  # 4 FPN levels
    assert onnx_export.why_unsupported("custom_op.pdcn_deform_roi_pool").startswith("no standard ONNX operator")
    path = result["onnx"]
    assert len(_nodes(path, "DeformConv")) > 0
    image = np.random.default_rng(5).standard_normal([1, 3, 96, 128]).astype(np.float32)
    got = _session(path).run(None, {"image": image})
    want = _paddle(onnx_deploy._DetectorDense(model), image)
    assert len(got) == len(want) == len(result["outputs"])
    for g, w in zip(got, want):
        _assert_close(g, w)
