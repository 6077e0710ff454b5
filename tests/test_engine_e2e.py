"""A tiny classification run through the tools: train -> eval -> resume -> export -> infer.

Also checks what the run leaves behind (checkpoints, pruning, config, VisualDL records) and
that a resumed run ends with exactly the parameters of an uninterrupted one.
"""
import glob
import os

import numpy as np
import paddle
import pytest
from PIL import Image

from engine_helpers import tiny_config, tool_main as _tool, write_config
from paddle_dcn.config import load_config
from paddle_dcn.data import GeometricShapes
from paddle_dcn.engine import deploy


def _params(path):
    return {k: v.numpy() for k, v in paddle.load(path).items()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    backbone = {"type": "ResNet", "depth": 18, "stem": "small", "base_channels": 4, "dcn_stages": [4, 5]}
    cfg_path = write_config(str(tmp), "tiny_dcn", tiny_config(str(tmp / "cache"), backbone, epochs=2))
    metrics = _tool("train")(["-c", cfg_path, "--output", str(tmp / "full")])
    return tmp, cfg_path, metrics


def test_training_leaves_checkpoints_config_and_visualdl(run):
    tmp, _, metrics = run
    out = tmp / "full"
    assert set(metrics) == {"top1", "top2"} and 0 <= metrics["top1"] <= metrics["top2"] <= 100
    for name in ("epoch_2", "latest", "best"):
        assert os.path.isfile(out / f"{name}.pdparams") and os.path.isfile(out / f"{name}.pdstate")
    assert not os.path.exists(out / "epoch_1.pdparams")  # keep_last: 1
    assert load_config(str(out / "config.yml"))["epochs"] == 2
    state = paddle.load(str(out / "latest.pdstate"))
    assert state["epoch"] == 2 and state["global_step"] == 8  # 64 samples / 16 per batch x 2
    assert not glob.glob(str(out / "*.tmp*"))  # atomic writes leave no temp files
    from visualdl import LogReader

    records = glob.glob(str(out / "vdl" / "vdlrecords.*"))
    assert len(records) == 1
    tags = LogReader(file_path=records[0]).get_tags()
    assert {"train/loss", "train/lr", "train/images_per_sec", "eval/top1", "eval/top2"} <= set(tags["scalar"])
    assert sorted(tags["histogram"]) == ["offsets/backbone.res4", "offsets/backbone.res5"]
    assert any(t.startswith("sampling_locations/backbone.res5") for t in tags["image"])


def test_a_run_that_fails_to_build_leaves_the_saved_config(run, tmp_path):
    """config.yml is written when training starts (after the build and the resume): a rerun
    into the same directory with a bad option, or with a model its checkpoint does not fit,
    fails without replacing the file that names the checkpoints' model."""
    tmp, cfg_path, _ = run
    out = tmp_path / "out"
    _tool("train")(["-c", cfg_path, "-o", "epochs=1", "--output", str(out)])
    before = open(out / "config.yml", encoding="utf-8").read()
    with pytest.raises(ValueError, match="dcn_stages"):
        _tool("train")(["-c", cfg_path, "-o", "epochs=3", "model.backbone.dcn_stages=[6]", "--output", str(out)])
    assert open(out / "config.yml", encoding="utf-8").read() == before
    # a model the checkpoint does not fit: it builds, then resume refuses it
    with pytest.raises(ValueError, match="does not fit this model"):
        _tool("train")(["-c", cfg_path, "-o", "epochs=3", "model.backbone.dcn_stages=[5]", "-r", str(out),
                        "--output", str(out)])
    assert open(out / "config.yml", encoding="utf-8").read() == before
    assert load_config(str(out / "config.yml"))["epochs"] == 1


def test_eval_tool_reproduces_training_metrics(run):
    tmp, cfg_path, metrics = run
    got = _tool("eval")(["-c", cfg_path, "-w", str(tmp / "full" / "latest")])
    assert got == pytest.approx(metrics)


def test_resume_continues_exactly(run):
    tmp, cfg_path, _ = run
    _tool("train")(["-c", cfg_path, "-o", "epochs=1", "--output", str(tmp / "part")])
    # the schedule spans the run's epochs: resuming a 1-epoch run into 2 epochs is a different
    # curve, so stop the first run after epoch 1 of 2 the way a killed run would: use its
    # epoch-1 checkpoint of a 2-epoch run instead.
    _tool("train")(["-c", cfg_path, "-o", "checkpoint.keep_last=2", "--output", str(tmp / "killed")])
    os.remove(tmp / "killed" / "latest.pdparams")
    for f in ("epoch_2.pdparams", "epoch_2.pdstate", "latest.pdstate"):
        os.remove(tmp / "killed" / f)
    _tool("train")(["-c", cfg_path, "-r", str(tmp / "killed"), "--output", str(tmp / "killed")])
    full = _params(str(tmp / "full" / "latest.pdparams"))
    resumed = _params(str(tmp / "killed" / "latest.pdparams"))
    part = _params(str(tmp / "part" / "latest.pdparams"))
    for key in full:
        np.testing.assert_allclose(resumed[key], full[key], rtol=1e-6, atol=1e-7, err_msg=key)
    assert max(np.abs(part[k] - full[k]).max() for k in full) > 1e-4


def test_export_and_infer_match_dygraph(run):
    tmp, cfg_path, _ = run
    paths = _tool("export")(["-c", cfg_path, "-w", str(tmp / "full" / "best"), "--output", str(tmp / "inference")])
    model_dir = tmp / "inference" / "tiny_dcn"
    assert os.path.dirname(paths["model"]) == str(model_dir)
    assert os.path.isfile(paths["params"]) and os.path.isfile(model_dir / "infer_cfg.yml")
    cfg = load_config(cfg_path)
    eval_set = GeometricShapes(**{k: v for k, v in cfg["eval_dataset"].items() if k != "type"})
    images = [eval_set.images[i] for i in range(3)]
    runner = deploy.InferenceClassifier(str(model_dir))
    got = runner.probabilities(images)
    model = deploy.build_model_with_weights(cfg, str(tmp / "full" / "best"))
    with paddle.no_grad():
        want = model.predict(paddle.to_tensor(np.stack([eval_set[i]["image"] for i in range(3)]))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    folder = tmp / "images"
    os.makedirs(folder)
    for i, img in enumerate(images):
        Image.fromarray(img).resize((40, 40)).save(folder / f"{i}.png")  # any size is resized
    exported = _tool("infer")(["--model-dir", str(model_dir), "--input", str(folder), "--topk", "2"])
    dygraph = _tool("infer")(["-c", cfg_path, "-w", str(tmp / "full" / "best"), "--input", str(folder), "--topk", "2"])
    assert [f for f, _ in exported] == sorted(str(folder / f"{i}.png") for i in range(3))
    for (_, top_e), (_, top_d) in zip(exported, dygraph):
        assert len(top_e) == 2 and top_e[0][0] in eval_set.class_names
        assert [t[1] for t in top_e] == [t[1] for t in top_d]
        assert top_e[0][2] == pytest.approx(top_d[0][2], abs=1e-4)


def test_paddle_and_onnx_exports_share_the_directory(run, tmp_path):
    """Exported in either order into one directory, both formats stay usable: infer_cfg.yml
    keeps the Paddle entry (model_prefix) beside the ONNX section (the ONNX export once replaced
    the file and infer.py --model-dir failed with a KeyError). An ONNX-only directory is refused
    in one line naming what to do."""
    pytest.importorskip("onnxruntime")
    import yaml

    _, cfg_path, _ = run
    weights = str(run[0] / "full" / "best")
    for order in (("paddle", "onnx"), ("onnx", "paddle")):
        out = tmp_path / "_".join(order)
        for fmt in order:
            _tool("export")(["-c", cfg_path, "-w", weights, "--output", str(out)]
                            + (["--format", "onnx"] if fmt == "onnx" else []))
        model_dir = out / "tiny_dcn"
        info = yaml.safe_load(open(model_dir / "infer_cfg.yml", encoding="utf-8"))
        assert info["model_prefix"] == "model" and info["onnx"]["model_file"] == "model.onnx"
        assert info["onnx"]["inputs"] == ["image"] and info["image_shape"] == [3, 16, 16]
        runner = deploy.InferenceClassifier(str(model_dir))
        image = np.random.default_rng(0).integers(0, 255, [16, 16, 3], dtype=np.uint8)
        probs = runner.probabilities([image])
        import onnxruntime as ort

        session = ort.InferenceSession(str(model_dir / info["onnx"]["model_file"]), providers=["CPUExecutionProvider"])
        batch = np.stack([runner.preprocess(image)]).astype(np.float32)
        np.testing.assert_allclose(session.run(None, {"image": batch})[0], probs, atol=1e-5)
    only_onnx = tmp_path / "only_onnx"
    _tool("export")(["-c", cfg_path, "-w", weights, "--output", str(only_onnx), "--format", "onnx"])
    with pytest.raises(deploy.NotAPaddleExport, match=r"holds an ONNX export only \(model.onnx\).*without --format onnx"):
        deploy.InferenceClassifier(str(only_onnx / "tiny_dcn"))
    with pytest.raises(FileNotFoundError, match="is not an exported model directory"):
        deploy.InferenceClassifier(str(tmp_path))


def test_amp_run_trains_and_checkpoints(tmp_path):
    backbone = {"type": "ResNet", "depth": 18, "stem": "small", "base_channels": 4, "dcn_stages": [5]}
    cfg = tiny_config(str(tmp_path / "cache"), backbone, epochs=1)
    cfg["amp"] = {"enabled": True, "dtype": "bfloat16"}
    cfg["grad_clip"] = 5.0
    path = write_config(str(tmp_path), "tiny_amp", cfg)
    metrics = _tool("train")(["-c", path, "--output", str(tmp_path / "out")])
    assert 0 <= metrics["top1"] <= 100
    params = _params(str(tmp_path / "out" / "latest.pdparams"))
    assert all(np.isfinite(v).all() for v in params.values())


def test_accuracy_by_scale_splits_the_eval_metric(run):
    """The per-size groups partition the eval set: their count-weighted top-1 is the engine's."""
    tmp, cfg_path, metrics = run
    rows = _tool("accuracy_by_scale")(["-c", cfg_path, "-w", str(tmp / "full" / "latest"), "--bins", "3"])
    assert len(rows) == 3
    assert [r["scale_min"] <= r["scale_max"] for r in rows] == [True] * 3
    assert rows[0]["scale_max"] <= rows[1]["scale_min"] and rows[1]["scale_max"] <= rows[2]["scale_min"]
    total = sum(r["count"] for r in rows)
    assert sum(r["top1"] * r["count"] for r in rows) / total == pytest.approx(metrics["top1"], abs=1e-6)


def test_accuracy_by_bins_groups_by_scale():
    mod_main = _tool("accuracy_by_scale")
    bins = mod_main.__globals__["accuracy_by_bins"]
    rng = np.random.default_rng(0)
    scales = rng.permutation(np.linspace(0.25, 0.95, 12))
    correct = scales > np.median(scales)  # only the larger half is right
    rows = bins(scales, correct, 2)
    assert [r["count"] for r in rows] == [6, 6] and [r["top1"] for r in rows] == [0.0, 100.0]
    assert rows[0]["scale_min"] == pytest.approx(0.25) and rows[1]["scale_max"] == pytest.approx(0.95)
    with pytest.raises(ValueError, match="bins"):
        bins(scales, correct, 13)
    with pytest.raises(ValueError, match="scales and correct"):
        bins(scales, correct[:5], 2)


def test_accuracy_by_scale_dilation(run, tmp_path):
    """--dilation: a trained model's deformable stages report their footprint per size group;
    a freshly built one (zero-initialised offsets) is exactly a plain conv's, 1.0."""
    tmp, cfg_path, _ = run
    rows = _tool("accuracy_by_scale")(["-c", cfg_path, "-w", str(tmp / "full" / "latest"), "--bins", "2",
                                       "--dilation"])
    dil = [r for r in rows if "stage" in r]
    assert [r["stage"] for r in dil] == ["backbone.res4"] * 2 + ["backbone.res5"] * 2
    assert all(r["on_shape"] > 0 and r["background"] > 0 for r in dil)
    # 8 steps move the zero-initialised offsets only a little (about 1e-5 px here), but they move
    assert max(max(abs(r["on_shape"] - 1.0), abs(r["background"] - 1.0)) for r in dil) > 1e-7

    tool = _tool("accuracy_by_scale").__globals__
    from paddle_dcn.engine import Trainer
    trainer = Trainer(load_config(cfg_path), mode="eval")
    ds, model = trainer.eval_dataset, trainer.unwrapped_model
    footprint = tool["DilationBySize"](model, ds)
    labels = tool["predict_labels"](model, ds, batch_size=7, offsets_sink=footprint)
    np.testing.assert_array_equal(labels, tool["predict_labels"](model, ds))  # the sink changes nothing
    fresh = footprint.rows(ds.shape_scales(), 2)
    np.testing.assert_allclose([[r["on_shape"], r["background"]] for r in fresh], 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="deformable"):
        tool["DilationBySize"](paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3)), ds)


def test_box_average_is_the_area_mean():
    """Shape coverage on a layer's grid: each cell is the mean over its area, also when the
    grid does not divide the image (7 px -> 3 cells: compared with a 3x-upsampled exact mean)."""
    box = _tool("accuracy_by_scale").__globals__["_box_average"]
    rng = np.random.default_rng(1)
    even = rng.uniform(size=(2, 6, 6))
    np.testing.assert_allclose(box(even, 3, 2), even.reshape(2, 3, 2, 2, 3).mean(axis=(2, 4)))
    odd = rng.uniform(size=(2, 7, 7))
    exact = np.repeat(np.repeat(odd, 3, axis=1), 3, axis=2).reshape(2, 3, 7, 3, 7).mean(axis=(2, 4))
    np.testing.assert_allclose(box(odd, 3, 3), exact, atol=1e-5)
