"""Your own data: the traps of issue 18, one test each, on tiny generated folders, list files and
COCO json. Each asserts the error (or warning) and its text, and that the corrected config trains.
"""
import json
import os
import re
import subprocess

import numpy as np
import pytest
import yaml
from PIL import Image

from engine_helpers import NORMALIZE, PYTHON, REPO, TOOLS, tool_env, tool_main as _tool
from paddle_dcn.config import load_config
from paddle_dcn.data import ImageFolder, ImageList
from paddle_dcn.engine import Trainer
from paddle_dcn.engine.det_deploy import detection_summary, run_infer


def _image(path, h, w, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _folders(root, classes, per_class=2, size=(12, 12), sizes=None):
    """``root/<class>/<i>.png``; ``sizes``: ``{class: (h, w)}`` overrides ``size``."""
    for k, name in enumerate(classes):
        h, w = (sizes or {}).get(name, size)
        for i in range(per_class):
            _image(os.path.join(root, name, f"{i}.png"), h, w, seed=10 * k + i)
    return str(root)


def _cls_config(tmp_path, train, evaluate, num_classes, size=12, **top):
    """A config file training a 4-channel conv net for one epoch on the given dataset configs."""
    cfg = {"epochs": 1, "seed": 0, "log_interval": 1, "output_dir": str(tmp_path / "out"),
           "train_dataset": train, "eval_dataset": evaluate,
           "loader": {"batch_size": 2, "eval_batch_size": 2, "num_workers": 0},
           "model": {"type": "Classifier", "num_classes": num_classes,
                     "backbone": {"type": "SimpleConvNet", "channels": 4}},
           "optimizer": {"type": "Momentum", "momentum": 0.9},
           "lr_scheduler": {"type": "WarmupCosine", "base_lr": 0.01, "warmup_epochs": 0},
           "checkpoint": {"interval": 1, "keep_last": 1}, "visualdl": {"enabled": False},
           "metric": {"type": "TopKAccuracy", "topk": [1]}, "export": {"image_shape": [3, size, size]}, **top}
    path = tmp_path / "own.yml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _folder_ds(root, **kw):
    return {"type": "ImageFolder", "root": root, "transforms": NORMALIZE, **kw}


def _trains(cfg_path, overrides=()):
    trainer = Trainer(load_config(cfg_path, list(overrides)))
    metrics = trainer.train()
    assert trainer.global_step == trainer.iters_per_epoch >= 1
    assert 0 <= metrics["top1"] <= 100
    return trainer


# ----------------------------------------------------------------------------- class counts
def test_classification_class_count_mismatch_names_both_numbers_key_and_folder(tmp_path):
    root = _folders(tmp_path / "train", ["a", "b", "c"])
    cfg = _cls_config(tmp_path, _folder_ds(root), _folder_ds(root), num_classes=2)
    with pytest.raises(ValueError) as info:
        Trainer(load_config(cfg))
    assert str(info.value) == (
        f"model.num_classes is 2 but train_dataset has 3 classes (ImageFolder root={root}: 3 class folders): "
        f"labels 2..2 are beyond the model's outputs. Set model.num_classes: 3 (-o model.num_classes=3)")
    with pytest.raises(ValueError, match=r"model.num_classes is 5 but train_dataset has 3 classes .*outputs 3..4 "
                                         r"would never see a sample.*allow_class_subset: true"):
        Trainer(load_config(cfg, ["model.num_classes=5"]))
    _trains(cfg, ["model.num_classes=3"])


def _log(capsys):
    """What the run logged (the trainer's logger writes to stdout; without it, stderr)."""
    out = capsys.readouterr()
    return out.out + out.err


def test_deliberate_subset_is_a_warning_only_with_the_switch(tmp_path, capsys):
    root = _folders(tmp_path / "train", ["a", "b", "c"])
    cfg = _cls_config(tmp_path, _folder_ds(root), _folder_ds(root), num_classes=5, allow_class_subset=True)
    trainer = _trains(cfg)
    assert trainer.unwrapped_model.num_classes == 5
    log = _log(capsys)
    assert (f"model.num_classes is 5 but train_dataset has 3 classes (ImageFolder root={root}: 3 class folders); "
            f"allow_class_subset is true: the model's classes 3..4 have no data") in log
    with pytest.raises(ValueError, match="model.num_classes is 2 but train_dataset has 3"):  # never fewer
        Trainer(load_config(cfg, ["model.num_classes=2"]))


def test_list_file_labels_beyond_the_model(tmp_path):
    _folders(tmp_path / "img", ["a", "b"], per_class=3)
    lst = tmp_path / "train.txt"
    lst.write_text("a/0.png 0\na/1.png 4\nb/0.png 1\nb/1.png 2\n")
    ds = {"type": "ImageList", "list_file": str(lst), "root": str(tmp_path / "img"), "transforms": NORMALIZE}
    cfg = _cls_config(tmp_path, ds, ds, num_classes=3)
    with pytest.raises(ValueError) as info:
        Trainer(load_config(cfg))
    assert str(info.value) == (
        f"model.num_classes is 3 but train_dataset has 5 classes (ImageList {lst}: labels up to 4, 5 classes): "
        f"labels 3..4 are beyond the model's outputs. Set model.num_classes: 5 (-o model.num_classes=5)")
    # with class names the count is theirs, and a label beyond them names its line
    names = tmp_path / "names.txt"
    names.write_text("zero\none\ntwo\n")
    with pytest.raises(ValueError, match=re.escape(f"{lst}:2: label 4, but class_names has 3 names (labels 0..2;")):
        ImageList(str(lst), str(tmp_path / "img"), class_names=str(names))
    lst.write_text("a/0.png 0\na/1.png 1\nb/0.png 2\nb/1.png 2\n")
    _trains(cfg, [f"train_dataset.class_names={names}"])


def test_image_list_class_names_list_or_file(tmp_path):
    _folders(tmp_path / "img", ["a"], per_class=2)
    lst = tmp_path / "l.txt"
    lst.write_text("a/0.png 1\na/1.png 0\n")
    listed = ImageList(str(lst), str(tmp_path / "img"), class_names=["cat", "dog", "fox"])
    assert listed.class_names == ["cat", "dog", "fox"] and [s[1] for s in listed.samples] == [1, 0]
    with pytest.raises(ValueError, match="give class_names or class_names_file, not both"):
        ImageList(str(lst), class_names=["x", "y"], class_names_file=str(lst))
    with pytest.raises(ValueError, match=r"duplicate class name\(s\) \['cat'\]"):
        ImageList(str(lst), class_names=["cat", "cat"])
    lst.write_text("a/0.png -1\n")
    with pytest.raises(ValueError, match=":1: label -1 is negative"):
        ImageList(str(lst))


COCO_CATS = [{"id": i + 1, "name": f"thing{i}"} for i in range(10)]


def _coco(tmp_path, n_images=4, size=64):
    images, anns = [], []
    for i in range(n_images):
        _image(str(tmp_path / "coco" / f"{i}.png"), size, size, seed=i)
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": size, "width": size})
        for k in range(2):
            cat = (2 * i + k) % 10 + 1
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat,
                         "bbox": [4 + 20 * k, 6 + 10 * k, 24, 20], "area": 480, "iscrowd": 0})
    path = tmp_path / "coco" / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": COCO_CATS}))
    return str(path), str(tmp_path / "coco")


def _det_config(tmp_path, ann_file, image_dir):
    ds = {"type": "COCODetection", "ann_file": ann_file, "image_dir": image_dir,
          "transforms": [{"type": "ResizeKeepRatio", "target_size": 64, "max_size": 64}, *NORMALIZE]}
    cfg = {"_base_": os.path.join(REPO, "configs", "faster_rcnn_r50_fpn.yml"), "epochs": 1, "log_interval": 1,
           "output_dir": str(tmp_path / "det_out"), "train_dataset": {**ds, "skip_empty": True}, "eval_dataset": ds,
           "loader": {"batch_size": 2, "eval_batch_size": 2}, "visualdl": {"enabled": False},
           "model": {"backbone": {"depth": 18, "base_channels": 8}, "neck": {"out_channels": 16},
                     "rpn": {"feat_channels": 16}, "bbox_head": {"hidden": 32}}}
    path = tmp_path / "det.yml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_detection_class_count_mismatch_names_categories_and_background(tmp_path):
    ann_file, image_dir = _coco(tmp_path)
    cfg = _det_config(tmp_path, ann_file, image_dir)
    with pytest.raises(ValueError) as info:  # the shipped num_classes: 6
        Trainer(load_config(cfg))
    assert str(info.value) == (
        f"model.num_classes is 6 but train_dataset has 10 classes ({ann_file}: 10 categories): classes 6..9 "
        f"would be trained as background. Set model.num_classes: 10 (object classes: the detector adds "
        f"background itself, do not count it) (-o model.num_classes=10)")
    with pytest.raises(ValueError, match=r"model.num_classes is 9 but train_dataset has 10 classes .*classes 9..9 "
                                         r"would be trained as background"):
        Trainer(load_config(cfg, ["model.num_classes=9"]))
    with pytest.raises(ValueError, match=r"model.num_classes is 11 .* outputs 10..10 would never see a sample.*"
                                         r"the detector adds background itself"):
        Trainer(load_config(cfg, ["model.num_classes=11"]))
    trainer = Trainer(load_config(cfg, ["model.num_classes=10"]))
    metrics = trainer.train()
    assert trainer.global_step == 2 and set(metrics) >= {"AP", "AP50"}


def test_detection_eval_categories_must_match_train(tmp_path):
    ann_file, image_dir = _coco(tmp_path)
    raw = json.loads(open(ann_file).read())
    raw["categories"] = [c for c in raw["categories"] if c["id"] != 3]
    raw["annotations"] = [a for a in raw["annotations"] if a["category_id"] != 3]
    val = tmp_path / "coco" / "val.json"
    val.write_text(json.dumps(raw))
    cfg = _det_config(tmp_path, ann_file, image_dir)
    with pytest.raises(ValueError) as info:
        Trainer(load_config(cfg, ["model.num_classes=10", f"eval_dataset.ann_file={val}"]))
    assert str(info.value).startswith(
        f"eval_dataset has 9 classes ({val}: 9 categories), train_dataset has 10; missing in eval: ['thing2']; "
        f"label i must mean the same class in both.")


# ----------------------------------------------------------------------------- folders
def test_eval_folder_missing_a_class_is_an_error_naming_it(tmp_path):
    train = _folders(tmp_path / "train", ["a", "b", "c"])
    val = _folders(tmp_path / "val", ["a", "c"])  # 'b' missing: without the check c would get label 1
    cfg = _cls_config(tmp_path, _folder_ds(train), _folder_ds(val), num_classes=3)
    with pytest.raises(ValueError) as info:
        Trainer(load_config(cfg))
    msg = str(info.value)
    assert msg.startswith(f"eval_dataset: ImageFolder root={val}: no folder for class(es) ['b'] of class_names ")
    assert msg.endswith("[eval_dataset takes train_dataset's 3 classes ['a', 'b', 'c']]")
    # the deliberate subset: c keeps label 2
    trainer = _trains(cfg, ["allow_class_subset=true"])
    assert trainer.eval_dataset.class_names == ["a", "b", "c"]
    assert sorted({label for _, label in trainer.eval_dataset.samples}) == [0, 2]
    # the eval tool resolves the train set's classes from its config the same way
    with pytest.raises(ValueError, match=r"no folder for class\(es\) \['b'\]"):
        Trainer(load_config(cfg), mode="eval")


def test_eval_folder_not_in_train_is_an_error(tmp_path):
    train = _folders(tmp_path / "train", ["a", "b"])
    val = _folders(tmp_path / "val", ["a", "b", "d"])
    cfg = _cls_config(tmp_path, _folder_ds(train), _folder_ds(val), num_classes=2)
    with pytest.raises(ValueError, match=re.escape(f"ImageFolder root={val}: folder(s) ['d'] are not in class_names")):
        Trainer(load_config(cfg))


def test_image_folder_explicit_class_names_list_or_file(tmp_path):
    root = _folders(tmp_path / "train", ["cat", "dog"])
    names = tmp_path / "names.txt"
    names.write_text("dog\ncat\n\n")
    ds = ImageFolder(root, class_names=str(names))
    assert ds.class_names == ["dog", "cat"]
    assert [(os.path.basename(os.path.dirname(p)), label) for p, label in ds.samples] == [
        ("dog", 0), ("dog", 0), ("cat", 1), ("cat", 1)]
    with pytest.raises(ValueError, match=re.escape("no folder for class(es) ['fox'] of class_names")):
        ImageFolder(root, class_names=["cat", "dog", "fox"])
    assert ImageFolder(root, class_names=["cat", "dog", "fox"], allow_missing_classes=True).class_names[2] == "fox"
    os.makedirs(os.path.join(root, ".ipynb_checkpoints"))  # hidden folders are no class
    assert ImageFolder(root).class_names == ["cat", "dog"]
    with pytest.raises(FileNotFoundError, match="neither a list of names nor an existing file"):
        ImageFolder(root, class_names=str(tmp_path / "nope.txt"))


def test_eval_names_differ_from_train_for_built_in_sets(tmp_path):
    gs = {"type": "GeometricShapes", "num_samples": 8, "image_size": 12, "cache_dir": str(tmp_path / "cache"),
          "transforms": NORMALIZE}
    cfg = _cls_config(tmp_path, {**gs, "split": "train", "num_classes": 4}, {**gs, "split": "val", "num_classes": 3},
                      num_classes=4)
    with pytest.raises(ValueError) as info:
        Trainer(load_config(cfg))
    assert str(info.value).startswith(
        "eval_dataset has 3 classes (GeometricShapes split=val: num_classes=3), train_dataset has 4; "
        "missing in eval: ['star']; label i must mean the same class in both.")


# ----------------------------------------------------------------------------- input size


def test_export_image_shape_differing_from_the_data(tmp_path, capsys):
    root = _folders(tmp_path / "train", ["a", "b"], size=(12, 12))
    cfg = _cls_config(tmp_path, _folder_ds(root), _folder_ds(root), num_classes=2, size=16)  # data are 12 px
    expected = (f"export.image_shape is [3, 16, 16] but eval_dataset's images reach the model as [3, 12, 12] "
                f"(C, H, W: {root}/a/0.png after eval_dataset.transforms); export and infer would feed the model "
                f"16x16 inputs, not the 12x12 it was trained and evaluated on. Set export.image_shape: [3, 12, 12] "
                f"(-o export.image_shape=[3,12,12])")
    _trains(cfg)  # training is unaffected: a warning
    assert expected in _log(capsys)
    weights = str(tmp_path / "out" / "latest")
    folder = tmp_path / "photos"
    _image(str(folder / "x.png"), 20, 20, seed=99)
    for tool, args in (("export", ["-c", cfg, "-w", weights, "--output", str(tmp_path / "inf")]),
                       ("infer", ["-c", cfg, "-w", weights, "--input", str(folder)])):
        with pytest.raises(ValueError) as info:
            _tool(tool)(args)
        assert str(info.value) == expected, tool
    # the right shape: export and infer run; a 20x20 photo is resized with a warning, not silently
    fixed = ["-o", "export.image_shape=[3,12,12]"]
    _log(capsys)
    dygraph = _tool("infer")(["-c", cfg, "-w", weights, "--input", str(folder), "--topk", "2"] + fixed)
    _tool("export")(["-c", cfg, "-w", weights, "--output", str(tmp_path / "inf")] + fixed)
    exported = _tool("infer")(["--model-dir", str(tmp_path / "inf" / "own"), "--input", str(folder), "--topk", "2"])
    warning = ("a 20x20 image gives a 20x20 input after the eval transforms, not export.image_shape [3, 12, 12] "
               "(what the model was trained and evaluated on): resized to 12x12 before the transforms")
    assert _log(capsys).count(warning) == 2  # dygraph and exported, once each
    assert [t[1] for t in dygraph[0][1]] == [t[1] for t in exported[0][1]]
    assert dygraph[0][1][0][2] == pytest.approx(exported[0][1][0][2], abs=1e-4)


# ----------------------------------------------------------------------------- mixed sizes
def test_mixed_image_sizes_name_two_files_their_sizes_and_the_transform(tmp_path):
    root = _folders(tmp_path / "train", ["a", "b"], sizes={"a": (12, 12), "b": (10, 14)})
    hint = ("a batch needs one size: add a resize to the dataset's transforms before Normalize, e.g. "
            "{type: Resize, size: [12, 12]} (or RandomResizedCrop / CenterCrop with a size)")
    # transforms that keep the size: found from the file headers when the dataset is built
    cfg = _cls_config(tmp_path, _folder_ds(root), _folder_ds(root), num_classes=2)
    with pytest.raises(ValueError) as info:
        Trainer(load_config(cfg))
    assert str(info.value) == (
        f"ImageFolder root={root}: 2 class folders: a batch holds images of different sizes: {root}/a/0.png is "
        f"12x12 and {root}/b/0.png is 10x14 (H x W as stored; the dataset's transforms keep the size); {hint}")
    # transforms whose output size depends on the image: the batch's collate names the two files
    ds = ImageFolder(root, transforms=[{"type": "Resize", "size": 12, "short_side": True}, *NORMALIZE])
    with pytest.raises(ValueError) as info:
        ds.collate_fn([ds[i] for i in range(4)])
    assert str(info.value) == (
        f"ImageFolder root={root}: 2 class folders: a batch holds images of different sizes: {root}/a/0.png is "
        f"12x12 and {root}/b/0.png is 12x17 (H x W after the dataset's transforms); {hint}")
    # the transform the message suggests fixes it, and the run trains
    resized = [{"type": "Resize", "size": [12, 12]}, *NORMALIZE]
    _trains(cfg, [f"train_dataset.transforms={json.dumps(resized)}", f"eval_dataset.transforms={json.dumps(resized)}"])


# ----------------------------------------------------------------------------- detection infer
def test_detection_infer_prints_best_scores_when_nothing_passes(tmp_path, capsys):
    names = ["ring", "star", "cross", "ell"]
    bbox = np.array([[3, 0.13, 1, 2, 10, 12], [0, 0.08, 0, 0, 5, 5], [3, 0.02, 0, 0, 4, 4], [1, 0.01, 0, 0, 3, 3]],
                    np.float32)
    assert detection_summary(bbox, names, 0.5) == (
        "0 detections >= 0.5; best 0.13 (class 3 ell), 0.08 (class 0 ring), 0.02 (class 3 ell) "
        "(lower --threshold to draw them)")
    assert detection_summary(np.zeros((0, 6)), names, 0.5) == (
        "0 detections >= 0.5; no box at all (none scored above the model's test.score_thresh)")
    assert detection_summary(bbox, names, 0.1) == "1 detections >= 0.1\n  class 3 ell 0.130 [1.0, 2.0, 10.0, 12.0]"

    class Weak:
        class_names = names

        def detect(self, image):
            return bbox

    _image(str(tmp_path / "in" / "p.png"), 16, 16, seed=1)
    run_infer(Weak(), [str(tmp_path / "in" / "p.png")], str(tmp_path / "drawn"), 0.5,
              lambda p: np.asarray(Image.open(p).convert("RGB")), visualdl=False)
    out = capsys.readouterr().out
    assert f"{tmp_path}/in/p.png: 0 detections >= 0.5; best 0.13 (class 3 ell)," in out
    assert os.path.isfile(tmp_path / "drawn" / "p.png")


# ----------------------------------------------------------------------------- ccache warning
def test_import_and_tools_do_not_print_the_ccache_warning(tmp_path):
    env = tool_env()
    control = subprocess.run([PYTHON, "-c", "import paddle"], capture_output=True, text=True, env=env, cwd=tmp_path)
    if "No ccache found" not in control.stderr:
        pytest.skip("this machine has ccache: Paddle does not warn, nothing to check")
    for cmd in ([PYTHON, "-c", "import paddle_dcn; import paddle_dcn.engine"],
                [PYTHON, os.path.join(TOOLS, "train.py"), "--help"],
                [PYTHON, os.path.join(TOOLS, "infer.py"), "--help"]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "ccache" not in done.stderr + done.stdout, cmd
