"""Broken image files (issue 16): ImageFolder/ImageList stop naming the file (at build when
they check sizes, else through the loader with the item's index), or with ``bad_images: skip``
leave them out and count them in the log; tools/infer.py gives one line naming the file (exit
2, no traceback), or skips and counts with --bad-images skip."""
import os
import subprocess

import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

from engine_helpers import NORMALIZE, PYTHON, TOOLS, tool_env, tool_main
from paddle_dcn.config import load_config
from paddle_dcn.data import ImageFolder, ImageList
from paddle_dcn.data.folder import BadImageError
from paddle_dcn.data.loader import DataLoadError
from paddle_dcn.engine import Trainer
from paddle_dcn.registry import MODELS, build

RESIZE = [{"type": "Resize", "size": 12}] + NORMALIZE  # no build-time size check


def _image(path, seed, size=12):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def _folder(root, per_class=4, corrupt=("a/1.png",)):
    for k, name in enumerate(["a", "b"]):
        for i in range(per_class):
            _image(os.path.join(root, name, f"{i}.png"), 10 * k + i)
    for rel in corrupt:
        with open(os.path.join(root, rel), "wb") as f:
            f.write(b"this is not a png")
    return str(root)


def _config(tmp_path, dataset, num_workers=0):
    cfg = {"epochs": 1, "seed": 0, "log_interval": 1, "output_dir": str(tmp_path / "out"),
           "train_dataset": dataset, "eval_dataset": dataset,
           "loader": {"batch_size": 2, "eval_batch_size": 2, "num_workers": num_workers, "drop_last": False},
           "model": {"type": "Classifier", "num_classes": 2, "backbone": {"type": "SimpleConvNet", "channels": 4}},
           "optimizer": {"type": "Momentum", "momentum": 0.9},
           "lr_scheduler": {"type": "WarmupCosine", "base_lr": 0.01, "warmup_epochs": 0},
           "checkpoint": {"interval": 1, "keep_last": 1}, "visualdl": {"enabled": False},
           "metric": {"type": "TopKAccuracy", "topk": [1]}, "export": {"image_shape": [3, 12, 12]}}
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_size_check_at_build_names_the_broken_file(tmp_path):
    root = _folder(tmp_path / "imgs")
    with pytest.raises(BadImageError, match=f"cannot read image {root}/a/1.png: .*bad_images: skip"):
        ImageFolder(root, transforms=NORMALIZE)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_stops_naming_the_file_and_index(tmp_path, num_workers):
    root = _folder(tmp_path / "imgs")
    trainer = Trainer(load_config(_config(tmp_path, {"type": "ImageFolder", "root": root, "transforms": RESIZE},
                                          num_workers)))
    with pytest.raises(DataLoadError, match=f"item 1 of ImageFolder failed: BadImageError: cannot read image "
                                            f"{root}/a/1.png"):
        trainer.evaluate()


def test_skip_leaves_broken_files_out_and_counts_them_in_the_log(tmp_path):
    root = _folder(tmp_path / "imgs", corrupt=("a/1.png", "b/3.png"))
    os.remove(os.path.join(root, "b", "0.png"))
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{c}/{i}.png {k}\n" for k, c in enumerate("ab") for i in range(4)))
    folder = ImageFolder(root, transforms=NORMALIZE, bad_images="skip")
    assert len(folder) == 5 and sorted(p for p, _ in folder.skipped) == [f"{root}/a/1.png", f"{root}/b/3.png"]
    images = ImageList(str(listing), root=root, transforms=NORMALIZE, bad_images="skip")
    assert len(images) == 5 and {why for _, why in images.skipped} >= {"file not found"}
    with pytest.raises(ValueError, match="bad_images must be one of"):
        ImageFolder(root, bad_images="ignore")

    dataset = {"type": "ImageList", "list_file": str(listing), "root": root, "transforms": NORMALIZE,
               "bad_images": "skip"}
    trainer = Trainer(load_config(_config(tmp_path, dataset)))
    metrics = trainer.train()
    assert trainer.global_step == 3 and 0 <= metrics["top1"] <= 100  # 5 images, batch 2, drop_last false
    log = (tmp_path / "out" / "train.log").read_text()
    assert log.count("skipped 3 of 8 images (bad_images: skip)") == 2  # train and eval set
    assert f"{root}/b/0.png (file not found)" in log


def test_an_image_that_breaks_after_the_check_is_replaced_and_counted(tmp_path):
    root = _folder(tmp_path / "imgs", corrupt=())
    folder = ImageFolder(root, transforms=NORMALIZE, bad_images="skip")
    strict = ImageFolder(root, transforms=RESIZE)
    os.remove(folder.samples[2][0])
    item = folder[2]
    assert item["file"] == folder.samples[3][0] and folder.skipped_at_load == 1
    with pytest.raises(BadImageError, match="image not found: .*/a/2.png"):
        strict[2]


def _weights(tmp_path, cfg_path):
    model = build(MODELS, load_config(cfg_path)["model"])
    paddle.save(model.state_dict(), str(tmp_path / "w.pdparams"))
    return str(tmp_path / "w")


def test_infer_names_a_broken_or_missing_file_or_skips_and_counts(tmp_path, capsys):
    train = _folder(tmp_path / "train", corrupt=())
    cfg = _config(tmp_path, {"type": "ImageFolder", "root": train, "transforms": NORMALIZE})
    weights = _weights(tmp_path, cfg)
    photos = _folder(tmp_path / "photos", corrupt=("a/1.png",))
    inputs = [os.path.join(photos, "a"), os.path.join(photos, "b", "0.png"), str(tmp_path / "gone.png")]
    infer = tool_main("infer")
    with pytest.raises(BadImageError, match=f"cannot read image {photos}/a/1.png: .*--bad-images skip"):
        infer(["-c", cfg, "-w", weights, "--input", *inputs])
    results = infer(["-c", cfg, "-w", weights, "--input", *inputs, "--bad-images", "skip"])
    assert [f for f, _ in results] == [f"{photos}/a/0.png", f"{photos}/a/2.png", f"{photos}/a/3.png",
                                       f"{photos}/b/0.png"]
    out = capsys.readouterr()
    assert "skipped 2 unreadable image(s) (--bad-images skip)" in out.out
    assert f"image not found: {tmp_path}/gone.png" in out.err
    # the config's eval_dataset.bad_images is the default
    results = infer(["-c", cfg, "-w", weights, "--input", *inputs, "-o", "eval_dataset.bad_images=skip"])
    assert len(results) == 4

    run = subprocess.run([PYTHON, os.path.join(TOOLS, "infer.py"), "-c", cfg, "-w", weights, "--input",
                          str(tmp_path / "gone.png")], capture_output=True, text=True, env=tool_env(), timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().endswith(f"infer.py: error: image not found: {tmp_path}/gone.png "
                                       "(--bad-images skip skips such files)")
