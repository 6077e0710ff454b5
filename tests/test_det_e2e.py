"""A tiny detection run through the tools with the real configs (shrunk by -o overrides):
train -> eval (COCOeval) -> infer (boxes drawn) -> export -> Paddle Inference == dygraph."""
import glob
import os

import numpy as np
import paddle
import pytest
from PIL import Image

from det_helpers import tiny_overrides
from engine_helpers import REPO, tool_main as _tool
from paddle_dcn.config import load_config
from paddle_dcn.data.folder import load_rgb
from paddle_dcn.engine import det_deploy

KEYS = {"AP", "AP50", "AP75", "APs", "APm", "APl"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("det_e2e")
    cfg = os.path.join(REPO, "configs", "dcn_faster_rcnn_r50_fpn.yml")
    o = tiny_overrides(str(tmp / "cache")) + ["model.roi_extractor.fc_channels=32", "model.bbox_head.hidden=32"]
    metrics = _tool("train")(["-c", cfg, "--output", str(tmp / "out"), "-o", *o])
    return tmp, cfg, o, metrics


def test_training_evaluates_with_cocoeval_and_leaves_records(run):
    tmp, cfg, o, metrics = run
    assert set(metrics) == KEYS and 0.0 <= metrics["AP"] <= metrics["AP50"] <= 100.0
    assert all(0.0 <= v <= 100.0 for v in metrics.values() if not np.isnan(v))  # NaN: no gt of that size
    out = tmp / "out"
    for name in ("epoch_2", "latest", "best"):
        assert os.path.isfile(out / f"{name}.pdparams")
    from visualdl import LogReader

    tags = LogReader(file_path=glob.glob(str(out / "vdl" / "vdlrecords.*"))[0]).get_tags()
    assert {"train/loss", "eval/AP", "eval/AP50", "eval/APl"} <= set(tags["scalar"])
    assert {"offsets/backbone.res3", "offsets/backbone.res4", "offsets/backbone.res5"} <= set(tags["histogram"])
    assert any(t.startswith("sampling_locations/backbone.res5") for t in tags["image"])
    log = open(out / "train.log").read()
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all" in log  # pycocotools' table


def test_eval_tool_reproduces_training_metrics(run):
    tmp, cfg, o, metrics = run
    again = _tool("eval")(["-c", cfg, "-w", str(tmp / "out" / "latest"), "-o", *o])
    assert again == pytest.approx(metrics, nan_ok=True)


def test_resume_ends_where_an_uninterrupted_run_ends(run):
    tmp, cfg, o, metrics = run
    resumed = _tool("train")(["-c", cfg, "-r", str(tmp / "out" / "epoch_1"), "--output", str(tmp / "resumed"), "-o", *o])
    a = paddle.load(str(tmp / "out" / "latest.pdparams"))
    b = paddle.load(str(tmp / "resumed" / "latest.pdparams"))
    for key in a:
        np.testing.assert_allclose(b[key].numpy(), a[key].numpy(), rtol=1e-5, atol=1e-6, err_msg=key)
    assert resumed == pytest.approx(metrics, nan_ok=True)


def _val_images(tmp):
    return sorted(glob.glob(str(tmp / "cache" / "shapes_det_val_*" / "images" / "*.png")))[:2]


def test_infer_draws_boxes(run):
    tmp, cfg, o, _ = run
    files = _val_images(tmp)
    results = _tool("infer")(["-c", cfg, "-w", str(tmp / "out" / "latest"), "-o", *o, "--input", files[0],
                              "--threshold", "0.0", "--output-dir", str(tmp / "drawn")])
    (path, bbox), = results
    assert path == files[0] and bbox.shape[1] == 6 and len(bbox) > 0
    drawn = np.asarray(Image.open(tmp / "drawn" / os.path.basename(files[0])))
    original = load_rgb(files[0])
    assert drawn.shape == original.shape and (drawn != original).any()
    # the best box's outline is drawn in its class colour
    c, _, x1, y1, x2, y2 = bbox[0]
    colour = det_deploy._COLOURS[int(c) % len(det_deploy._COLOURS)]
    assert (drawn[int(round(y2)) - 1: int(round(y2)) + 1, int(x1) + 3: int(x2) - 3] == colour).all(-1).any()
    assert glob.glob(str(tmp / "drawn" / "vdl" / "vdlrecords.*"))


def _export_matches_dygraph(tmp, cfg_path, overrides, weights, name):
    _tool("export")(["-c", cfg_path, "-w", weights, "-o", *overrides, "--output", str(tmp / "exported")])
    cfg = load_config(cfg_path, overrides)
    exported = det_deploy.InferenceDetector(str(tmp / "exported" / name))
    dygraph = det_deploy.DygraphDetector(cfg, weights)
    assert exported.class_names == dygraph.class_names
    for f in _val_images(tmp):
        image = load_rgb(f)
        a, b = exported.detect(image), dygraph.detect(image)
        assert a.shape == b.shape and len(a) > 0
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_export_runs_in_paddle_inference_like_dygraph(run):
    tmp, cfg, o, _ = run
    _export_matches_dygraph(tmp, cfg, o, str(tmp / "out" / "latest"), "dcn_faster_rcnn_r50_fpn")


def test_rfcn_trains_and_exports(run):
    tmp, _, _, _ = run
    cfg = os.path.join(REPO, "configs", "dcn_rfcn_r50.yml")
    o = tiny_overrides(str(tmp / "cache"), epochs=1) + ["model.mid_channels=16", "model.group_size=3"]
    metrics = _tool("train")(["-c", cfg, "--output", str(tmp / "rfcn"), "-o", *o])
    assert set(metrics) == KEYS
    _export_matches_dygraph(tmp, cfg, o, str(tmp / "rfcn" / "latest"), "dcn_rfcn_r50")


def test_benchmark_tool_times_the_configs(run):
    tmp, cfg, o, _ = run
    rfcn = os.path.join(REPO, "configs", "dcn_rfcn_r50.yml")
    common = tiny_overrides(str(tmp / "cache"))  # keys both configs have
    times = _tool("benchmark_detection")(["-c", cfg, rfcn, "--iters", "1", "-o", *common])
    assert set(times) == {"dcn_faster_rcnn_r50_fpn", "dcn_rfcn_r50"} and all(t > 0 for t in times.values())
