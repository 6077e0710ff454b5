"""ResNet backbones: shapes, where the deformable convs go, DCN v1 with zero offsets == conv."""
import numpy as np
import paddle
import pytest

from paddle_dcn.layers import DeformConv2D
from paddle_dcn.models import ResNet
from paddle_dcn.registry import MODELS, build


@pytest.mark.parametrize("depth,channels", [(18, 64), (50, 256)])
def test_shapes_and_stage_outputs(depth, channels):
    net = ResNet(depth, stem="small", stem_stride=2, base_channels=8, out_stages=[2, 3, 4, 5])
    outs = net(paddle.randn([2, 3, 32, 32]))
    assert [list(o.shape) for o in outs] == [[2, channels // 8, 16, 16], [2, channels // 4, 8, 8],
                                             [2, channels // 2, 4, 4], [2, channels, 2, 2]]
    assert net.out_channels == [channels // 8, channels // 4, channels // 2, channels]
    imagenet = ResNet(depth, base_channels=8, coord_conv=True)
    assert list(imagenet(paddle.randn([1, 3, 64, 64]))[0].shape) == [1, channels, 2, 2]


def test_dcn_stages_replace_the_3x3_convs_of_those_stages():
    net = ResNet(50, dcn_stages=[3, 4, 5], stem="small", base_channels=8)
    names = [n for n, l in net.named_sublayers() if isinstance(l, DeformConv2D)]
    assert len(names) == 4 + 6 + 3  # one 3x3 per bottleneck in conv3_x..conv5_x
    assert all(n.startswith(("res3.", "res4.", "res5.")) and n.endswith("conv2") for n in names)
    assert all(l.modulated for l in net.sublayers() if isinstance(l, DeformConv2D))
    r18 = ResNet(18, dcn_stages=[5], dcn={"modulated": False}, base_channels=8)
    assert sum(isinstance(l, DeformConv2D) for l in r18.sublayers()) == 4


def test_dcn_v1_with_zero_offsets_equals_plain_resnet():
    paddle.seed(1)
    plain = ResNet(18, stem="small", base_channels=4)
    dcn = ResNet(18, stem="small", base_channels=4, dcn_stages=[3, 4], dcn={"modulated": False})
    dcn.set_state_dict(plain.state_dict())  # the offset branches keep their zero init
    plain.eval()
    dcn.eval()
    x = paddle.randn([2, 3, 16, 16])
    np.testing.assert_allclose(dcn(x)[0].numpy(), plain(x)[0].numpy(), rtol=1e-4, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        ResNet(42)
    with pytest.raises(ValueError, match="2..5"):
        ResNet(50, dcn_stages=[1])
    with pytest.raises(ValueError, match="stem"):
        ResNet(50, stem="tiny")
    with pytest.raises(ValueError, match="dcn"):
        ResNet(50, dcn={"modulate": True})


def test_classifier_contract():
    model = build(MODELS, {"type": "Classifier", "num_classes": 3,
                           "backbone": {"type": "ResNet", "depth": 18, "stem": "small", "base_channels": 4}})
    batch = {"image": paddle.randn([4, 3, 16, 16]), "label": paddle.to_tensor([0, 1, 2, 0])}
    model.train()
    loss = model(batch)["loss"]
    model.eval()
    logits = model(batch)["logits"]
    assert list(logits.shape) == [4, 3]
    probs = model.predict(batch["image"]).numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    # eval-mode cross entropy from the logits, computed independently
    ref = -np.log(np.exp(logits.numpy())[np.arange(4), [0, 1, 2, 0]] / np.exp(logits.numpy()).sum(1)).mean()
    model.train()
    assert loss.shape == [] and np.isfinite(float(loss)) and ref > 0


def test_the_dcn_dict_reaches_the_layer_whole(tmp_path):
    """Every DeformConv2D option but the geometry comes from the config's dcn dict (issue 16:
    mask_init and offset_bound could not be set from YAML)."""
    from paddle_dcn.config import load_config

    path = tmp_path / "m.yml"
    path.write_text("model:\n  type: Classifier\n  num_classes: 3\n  backbone:\n    type: ResNet\n    depth: 18\n"
                    "    stem: small\n    base_channels: 4\n    dcn_stages: [4]\n"
                    "    dcn: {type: DeformConv2D, mask_init: 1.0, offset_bound: 2.5, offset_bound_fn: sigmoid,"
                    " offset_lr_mult: 0.1, deformable_groups: 2}\n")
    cfg = load_config(str(path), ["model.backbone.dcn.deformable_groups_over=output"])
    layers = [l for l in build(MODELS, cfg["model"]).sublayers() if isinstance(l, DeformConv2D)]
    assert len(layers) == 4
    for layer in layers:
        assert (layer.mask_init, layer.offset_bound, layer.offset_bound_fn) == (1.0, 2.5, "sigmoid")
        assert (layer.offset_lr_mult, layer.deformable_groups, layer.deformable_groups_over) == (0.1, 2, "output")
    with pytest.raises(KeyError, match=r"dcn \(DeformConv2D\): unknown key\(s\) 'mask_int'; valid keys: .*mask_init"):
        ResNet(18, dcn_stages=[4], dcn={"mask_int": 1.0})
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'stride'.*"):  # the ResNet sets the geometry
        ResNet(18, dcn_stages=[4], dcn={"stride": 2})


def test_backbone_reports_its_output_strides_and_the_detector_uses_them():
    assert ResNet(18, out_stages=[2, 3, 4, 5]).out_strides == [4, 8, 16, 32]
    assert ResNet(18, stem="small", stem_stride=2, out_stages=[3, 5]).out_strides == [4, 16]
    small = ResNet(18, stem="small", stem_stride=1, base_channels=4, out_stages=[2, 3, 4, 5])
    assert small.out_strides == [1, 2, 4, 8]
    x = paddle.randn([1, 3, 32, 32])
    assert [32 // o.shape[2] for o in small(x)] == small.out_strides  # what the maps really are
    det = build(MODELS, {"type": "FasterRCNN", "num_classes": 2,
                         "backbone": {"type": "ResNet", "depth": 18, "stem": "small", "stem_stride": 2,
                                      "base_channels": 4, "out_stages": [2, 3, 4, 5]},
                         "neck": {"out_channels": 8}, "bbox_head": {"hidden": 8},
                         "rpn": {"anchor_sizes": [[4], [8], [16], [32], [64]], "feat_channels": 8}})
    assert det.neck.out_strides == [2, 4, 8, 16, 32]
    assert det.roi_extractor.strides == [2, 4, 8, 16]  # the backbone's levels, not the extra one


def test_one_unknown_key_check_for_every_config_section():
    from paddle_dcn.registry import UnknownKeyError

    cases = [lambda: build(MODELS, {"type": "Classifier", "num_classes": 2, "backbone": {"type": "ResNet"},
                                    "num_clases": 3}),
             lambda: ResNet(18, dcn={"modulate": True}),
             lambda: build(MODELS, {"type": "FasterRCNN", "num_classes": 2,
                                    "backbone": {"type": "ResNet", "depth": 18, "base_channels": 4,
                                                 "out_stages": [2, 3, 4, 5]},
                                    "rpn": {"anchor_sizes": [[8]] * 5}, "test": {"max_dets": 3}})]
    messages = []
    for case in cases:
        with pytest.raises(UnknownKeyError) as err:
            case()
        assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
        messages.append(str(err.value))
    assert messages[0].startswith("model 'Classifier': unknown key(s) 'num_clases'; valid keys: ")
    assert messages[1].startswith("dcn (DeformConv2D): unknown key(s) 'modulate'; valid keys: ")
    assert messages[2] == "model.test: unknown key(s) 'max_dets'; valid keys: score_thresh, nms_thresh, max_det"
