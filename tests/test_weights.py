"""One path for weights (issue 16): the trainer's -w and -r, export/inference and a detector's
backbone_weights all load through paddle_dcn.weights.load_weights, which upgrades the entries
of older paddle_dcn layers (layers/_versioning.py) and refuses newer ones."""
import numpy as np
import paddle
import pytest

import paddle_dcn.models  # noqa: F401 - registration
from paddle_dcn.config import load_config
from paddle_dcn.engine import deploy
from paddle_dcn.engine.trainer import Trainer
from paddle_dcn.layers import DeformConv2D
from paddle_dcn.registry import MODELS, build
from paddle_dcn.weights import PARAMS_DIGEST_KEY, load_weights

from engine_helpers import tiny_config, write_config

BACKBONE = {"type": "ResNet", "depth": 18, "stem": "small", "base_channels": 4, "dcn_stages": [5],
            "out_stages": [2, 3, 4, 5]}


@pytest.fixture
def dcn_v2(monkeypatch):
    """DeformConv2D as a (pretend) version 2 whose ``weight`` was called ``weight_v1`` in
    version 1: a checkpoint written by version 1 must load through the upgrade."""
    calls = []

    def upgrade(cls, state, prefix, from_version):
        calls.append(prefix)
        if prefix + "weight_v1" in state:
            state[prefix + "weight"] = state.pop(prefix + "weight_v1")

    monkeypatch.setattr(DeformConv2D, "VERSION", 2)
    monkeypatch.setattr(DeformConv2D, "upgrade_state_dict", classmethod(upgrade))
    return calls


def _version1_checkpoint(model, path):
    """``model``'s weights (randomised) saved as version 1 would have: DeformConv2D weights
    under their old name, version entries 1. Returns the expected state."""
    for p in model.parameters():
        p.set_value(paddle.randn(p.shape).astype(p.dtype))
    expected = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    old = {}
    for name, layer in model.named_sublayers():
        if isinstance(layer, DeformConv2D):
            old[f"{name}.weight_v1"] = layer.weight.numpy()
            old[f"{name}.version"] = np.array([1], np.int64)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    for name in [k[: -len(".weight_v1")] for k in old if k.endswith(".weight_v1")]:
        del state[f"{name}.weight"]
    state.update(old)
    paddle.save(state, path)
    return expected


def _assert_params_equal(model, expected, prefix=""):
    for k, v in model.state_dict().items():
        if k.endswith("version"):
            continue
        np.testing.assert_array_equal(v.numpy(), expected[prefix + k], err_msg=k)


def _classifier_cfg(tmp_path):
    cfg = tiny_config(str(tmp_path / "cache"), BACKBONE, train_samples=32, eval_samples=16)
    cfg["output_dir"] = str(tmp_path / "out")
    return load_config(write_config(str(tmp_path), "tiny", cfg))


def test_trainer_weights_and_deploy_upgrade_old_layer_entries(tmp_path, dcn_v2):
    cfg = _classifier_cfg(tmp_path)
    path = str(tmp_path / "v1.pdparams")
    expected = _version1_checkpoint(build(MODELS, cfg["model"]), path)

    trainer = Trainer(cfg, mode="model")
    trainer.load_weights(path)
    _assert_params_equal(trainer.model, expected)
    assert dcn_v2, "the versioned layers' upgrade did not run"

    dcn_v2.clear()
    _assert_params_equal(deploy.build_model_with_weights(cfg, path), expected)
    assert dcn_v2


def test_resume_upgrades_old_layer_entries(tmp_path, dcn_v2):
    cfg = _classifier_cfg(tmp_path)
    cfg["epochs"] = 1
    trainer = Trainer(cfg)
    trainer.train()
    prefix = str(tmp_path / "out" / "latest")
    expected = _version1_checkpoint(trainer.unwrapped_model, prefix + ".pdparams")
    # a version-1 checkpoint's .pdstate holds no digest of its .pdparams
    state = paddle.load(prefix + ".pdstate")
    del state[PARAMS_DIGEST_KEY]
    paddle.save(state, prefix + ".pdstate")

    resumed = Trainer(cfg)
    resumed.resume(prefix)
    _assert_params_equal(resumed.unwrapped_model, expected)
    assert resumed.start_epoch == 1 and dcn_v2


def test_backbone_weights_upgrade_old_layer_entries(tmp_path, dcn_v2):
    classifier = build(MODELS, {"type": "Classifier", "num_classes": 5, "backbone": BACKBONE})
    path = str(tmp_path / "cls.pdparams")
    expected = _version1_checkpoint(classifier, path)
    det = build(MODELS, {"type": "FasterRCNN", "num_classes": 3, "backbone": BACKBONE, "neck": {"out_channels": 8},
                         "rpn": {"feat_channels": 8, "anchor_sizes": [[8], [16], [32], [64], [128]]}, "bbox_head": {"hidden": 16}, "backbone_weights": path})
    _assert_params_equal(det.backbone, expected, prefix="backbone.")
    assert dcn_v2


def test_a_newer_checkpoint_is_refused_everywhere(tmp_path):
    cfg = _classifier_cfg(tmp_path)
    state = build(MODELS, cfg["model"]).state_dict()
    key = next(k for k in state if k.endswith("version"))
    state[key] = paddle.to_tensor([99], dtype="int64")
    path = str(tmp_path / "future.pdparams")
    paddle.save(state, path)
    with pytest.raises(ValueError, match="version 99.*upgrade paddle_dcn"):
        Trainer(cfg, mode="model").load_weights(path)
    with pytest.raises(ValueError, match="version 99.*upgrade paddle_dcn"):
        deploy.build_model_with_weights(cfg, path)


def test_report_names_missing_unused_and_mismatched_entries():
    model = paddle.nn.Sequential(paddle.nn.Linear(2, 3), paddle.nn.Linear(3, 1))
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    state["0.weight"] = np.zeros((5, 5), np.float32)   # wrong shape: not loaded
    del state["1.bias"]                                 # missing: kept
    state["extra"] = np.zeros(1, np.float32)            # unused
    before = model.state_dict()["0.weight"].numpy().copy()
    report = load_weights(model, state)
    assert report.missing == ["1.bias"] and report.unused == ["extra"]
    assert report.mismatched == ["0.weight [5, 5] vs [2, 3]"] and report.loaded == 2
    np.testing.assert_array_equal(model.state_dict()["0.weight"].numpy(), before)
    with pytest.raises(ValueError, match="does not fit.*missing: \\['1.bias'\\].*0.weight \\[5, 5\\]"):
        load_weights(model, state, strict=True)


def test_eval_export_infer_and_resume_refuse_the_checkpoint_of_another_model(tmp_path):
    """A dcn_stages [5] checkpoint into the same ResNet without deformable stages: the conv
    weights fit by shape, only the offset branches are unused, so a lenient load would run the
    plain model on half-fitting weights without a word."""
    cfg = _classifier_cfg(tmp_path)
    cfg["epochs"] = 1
    Trainer(cfg).train()
    prefix = str(tmp_path / "out" / "latest")
    plain = dict(cfg, model=dict(cfg["model"], backbone=dict(BACKBONE, dcn_stages=[])))
    with pytest.raises(ValueError, match="does not fit this model.*unused: .*conv_offset"):
        deploy.build_model_with_weights(plain, prefix)           # export.py, infer.py -c/-w
    with pytest.raises(ValueError, match="does not fit this model.*unused: .*conv_offset"):
        Trainer(plain, mode="eval").load_weights(prefix)        # eval.py, train.py --eval-only
    with pytest.raises(ValueError, match="resume .*latest: the checkpoint does not fit.*unused: .*conv_offset"):
        Trainer(plain).resume(prefix)
    more = dict(cfg, model=dict(cfg["model"], backbone=dict(BACKBONE, dcn_stages=[4, 5])))
    with pytest.raises(ValueError, match="missing: .*conv_offset"):
        deploy.build_model_with_weights(more, prefix)
    # training from these weights (-w: fine-tuning) still loads what fits and reports the rest
    Trainer(plain, mode="train").load_weights(prefix)
    # and the model's own config loads them exactly
    model = deploy.build_model_with_weights(cfg, prefix)
    saved = paddle.load(prefix + ".pdparams")
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), saved[k].numpy(), err_msg=k)
