"""Detection models: RoI extractors against roi_align, post-processing and COCO AP by hand,
the model contract of Faster R-CNN and R-FCN, config errors."""
import math

import numpy as np
import paddle
import pytest

import paddle_dcn.models  # noqa: F401 - registration
from paddle_dcn.data.coco import COCODetection
from paddle_dcn.engine.coco_metric import COCOMetric
from paddle_dcn.models.detection.postprocess import detections
from paddle_dcn.models.detection.roi_extractor import RoIExtractor
from paddle_dcn.registry import MODELS, build

STRIDES = [4, 8, 16, 32]


def _pyramid(channels=3, size=64):
    return [paddle.randn([2, channels, size // s, size // s]) for s in STRIDES]


ROIS = np.array([[2, 3, 20, 30], [0, 0, 63, 63], [10, 12, 14, 15],  # image 0
                 [5, 5, 60, 40]], np.float32)                         # image 1
ROIS_NUM = np.array([3, 1], np.int32)


def test_roialign_extractor_pools_each_roi_from_its_fpn_level():
    feats = _pyramid()
    out = RoIExtractor("RoIAlign", 3, STRIDES, output_size=2, sampling_ratio=2, canonical_scale=32,
                       canonical_level=4)(feats, paddle.to_tensor(ROIS), paddle.to_tensor(ROIS_NUM)).numpy()
    image_of = [0, 0, 0, 1]
    for k, box in enumerate(ROIS):
        w, h = box[2] - box[0], box[3] - box[1]
        level = int(np.clip(math.floor(4 + math.log2(math.sqrt(w * h) / 32 + 1e-8)), 2, 5))
        f = feats[level - 2][image_of[k]: image_of[k] + 1]
        ref = paddle.vision.ops.roi_align(f, paddle.to_tensor(box[None]), paddle.to_tensor([1], "int32"), 2,
                                          1.0 / 2 ** level, 2, aligned=True).numpy()
        np.testing.assert_allclose(out[k], ref[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind, factor", [("DeformRoIPoolPack", 1.0), ("ModulatedDeformRoIPoolPack", 0.5)])
def test_deformable_extractors_start_as_roialign(kind, factor):
    feats = _pyramid()
    args = (feats, paddle.to_tensor(ROIS), paddle.to_tensor(ROIS_NUM))
    ref = RoIExtractor("RoIAlign", 3, STRIDES, output_size=3)(*args).numpy()
    ext = RoIExtractor(kind, 3, STRIDES, output_size=3, fc_channels=16)
    out = ext(*args)
    np.testing.assert_allclose(out.numpy(), factor * ref, rtol=1e-5, atol=1e-6)
    out.sum().backward()  # the offset predictor is trained through the pooling
    grads = [p.grad for n, p in ext.named_parameters() if "offset_fc" in n]
    assert grads and any(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_extractor_errors():
    with pytest.raises(ValueError, match="kind must be one of"):
        RoIExtractor("RoIPool")
    with pytest.raises(ValueError, match="consecutive powers of two"):
        RoIExtractor("RoIAlign", 3, [4, 16])


def test_detections_by_hand():
    # 3 RoIs, 2 classes (+ background); zero deltas: boxes are the RoIs
    rois = paddle.to_tensor([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10.]])
    probs = np.array([[0.8, 0.1, 0.1],     # class 0, 0.8
                      [0.6, 0.3, 0.1],     # class 0, 0.6: overlaps RoI 0 (IoU 9/11) -> suppressed
                      [0.02, 0.9, 0.08]])  # class 1, 0.9: same box as RoI 0, other class -> kept
    logits = paddle.to_tensor(np.log(probs).astype(np.float32))
    out = detections(logits, paddle.zeros([3, 4]), rois, paddle.to_tensor([20.0, 20.0]),
                     paddle.to_tensor([2.0, 0.5]), (10, 10, 5, 5), score_thresh=0.2, nms_thresh=0.5,
                     max_det=10).numpy()
    # rows best first; boxes back in original pixels: x / 0.5, y / 2. RoI 1's class-1 score 0.3
    # is suppressed by RoI 2's 0.9 (same class, IoU 9/11); RoI 2's class 0 (0.02) is below 0.2
    np.testing.assert_allclose(out, [[1, 0.9, 0, 0, 20, 5], [0, 0.8, 0, 0, 20, 5]],
                               rtol=1e-5, atol=1e-5)
    out = detections(logits, paddle.zeros([3, 4]), rois, paddle.to_tensor([20.0, 20.0]),
                     paddle.to_tensor([1.0, 1.0]), (10, 10, 5, 5), 0.2, 0.5, max_det=1).numpy()
    assert out.shape == (1, 6) and out[0, 1] == pytest.approx(0.9, rel=1e-5)


def _gt_dataset(tmp_path):
    import json

    from PIL import Image
    (tmp_path / "img").mkdir()
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "img" / "a.png")
    ann = {"images": [{"id": 1, "file_name": "a.png", "height": 100, "width": 100}],
           "categories": [{"id": 3, "name": "x"}, {"id": 8, "name": "y"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 30, 30]},
                           {"id": 2, "image_id": 1, "category_id": 3, "bbox": [50, 50, 40, 40]}]}
    (tmp_path / "a.json").write_text(json.dumps(ann))
    return COCODetection(str(tmp_path / "a.json"), str(tmp_path / "img"))


def _score(metric, rows):
    metric.reset()
    metric.update({"bbox": paddle.to_tensor(np.array(rows, np.float32).reshape(-1, 6)),
                   "bbox_num": paddle.to_tensor([len(rows)])}, {"im_id": paddle.to_tensor([1])})
    return metric.accumulate()


def test_coco_metric_by_hand(tmp_path):
    metric = COCOMetric(print_table=False)
    metric.bind_dataset(_gt_dataset(tmp_path))
    both = _score(metric, [[0, 0.9, 10, 10, 40, 40], [0, 0.8, 50, 50, 90, 90]])
    assert both["AP"] == pytest.approx(100.0) and both["AP50"] == pytest.approx(100.0)
    assert both["APs"] == pytest.approx(100.0) and math.isnan(both["APl"])  # 30x30 is small; no large gt
    # one of two found (precision 1 up to recall 0.5): 51 of COCO's 101 recall points
    one = _score(metric, [[0, 0.9, 10, 10, 40, 40]])
    assert one["AP50"] == pytest.approx(100 * 51 / 101, rel=1e-6)
    wrong_class = _score(metric, [[1, 0.9, 10, 10, 40, 40], [1, 0.8, 50, 50, 90, 90]])
    assert wrong_class["AP"] == pytest.approx(0.0)
    # IoU 0.6 with the first box: counts at IoU 0.5, not at 0.75
    shifted = _score(metric, [[0, 0.9, 10, 10, 40, 40], [0, 0.8, 50, 50, 90, 90 * 0 + 74]])
    assert shifted["AP50"] == pytest.approx(100.0) and shifted["AP75"] == pytest.approx(100 * 51 / 101, rel=1e-6)
    assert _score(metric, []) == {k: 0.0 for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}


def _tiny(kind="FasterRCNN", **extra):
    cfg = {"type": kind, "num_classes": 3,
           "backbone": {"type": "ResNet", "depth": 18, "stem": "small", "stem_stride": 2, "base_channels": 4,
                        "out_stages": [2, 3, 4, 5], "dcn_stages": [5]},
           "neck": {"out_channels": 8},
           "rpn": {"anchor_sizes": [[8], [16], [32], [64], [128]], "feat_channels": 8,
                   "train_post_nms_top_n": 50, "test_post_nms_top_n": 20, "batch_size_per_im": 32},
           "roi_sampling": {"batch_size_per_im": 16}, "test": {"score_thresh": 0.0, "max_det": 10}}
    if kind == "FasterRCNN":
        cfg.update(roi_extractor={"kind": "ModulatedDeformRoIPoolPack", "fc_channels": 8}, bbox_head={"hidden": 16})
    else:
        cfg.update(head_stride=8, mid_channels=8, group_size=3, deformable=True)
    cfg.update(extra)
    return build(MODELS, cfg)


def _batch():
    image = paddle.randn([2, 3, 64, 64])
    gt = np.zeros((2, 2, 4), np.float32)
    gt[0] = [[4, 4, 30, 40], [30, 30, 60, 50]]
    gt[1, 0] = [10, 20, 40, 44]
    return {"image": image, "im_shape": paddle.to_tensor([[64.0, 64.0], [60.0, 50.0]]),
            "scale_factor": paddle.to_tensor([[1.0, 1.0], [0.5, 0.5]]), "im_id": paddle.to_tensor([1, 2]),
            "gt_boxes": paddle.to_tensor(gt), "gt_classes": paddle.to_tensor([[0, 2], [1, -1]], dtype="int64"),
            "gt_num": paddle.to_tensor([2, 1], dtype="int32")}


@pytest.mark.parametrize("kind", ["FasterRCNN", "RFCN"])
def test_model_contract_train_and_eval(kind):
    model = _tiny(kind)
    batch = _batch()
    model.train()
    losses = model(batch)
    assert set(losses) == {"loss", "loss_rpn_cls", "loss_rpn_reg", "loss_cls", "loss_reg"}
    assert all(np.isfinite(float(v)) for v in losses.values())
    parts = sum(float(v) for k, v in losses.items() if k != "loss")
    assert float(losses["loss"]) == pytest.approx(parts, rel=1e-5)
    losses["loss"].backward()
    offset_grads = [p.grad for n, p in model.named_parameters() if "offset" in n and p.grad is not None]
    assert offset_grads and any(float(g.abs().sum()) > 0 for g in offset_grads)  # deformable parts learn
    model.eval()
    with paddle.no_grad():
        out = model(batch)
    bbox, num = out["bbox"].numpy(), out["bbox_num"].numpy()
    assert num.shape == (2,) and bbox.shape == (int(num.sum()), 6) and 0 < num[0] <= 10
    classes, scores = bbox[:, 0], bbox[:, 1]
    assert set(classes.astype(int)) <= {0, 1, 2} and ((scores >= 0) & (scores <= 1)).all()
    # image 1 was resized by 0.5 from 100x120 (w x h): boxes come back in original pixels
    second = bbox[num[0]:]
    assert (second[:, 4] <= 100 + 1e-3).all() and (second[:, 5] <= 120 + 1e-3).all()
    first = bbox[: num[0]]
    assert (first[:, 2:] <= 64 + 1e-3).all() and (first[:, 2:] >= 0).all()
    assert (np.diff(first[:, 1]) <= 1e-6).all()  # best first


def test_model_config_errors_list_valid_keys():
    with pytest.raises(KeyError, match="model.rpn: unknown key.*'anchor_size'.*valid keys:.*anchor_sizes"):
        _tiny(rpn={"anchor_size": [[8]]})
    with pytest.raises(KeyError, match="model.roi_sampling: unknown key"):
        _tiny(roi_sampling={"fg_fraction": 0.3})
    with pytest.raises(ValueError, match="head_stride"):
        _tiny("RFCN", head_stride=12)


def test_backbone_starts_from_a_classification_checkpoint(tmp_path):
    bb = {"type": "ResNet", "depth": 18, "stem": "small", "stem_stride": 2, "base_channels": 4,
          "out_stages": [2, 3, 4, 5], "dcn_stages": [5]}
    classifier = build(MODELS, {"type": "Classifier", "num_classes": 5, "backbone": bb})
    for p in classifier.parameters():  # not the initial values: make the copy observable
        p.set_value(paddle.randn(p.shape).astype(p.dtype))
    paddle.save(classifier.state_dict(), str(tmp_path / "cls.pdparams"))
    det = _tiny(backbone_weights=str(tmp_path / "cls.pdparams"))
    src = classifier.backbone.state_dict()
    for k, v in det.backbone.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), src[k].numpy())
    with pytest.raises(ValueError, match="does not fit"):
        _tiny(backbone=dict(bb, base_channels=8), backbone_weights=str(tmp_path / "cls.pdparams"))


def test_no_detection_above_threshold_gives_empty_rows():
    model = _tiny(test={"score_thresh": 1.0})
    model.eval()
    with paddle.no_grad():
        out = model(_batch())
    assert list(out["bbox"].shape) == [0, 6] and out["bbox_num"].numpy().tolist() == [0, 0]
