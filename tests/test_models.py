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
