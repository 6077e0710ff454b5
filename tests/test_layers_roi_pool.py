"""Deformable RoI pooling layers: against roi_align and a numpy reference, training, export."""
import numpy as np
import paddle
import pytest
from paddle.static import InputSpec

import paddle_dcn
from paddle_dcn import (
    DeformPSRoIPool,
    DeformRoIPool,
    DeformRoIPoolPack,
    ModulatedDeformRoIPoolPack,
    inference,
)


def _inputs(channels=4, boxes_per_image=(3, 0, 2), size=(20, 24), scale=0.5, seed=0):
    rng = np.random.RandomState(seed)
    n = len(boxes_per_image)
    x = paddle.to_tensor(rng.randn(n, channels, *size).astype("float32"))
    k = sum(boxes_per_image)
    x1 = rng.uniform(0, size[1] / scale * 0.6, k)
    y1 = rng.uniform(0, size[0] / scale * 0.6, k)
    w = rng.uniform(4, size[1] / scale * 0.4, k)
    h = rng.uniform(4, size[0] / scale * 0.4, k)
    boxes = paddle.to_tensor(np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype("float32"))
    boxes_num = paddle.to_tensor(np.array(boxes_per_image, dtype="int32"))
    return x, boxes, boxes_num


def _roi_align(x, boxes, boxes_num, layer):
    return paddle.vision.ops.roi_align(
        x, boxes, boxes_num, layer.output_size, spatial_scale=layer.spatial_scale,
        sampling_ratio=layer.sampling_ratio, aligned=layer.aligned,
    ).numpy()


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_plain_without_offset_equals_roi_align(aligned, sampling_ratio):
    x, boxes, boxes_num = _inputs()
    layer = DeformRoIPool((3, 2), spatial_scale=0.5, sampling_ratio=sampling_ratio, aligned=aligned)
    np.testing.assert_allclose(
        layer(x, boxes, boxes_num).numpy(), _roi_align(x, boxes, boxes_num, layer), rtol=1e-5, atol=1e-5
    )


def test_plain_with_offset_is_the_op():
    x, boxes, boxes_num = _inputs()
    offset = paddle.randn([5, 2, 3, 3])
    layer = DeformRoIPool(3, spatial_scale=0.5, sampling_ratio=2, gamma=0.2, aligned=False)
    expected = paddle_dcn.ops.deform_roi_pool(
        x, boxes, boxes_num, [3, 3], offset=offset, spatial_scale=0.5, sampling_ratio=2,
        gamma=0.2, aligned=False,
    )
    np.testing.assert_allclose(layer(x, boxes, boxes_num, offset).numpy(), expected.numpy(), rtol=1e-6)
    assert not np.allclose(expected.numpy(), _roi_align(x, boxes, boxes_num, layer), atol=1e-3)


def test_pack_at_init_equals_roi_align_and_trains_its_offsets():
    x, boxes, boxes_num = _inputs()
    layer = DeformRoIPoolPack(4, (3, 3), spatial_scale=0.5, fc_channels=16)
    out = layer(x, boxes, boxes_num)
    np.testing.assert_allclose(out.numpy(), _roi_align(x, boxes, boxes_num, layer), rtol=1e-5, atol=1e-5)
    optimizer = paddle.optimizer.SGD(learning_rate=0.1, parameters=layer.parameters())
    last = layer.offset_fc[-1]
    before = last.weight.numpy().copy()
    (out * paddle.randn(out.shape)).sum().backward()
    optimizer.step()
    assert np.abs(last.weight.numpy() - before).max() > 0
    assert not np.allclose(layer(x, boxes, boxes_num).numpy(), out.numpy(), atol=1e-6)


@pytest.mark.parametrize("mask_init", [0.5, 1.0])
def test_modulated_pack_at_init_is_mask_init_times_roi_align(mask_init):
    x, boxes, boxes_num = _inputs()
    layer = ModulatedDeformRoIPoolPack(4, 2, spatial_scale=0.5, fc_channels=8, mask_init=mask_init)
    out = layer(x, boxes, boxes_num)
    np.testing.assert_allclose(
        out.numpy(), mask_init * _roi_align(x, boxes, boxes_num, layer), rtol=1e-5, atol=1e-5
    )
    optimizer = paddle.optimizer.SGD(learning_rate=0.1, parameters=layer.parameters())
    before = [layer.offset_fc[-1].bias.numpy().copy(), layer.mask_fc[-1].bias.numpy().copy()]
    (out * paddle.randn(out.shape)).sum().backward()
    optimizer.step()
    assert np.abs(layer.offset_fc[-1].bias.numpy() - before[0]).max() > 0
    assert np.abs(layer.mask_fc[-1].bias.numpy() - before[1]).max() > 0


def test_parameter_counts():
    c, p, fc = 4, 3 * 3, 16
    pack = c * p * fc + fc + fc * fc + fc + fc * 2 * p + 2 * p
    count = lambda layer: sum(int(np.prod(q.shape)) for q in layer.parameters())  # noqa: E731
    assert count(DeformRoIPool(3)) == 0
    assert count(DeformRoIPoolPack(c, 3, fc_channels=fc)) == pack
    assert count(ModulatedDeformRoIPoolPack(c, 3, fc_channels=fc)) == pack + c * p * fc + fc + fc * p + p


def test_offset_lr_mult_reaches_the_fc_parameters():
    layer = ModulatedDeformRoIPoolPack(4, 3, offset_lr_mult=0.1, fc_channels=8)
    rates = {q.optimize_attr["learning_rate"] for q in layer.parameters()}
    assert rates == {0.1}


def test_no_boxes_gives_an_empty_result():
    x, _, _ = _inputs(boxes_per_image=(0, 0, 0))
    layer = ModulatedDeformRoIPoolPack(4, 3, spatial_scale=0.5, fc_channels=8)
    out = layer(x, paddle.zeros([0, 4]), paddle.to_tensor(np.zeros(3, "int32")))
    assert out.shape == [0, 4, 3, 3]


@pytest.mark.parametrize(
    "factory, argument",
    [
        (lambda: DeformRoIPool(0), "output_size"),
        (lambda: DeformRoIPool(3, spatial_scale=0), "spatial_scale"),
        (lambda: DeformRoIPool(3, sampling_ratio=0), "sampling_ratio"),
        (lambda: DeformRoIPool(3, aligned=1), "aligned"),
        (lambda: DeformRoIPool(3, gamma="0.1"), "gamma"),
        (lambda: DeformRoIPoolPack(0, 3), "in_channels"),
        (lambda: DeformRoIPoolPack(4, 3, fc_channels=0), "fc_channels"),
        (lambda: DeformRoIPoolPack(4, 3, offset_lr_mult=-1.0), "offset_lr_mult"),
        (lambda: ModulatedDeformRoIPoolPack(4, 3, mask_init=0.3), "mask_init"),
        (lambda: DeformPSRoIPool(0, 3), "output_channels"),
        (lambda: DeformPSRoIPool(2, 3, part_size=(3, 0)), "part_size"),
        (lambda: DeformPSRoIPool(2, 3, sample_per_part=0), "sample_per_part"),
        (lambda: DeformPSRoIPool(2, 3, trans_std=None), "trans_std"),
    ],
)
def test_bad_constructor_arguments(factory, argument):
    with pytest.raises(ValueError, match=argument):
        factory()


def test_extra_repr():
    text = repr(ModulatedDeformRoIPoolPack(4, (2, 3), spatial_scale=0.25, gamma=0.2, mask_init=1.0))
    for piece in ("in_channels=4", "output_size=[2, 3]", "spatial_scale=0.25", "gamma=0.2", "mask_init=1.0"):
        assert piece in text


def psroi_reference(x, boxes, boxes_num, out_c, out_size, scale, part, spp, trans_std, offset=None):
    """numpy deformable PS RoI pooling, written from the formulas in DESIGN.md."""
    x = x.astype(np.float64)
    _, _, height, width = x.shape
    ph, pw = out_size
    batch = np.repeat(np.arange(len(boxes_num)), boxes_num)
    out = np.zeros((len(boxes), out_c, ph, pw))
    n_cls = 1 if offset is None else offset.shape[1] // 2
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        start_w, start_h = np.round(x1) * scale - 0.5, np.round(y1) * scale - 0.5
        end_w, end_h = (np.round(x2) + 1) * scale - 0.5, (np.round(y2) + 1) * scale - 0.5
        roi_w, roi_h = max(end_w - start_w, 0.1), max(end_h - start_h, 0.1)
        bin_w, bin_h = roi_w / pw, roi_h / ph
        for c in range(out_c):
            cls = c // (out_c // n_cls)
            for i in range(ph):
                for j in range(pw):
                    tx = ty = 0.0
                    if offset is not None:
                        pi, pj = int(np.floor(i / ph * part[0])), int(np.floor(j / pw * part[1]))
                        tx = offset[k, 2 * cls, pi, pj] * trans_std
                        ty = offset[k, 2 * cls + 1, pi, pj] * trans_std
                    ws = j * bin_w + start_w + tx * roi_w
                    hs = i * bin_h + start_h + ty * roi_h
                    feat = x[batch[k], (c * ph + i) * pw + j]
                    total, count = 0.0, 0
                    for a in range(spp):
                        for b in range(spp):
                            yy, xx = hs + a * bin_h / spp, ws + b * bin_w / spp
                            if xx < -0.5 or xx > width - 0.5 or yy < -0.5 or yy > height - 0.5:
                                continue
                            yy, xx = min(max(yy, 0.0), height - 1.0), min(max(xx, 0.0), width - 1.0)
                            y0, x0 = int(np.floor(yy)), int(np.floor(xx))
                            y1_, x1_ = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
                            ly, lx = yy - y0, xx - x0
                            total += ((1 - ly) * (1 - lx) * feat[y0, x0] + (1 - ly) * lx * feat[y0, x1_]
                                      + ly * (1 - lx) * feat[y1_, x0] + ly * lx * feat[y1_, x1_])
                            count += 1
                    out[k, c, i, j] = total / count if count else 0.0
    return out


@pytest.mark.parametrize("with_offset", [False, True])
def test_position_sensitive_against_numpy(with_offset):
    out_c, size = 2, (3, 3)
    x, boxes, boxes_num = _inputs(channels=out_c * 9, seed=1)
    offset = paddle.randn([5, 2 * 2, 2, 2]) if with_offset else None  # per class, part 2x2
    layer = DeformPSRoIPool(out_c, size, spatial_scale=0.5, part_size=(2, 2), sample_per_part=2,
                            trans_std=0.1)
    out = layer(x, boxes, boxes_num, offset).numpy()
    expected = psroi_reference(
        x.numpy(), boxes.numpy(), boxes_num.numpy(), out_c, size, 0.5, (2, 2), 2, 0.1,
        None if offset is None else offset.numpy(),
    )
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


class RoIHead(paddle.nn.Layer):
    """Modulated pack over x plus position-sensitive pooling over a 1x1 conv's score map."""

    def __init__(self):
        super().__init__()
        self.pool = ModulatedDeformRoIPoolPack(4, 3, spatial_scale=0.5, fc_channels=8)
        for fc in (self.pool.offset_fc[-1], self.pool.mask_fc[-1]):
            fc.weight.set_value(paddle.randn(fc.weight.shape) * 0.05)
        self.ps = DeformPSRoIPool(4, 3, spatial_scale=0.5)
        self.score = paddle.nn.Conv2D(4, 4 * 9, 1)

    def forward(self, x, boxes, boxes_num):
        return self.pool(x, boxes, boxes_num) + self.ps(self.score(x), boxes, boxes_num)


def test_roi_layers_to_static_save_load_and_predictor(tmp_path):
    head = RoIHead()
    head.eval()
    x, boxes, boxes_num = _inputs()
    expected = head(x, boxes, boxes_num).numpy()
    spec = [InputSpec([None, 4, 20, 24], "float32", "x"), InputSpec([None, 4], "float32", "boxes"),
            InputSpec([None], "int32", "boxes_num")]
    static = paddle.jit.to_static(head, input_spec=spec, full_graph=True)
    np.testing.assert_allclose(static(x, boxes, boxes_num).numpy(), expected, rtol=1e-5, atol=1e-5)
    sot = paddle.jit.to_static(RoIHead(), full_graph=False)  # to_static's default mode
    sot.set_state_dict(head.state_dict())
    np.testing.assert_allclose(sot(x, boxes, boxes_num).numpy(), expected, rtol=1e-5, atol=1e-5)
    prefix = str(tmp_path / "roi_head")
    inference.export_model(head, prefix, spec)
    loaded = paddle.jit.load(prefix)
    np.testing.assert_allclose(loaded(x, boxes, boxes_num).numpy(), expected, rtol=1e-5, atol=1e-5)
    predictor = inference.create_predictor(prefix, onednn=True)
    (out,) = inference.run_predictor(predictor, [x.numpy(), boxes.numpy(), boxes_num.numpy()])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    x2, boxes2, boxes_num2 = _inputs(boxes_per_image=(1, 4), seed=3)  # other N and K
    (out2,) = inference.run_predictor(predictor, [x2.numpy(), boxes2.numpy(), boxes_num2.numpy()])
    np.testing.assert_allclose(out2, head(x2, boxes2, boxes_num2).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("x_needs_grad", [True, False])
@pytest.mark.parametrize("cls", [DeformRoIPoolPack, ModulatedDeformRoIPoolPack])
def test_pack_layers_with_no_boxes(cls, x_needs_grad):
    """K = 0 gives an empty output and a backward pass that runs (zero gradient for x)."""
    x = paddle.randn([2, 4, 16, 16])
    x.stop_gradient = not x_needs_grad
    layer = cls(4, 3, fc_channels=8)
    out = layer(x, paddle.zeros([0, 4]), paddle.to_tensor([0, 0], dtype="int32"))
    assert out.shape == [0, 4, 3, 3]
    out.sum().backward()
    if x_needs_grad:
        np.testing.assert_array_equal(x.grad.numpy(), 0)
