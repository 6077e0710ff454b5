"""Config files: _base_ inheritance, -o overrides (typed, repeated), errors that list valid keys."""
import os

import pytest
import yaml

from paddle_dcn.config import DEFAULTS, ConfigError, load_config, merge, parse_overrides

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def _write(path, data):
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return str(path)


@pytest.fixture
def cfg_files(tmp_path):
    os.makedirs(tmp_path / "_base_")
    _write(tmp_path / "_base_" / "a.yml", {
        "epochs": 5, "model": {"type": "Classifier", "num_classes": 3,
                               "backbone": {"type": "ResNet", "depth": 50, "dcn_stages": []}},
        "optimizer": {"type": "Momentum", "momentum": 0.9, "weight_decay": 1e-4}})
    _write(tmp_path / "_base_" / "b.yml", {"epochs": 7, "loader": {"batch_size": 8}})
    child = _write(tmp_path / "child.yml", {
        "_base_": ["_base_/a.yml", "_base_/b.yml"],
        "model": {"backbone": {"dcn_stages": [3, 4, 5]}},
        "optimizer": {"type": "AdamW", "weight_decay": 0.05}})
    return child


def test_inheritance_order_and_deep_merge(cfg_files):
    cfg = load_config(cfg_files)
    assert cfg["epochs"] == 7  # later base wins over earlier
    assert cfg["model"]["backbone"] == {"type": "ResNet", "depth": 50, "dcn_stages": [3, 4, 5]}
    assert cfg["model"]["num_classes"] == 3
    # a mapping with a different type replaces the base (no stale 'momentum')
    assert cfg["optimizer"] == {"type": "AdamW", "weight_decay": 0.05}
    # defaults fill what no file sets, partial mappings merge into them
    assert cfg["loader"]["batch_size"] == 8
    assert cfg["loader"]["eval_batch_size"] == DEFAULTS["loader"]["eval_batch_size"]
    assert cfg["_name_"] == "child"
    assert cfg["output_dir"] == os.path.join("output", "child")


def test_overrides_are_typed_yaml_and_repeatable(cfg_files):
    cfg = load_config(cfg_files, [["epochs=2", "model.backbone.depth=18"],
                                  ["model.backbone.dcn_stages=[4, 5]", "grad_clip=1.5e0"],
                                  ["amp.enabled=true", "output_dir=null", "optimizer.weight_decay=5e-4"]])
    assert cfg["epochs"] == 2 and isinstance(cfg["epochs"], int)
    assert cfg["model"]["backbone"]["depth"] == 18
    assert cfg["model"]["backbone"]["dcn_stages"] == [4, 5]
    assert cfg["grad_clip"] == 1.5
    assert cfg["amp"]["enabled"] is True
    assert cfg["optimizer"]["weight_decay"] == 5e-4  # YAML 1.2 float, not the string "5e-4"
    assert cfg["output_dir"] == os.path.join("output", "child")  # null -> default


def test_override_may_add_constructor_args_to_typed_sections(cfg_files):
    cfg = load_config(cfg_files, ["model.backbone.stem=small"])
    assert cfg["model"]["backbone"]["stem"] == "small"


def test_a_type_override_replaces_the_mapping_in_any_order():
    """-o ...type=<another class> drops the old class's arguments, as a _base_ file's new type
    does (they were kept: switching dcn_r50's DeformConv2D to DCNv3 failed on 'modulated');
    the keys the command line gives inside it survive whatever their order; the same type
    keeps them."""
    from paddle_dcn.models.resnet import ResNet

    for overrides in (["model.backbone.dcn.type=DCNv3", "model.backbone.dcn.groups=4"],
                      ["model.backbone.dcn.groups=4", "model.backbone.dcn.type=DCNv3"]):
        cfg = load_config("configs/dcn_r50.yml", overrides)
        assert cfg["model"]["backbone"]["dcn"] == {"type": "DCNv3", "groups": 4}
    backbone = {k: v for k, v in cfg["model"]["backbone"].items() if k != "type"}
    assert ResNet(**backbone)  # builds
    same = load_config("configs/dcn_r50.yml", ["model.backbone.dcn.type=DeformConv2D"])
    assert same["model"]["backbone"]["dcn"]["offset_lr_mult"] == 0.1
    assert load_config("configs/dcn_r50.yml", ["optimizer.type=Momentum"])["optimizer"] == {"type": "Momentum"}
    # still left to right otherwise: the last override of the mapping wins
    last = load_config("configs/dcn_r50.yml", ["model.backbone.dcn={type: DCNv3, groups: 4}",
                                               "model.backbone.dcn.type=DeformConv2D"])
    assert last["model"]["backbone"]["dcn"] == {"type": "DeformConv2D"}
    # nested types in either order; a mapping an override creates takes any key
    for overrides in (["model.backbone.dcn.type=DCNv3", "model.backbone.type=Other"],
                      ["model.backbone.type=Other", "model.backbone.dcn.type=DCNv3"]):
        backbone = load_config("configs/dcn_r50.yml", overrides)["model"]["backbone"]
        assert backbone == {"type": "Other", "dcn": {"type": "DCNv3"}}


def test_unknown_override_key_lists_valid_keys(cfg_files):
    with pytest.raises(ConfigError) as err:
        load_config(cfg_files, ["loader.batchsize=4"])
    assert "batchsize" in str(err.value) and "batch_size" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(cfg_files, ["epoch=4"])
    assert "'epoch'" in str(err.value) and "epochs" in str(err.value)


def test_unknown_top_level_key_in_file(tmp_path):
    path = _write(tmp_path / "bad.yml", {"epochs": 1, "optimiser": {"type": "AdamW"}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "optimiser" in str(err.value) and "optimizer" in str(err.value)


@pytest.mark.parametrize("section, key", [("loader", "batch_sise"), ("amp", "enabeld"), ("checkpoint", "keep_lst"),
                                          ("visualdl", "num_image"), ("export", "input_shape")])
def test_unknown_key_in_a_settings_section_of_a_file(tmp_path, section, key):
    # in a _base_ file too: the merged file is checked
    _write(tmp_path / "base.yml", {section: {key: 1}})
    path = _write(tmp_path / "bad.yml", {"_base_": "base.yml", "epochs": 1})
    with pytest.raises(ConfigError, match=f"bad.yml: {section}: unknown key\\(s\\) '{key}'; valid keys: .*") as err:
        load_config(path)
    assert all(valid in str(err.value) for valid in DEFAULTS[section])
    good = _write(tmp_path / "good.yml", {section: {k: v for k, v in DEFAULTS[section].items()}})
    assert load_config(good)[section] == DEFAULTS[section]


def test_a_settings_section_that_is_not_a_mapping(tmp_path):
    path = _write(tmp_path / "bad.yml", {"loader": 32})
    with pytest.raises(ConfigError, match="loader must be a mapping of batch_size, .*got int 32"):
        load_config(path)


def test_bad_override_syntax_and_base_cycle(tmp_path):
    with pytest.raises(ValueError, match="key.sub=value"):
        parse_overrides(["epochs"])
    a = tmp_path / "a.yml"
    b = tmp_path / "b.yml"
    _write(a, {"_base_": "b.yml"})
    _write(b, {"_base_": "a.yml"})
    with pytest.raises(ValueError, match="cycle"):
        load_config(str(a))
    with pytest.raises(FileNotFoundError):
        load_config(str(tmp_path / "missing.yml"))


def test_merge_does_not_modify_inputs():
    base = {"a": {"b": 1, "c": [1, 2]}}
    child = {"a": {"c": [3]}}
    out = merge(base, child)
    assert out == {"a": {"b": 1, "c": [3]}}
    assert base == {"a": {"b": 1, "c": [1, 2]}} and child == {"a": {"c": [3]}}


def test_shipped_dcn_config_differs_from_baseline_only_in_dcn_stages():
    base = load_config(os.path.join(REPO, "configs", "r50.yml"))
    dcn = load_config(os.path.join(REPO, "configs", "dcn_r50.yml"))
    assert base["model"]["backbone"]["dcn_stages"] == []
    assert dcn["model"]["backbone"]["dcn_stages"] == [2, 3]
    for cfg in (base, dcn):
        del cfg["model"]["backbone"]["dcn_stages"], cfg["_name_"], cfg["output_dir"]
    assert base == dcn
    with open(os.path.join(REPO, "configs", "r50.yml")) as f1, open(os.path.join(REPO, "configs", "dcn_r50.yml")) as f2:
        diff = [(a, b) for a, b in zip(f1, f2) if a != b]
    assert len(diff) == 1 and "dcn_stages" in diff[0][1]
