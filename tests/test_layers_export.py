"""Layers under paddle.jit.to_static, paddle.jit.save/load and the Paddle Inference predictor."""
import numpy as np
import paddle
import pytest
from paddle.static import InputSpec

import paddle_dcn
from paddle_dcn import CoordConv, DeformConv2D, SpatialTransformer, inference


class Net(paddle.nn.Layer):
    """conv -> DeformConv2D v2 -> CoordConv -> DeformConv2D v1 (stride 2) -> SpatialTransformer."""

    def __init__(self):
        super().__init__()
        self.stem = paddle.nn.Conv2D(3, 6, 3, padding=1)
        self.dcn2 = DeformConv2D(6, 6, 3, padding=1, deformable_groups=2)
        self.coord = CoordConv(6, 4, 3, padding=1, with_r=True)
        self.dcn1 = DeformConv2D(4, 4, 3, stride=2, padding=1, modulated=False)
        self.stn = SpatialTransformer()
        for layer in (self.dcn2, self.dcn1):  # non-trivial offsets and masks
            layer.conv_offset.weight.set_value(paddle.randn(layer.conv_offset.weight.shape) * 0.1)
            layer.conv_offset.bias.set_value(paddle.randn(layer.conv_offset.bias.shape))
        self.stn.localization.head[-1].bias.set_value(paddle.to_tensor([0.9, 0.1, 0.05, -0.1, 1.1, 0.0]))

    def forward(self, x):
        return self.stn(self.dcn1(self.coord(self.dcn2(paddle.nn.functional.relu(self.stem(x))))))


SPEC = [InputSpec([None, 3, 12, 10], "float32", "image")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    paddle.seed(11)
    net = Net()
    net.eval()
    prefix = str(tmp_path_factory.mktemp("export") / "net")
    files = inference.export_model(net, prefix, SPEC)
    return net, prefix, files


@pytest.mark.parametrize("full_graph", [True, False])  # AST and SOT (to_static's default)
def test_to_static_matches_dygraph(full_graph):
    net = Net()
    x = paddle.randn([2, 3, 12, 10])
    expected = net(x).numpy()
    static = paddle.jit.to_static(net, input_spec=SPEC if full_graph else None, full_graph=full_graph)
    np.testing.assert_allclose(static(x).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_to_static_gradients_match_dygraph():
    paddle.seed(5)
    net = Net()
    x = paddle.randn([2, 3, 12, 10])
    net(x).sum().backward()
    grads = {n: p.grad.numpy().copy() for n, p in net.named_parameters() if p.grad is not None}
    net.clear_gradients()
    static = paddle.jit.to_static(net, input_spec=SPEC, full_graph=True)
    static(x).sum().backward()
    for name in ("dcn2.weight", "dcn2.conv_offset.weight", "dcn1.conv_offset.bias", "coord.conv.weight"):
        np.testing.assert_allclose(
            dict(net.named_parameters())[name].grad.numpy(), grads[name], rtol=1e-4, atol=1e-5
        )


def test_jit_save_writes_files_and_load_matches(exported):
    net, prefix, (model_file, params_file) = exported
    assert model_file.endswith((".json", ".pdmodel")) and params_file.endswith(".pdiparams")
    assert inference.uses_paddle_dcn_ops(model_file)
    loaded = paddle.jit.load(prefix)
    x = paddle.randn([3, 3, 12, 10])  # another batch size than any traced one
    np.testing.assert_allclose(loaded(x).numpy(), net(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ir_optim, onednn", [(True, None), (False, None), (True, False)])
def test_inference_predictor_round_trip(exported, ir_optim, onednn):
    net, prefix, (model_file, _) = exported
    assert inference.onednn_safe(model_file)  # the layers route activations through assign
    predictor = inference.create_predictor(prefix, ir_optim=ir_optim, cpu_threads=1, onednn=onednn)
    assert predictor.get_input_names() == ["image"]
    x = np.random.randn(3, 3, 12, 10).astype("float32")
    (out,) = inference.run_predictor(predictor, {"image": x})
    np.testing.assert_allclose(out, net(paddle.to_tensor(x)).numpy(), rtol=1e-5, atol=1e-5)


def test_predictor_input_errors(exported, tmp_path):
    _, prefix, _ = exported
    predictor = inference.create_predictor(prefix)
    with pytest.raises(ValueError, match="image"):
        inference.run_predictor(predictor, {"x": np.zeros([1, 3, 12, 10], "float32")})
    with pytest.raises(ValueError, match="1 arrays"):
        inference.run_predictor(predictor, [])
    with pytest.raises(FileNotFoundError, match="path_prefix"):
        inference.create_predictor(str(tmp_path / "missing"))


class ExplicitOffsets(paddle.nn.Layer):
    """A model without parameters of its own apart from the DeformConv2D (offsets are inputs)."""

    def __init__(self):
        super().__init__()
        self.dcn = DeformConv2D(3, 4, 3, padding=1, offset_branch=False)

    def forward(self, x, offset, mask):
        return self.dcn(x, offset, mask)


def test_explicit_offsets_model_round_trip(tmp_path):
    net = ExplicitOffsets()
    spec = [InputSpec([None, 3, 6, 6], "float32", "x"), InputSpec([None, 18, 6, 6], "float32", "offset"),
            InputSpec([None, 9, 6, 6], "float32", "mask")]
    prefix = str(tmp_path / "explicit")
    inference.export_model(net, prefix, spec)
    arrays = [np.random.randn(2, 3, 6, 6).astype("float32"), np.random.randn(2, 18, 6, 6).astype("float32"),
              np.random.rand(2, 9, 6, 6).astype("float32")]
    (out,) = inference.run_predictor(inference.create_predictor(prefix), arrays)
    expected = net(*[paddle.to_tensor(a) for a in arrays]).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_dynamic_spatial_size_round_trip(tmp_path):
    """Exported with unknown H and W; run at two sizes, one of them 1 pixel wide."""
    model = paddle.nn.Sequential(
        DeformConv2D(3, 4, 3, padding=1, modulated=False), CoordConv(4, 4, 3, padding=1, with_r=True),
        SpatialTransformer(),
    )
    model[0].conv_offset.bias.set_value(paddle.randn(model[0].conv_offset.bias.shape))
    prefix = str(tmp_path / "dynamic")
    inference.export_model(model, prefix, [InputSpec([None, 3, None, None], "float32", "x")])
    predictor = inference.create_predictor(prefix)
    for shape in ([2, 3, 9, 6], [1, 3, 5, 1]):
        x = np.random.randn(*shape).astype("float32")
        (out,) = inference.run_predictor(predictor, [x])
        np.testing.assert_allclose(out, model(paddle.to_tensor(x)).numpy(), rtol=1e-5, atol=1e-5)


class RawOps(paddle.nn.Layer):
    """Calls the op directly on a conv output (no assign in between: not oneDNN-safe)."""

    def __init__(self):
        super().__init__()
        self.features = paddle.nn.Conv2D(3, 4, 3, padding=1)
        self.offsets = paddle.nn.Conv2D(3, 18, 3, padding=1)
        self.weight = self.create_parameter([4, 4, 3, 3])

    def forward(self, x):
        return paddle_dcn.ops.deform_conv2d(self.features(x), self.offsets(x), self.weight, padding=1)


def test_models_calling_the_ops_directly_run_without_onednn(tmp_path):
    net = RawOps()
    prefix = str(tmp_path / "raw")
    model_file, _ = inference.export_model(net, prefix, [InputSpec([None, 3, 8, 8], "float32", "x")])
    assert inference.uses_paddle_dcn_ops(model_file) and not inference.onednn_safe(model_file)
    x = np.random.randn(2, 3, 8, 8).astype("float32")
    (out,) = inference.run_predictor(inference.create_predictor(prefix), [x])
    np.testing.assert_allclose(out, net(paddle.to_tensor(x)).numpy(), rtol=1e-5, atol=1e-5)
