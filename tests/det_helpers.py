"""Shared by the detection pipeline tests (not a test module)."""


def tiny_overrides(cache: str, epochs: int = 2) -> list:
    """Shrinks a detection config to seconds: 12 train / 6 val images of ~64 px, ResNet-18 of
    width 8, 16-channel FPN, small heads; every detection kept (score_thresh 0)."""
    o = [f"epochs={epochs}", "eval_interval=1", "log_interval=1", "loader.batch_size=4", "loader.eval_batch_size=3",
         "model.backbone.depth=18", "model.backbone.base_channels=8", "model.neck.out_channels=16",
         "model.rpn.feat_channels=16", "model.test.score_thresh=0.0", "model.test.max_det=20",
         "visualdl.num_images=1"]
    for split, n in (("train", 12), ("eval", 6)):
        o += [f"{split}_dataset.num_images={n}", f"{split}_dataset.image_size=64", f"{split}_dataset.cache_dir={cache}",
              f"{split}_dataset.transforms.0.target_size=64", f"{split}_dataset.transforms.0.max_size=80"]
    return o
