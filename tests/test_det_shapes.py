"""The built-in detection set: COCO files written once, deterministic, sane boxes."""
import json
import os

import numpy as np
import pytest

from paddle_dcn.data import shapes_det
from paddle_dcn.data.shapes_det import ShapesDetection, render_image


def test_generated_once_cached_and_deterministic(tmp_path, monkeypatch):
    a = ShapesDetection("val", num_images=6, image_size=48, num_classes=3, max_objects=3, cache_dir=str(tmp_path / "a"))
    b = ShapesDetection("val", num_images=6, image_size=48, num_classes=3, max_objects=3, cache_dir=str(tmp_path / "b"))
    ja = json.load(open(os.path.join(a.directory, "annotations.json")))
    jb = json.load(open(os.path.join(b.directory, "annotations.json")))
    assert ja == jb and len(ja["images"]) == 6 and len(ja["annotations"]) >= 6
    for img in ja["images"]:
        with open(os.path.join(a.directory, "images", img["file_name"]), "rb") as fa, \
                open(os.path.join(b.directory, "images", img["file_name"]), "rb") as fb:
            assert fa.read() == fb.read()
    other = ShapesDetection("train", num_images=2, image_size=48, num_classes=3, max_objects=3, cache_dir=str(tmp_path / "a"))
    assert other.directory != a.directory
    monkeypatch.setattr(shapes_det, "write_coco", lambda *a, **k: pytest.fail("regenerated a cached set"))
    again = ShapesDetection("val", num_images=6, image_size=48, num_classes=3, max_objects=3, cache_dir=str(tmp_path / "a"))
    assert len(again) == 6 and again.class_names == ["triangle", "square", "pentagon"]


def test_boxes_cover_visible_pixels_and_vary():
    sizes, counts, aspects = [], [], []
    for i in range(30):
        image, boxes, classes = render_image(0, "train", i, 96, 6, 4)
        h, w = image.shape[:2]
        assert 0.8 * 96 < np.sqrt(h * w) < 1.2 * 96
        assert len(boxes) == len(classes) and ((classes >= 0) & (classes < 6)).all()
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
        sizes += list(np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        aspects += list((boxes[:, 3] - boxes[:, 1]) / (boxes[:, 2] - boxes[:, 0]))
        counts.append(len(boxes))
    assert max(counts) >= 3 and min(counts) <= 2  # several objects per image, varying
    assert max(sizes) > 2.5 * min(sizes)  # varied scale
    assert max(aspects) > 1.5 and min(aspects) < 1 / 1.5  # varied aspect ratio
    np.testing.assert_array_equal(render_image(0, "train", 3, 96, 6, 4)[0], render_image(0, "train", 3, 96, 6, 4)[0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        ShapesDetection("dev")
    with pytest.raises(ValueError, match="num_classes"):
        ShapesDetection(num_classes=1)
