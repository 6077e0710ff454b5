"""The detection losses, targets, decoding and metric agree: a tiny Faster R-CNN overfits 8
built-in images to a high AP50 (slow: ~1 min)."""
import numpy as np
import paddle
import pytest

import paddle_dcn.engine  # noqa: F401 - registers COCOMetric
import paddle_dcn.models  # noqa: F401
from paddle_dcn.engine.trainer import seed_everything
from paddle_dcn.registry import DATASETS, METRICS, MODELS, build


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["RoIAlign", "ModulatedDeformRoIPoolPack"])
def test_faster_rcnn_overfits_eight_images(tmp_path, kind):
    seed_everything(0)
    tf = [{"type": "ResizeKeepRatio", "target_size": 64, "max_size": 80},
          {"type": "Normalize", "mean": [0.5] * 3, "std": [0.25] * 3}, {"type": "ToCHW"}]
    ds = build(DATASETS, {"type": "ShapesDetection", "split": "train", "num_images": 8, "image_size": 64,
                          "num_classes": 3, "max_objects": 3, "cache_dir": str(tmp_path), "transforms": tf})
    model = build(MODELS, {
        "type": "FasterRCNN", "num_classes": 3,
        "backbone": {"type": "ResNet", "depth": 18, "base_channels": 8, "out_stages": [2, 3, 4, 5]},
        "neck": {"out_channels": 32},
        "rpn": {"anchor_sizes": [[8], [16], [32], [64], [128]], "feat_channels": 32, "train_post_nms_top_n": 128,
                "test_post_nms_top_n": 64, "batch_size_per_im": 128},
        "roi_sampling": {"batch_size_per_im": 64}, "roi_extractor": {"kind": kind, "fc_channels": 64},
        "bbox_head": {"hidden": 128}})
    iters = 250
    sched = paddle.optimizer.lr.CosineAnnealingDecay(0.02, iters)
    opt = paddle.optimizer.Momentum(sched, momentum=0.9, parameters=model.parameters(), weight_decay=1e-4,
                                    grad_clip=paddle.nn.ClipGradByGlobalNorm(10.0))
    batches = [{k: paddle.to_tensor(v) for k, v in ds.collate_fn([ds[i] for i in range(j, j + 4)]).items()}
               for j in (0, 4)]
    model.train()
    for it in range(iters):
        loss = model(batches[it % 2])["loss"]
        loss.backward()
        opt.step()
        opt.clear_grad()
        sched.step()
    assert np.isfinite(float(loss)) and float(loss) < 0.2
    metric = build(METRICS, {"type": "COCOMetric", "print_table": False})
    metric.bind_dataset(ds)
    model.eval()
    with paddle.no_grad():
        for b in batches:
            metric.update(model(b), b)
    result = metric.accumulate()
    assert result["AP50"] > 80 and result["AP"] > 50, result
