"""COCO-json loading against a small hand-written annotation file; bad-annotation handling;
detection transforms and batch padding."""
import copy
import json
import logging

import numpy as np
import pytest
from PIL import Image

from paddle_dcn.data.coco import COCODetection, COCOAnnotations
from paddle_dcn.data.det_transforms import RandomFlip, ResizeKeepRatio, collate_detection
from paddle_dcn.data.loader import build_dataloader

ANN = {
    "images": [{"id": 7, "file_name": "a.png", "height": 40, "width": 60},
               {"id": 9, "file_name": "sub/b.png", "height": 30, "width": 20},
               {"id": 11, "file_name": "empty.png", "height": 10, "width": 10}],
    "categories": [{"id": 5, "name": "star"}, {"id": 2, "name": "ring"}],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 5, "bbox": [10, 5, 20, 10], "area": 200, "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 2, "bbox": [50, 30, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 3, "image_id": 9, "category_id": 2, "bbox": [0, 0, 4, 6], "area": 24, "iscrowd": 0},
    ],
}


def _write(tmp_path, ann):
    (tmp_path / "img" / "sub").mkdir(parents=True, exist_ok=True)
    for img in ann["images"]:
        path = tmp_path / "img" / img["file_name"]
        if not path.exists():
            rng = np.random.default_rng(img["id"])
            Image.fromarray(rng.integers(0, 255, (img["height"], img["width"], 3), dtype=np.uint8)).save(path)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(ann))
    return str(path), str(tmp_path / "img")


def test_parses_hand_written_file(tmp_path):
    ann_file, img_dir = _write(tmp_path, ANN)
    ann = COCOAnnotations(ann_file, img_dir)
    assert ann.cat_ids == [2, 5] and ann.class_names == ["ring", "star"]  # ascending category id
    recs = {r["id"]: r for r in ann.records}
    assert set(recs) == {7, 9, 11}
    # [x, y, w, h] -> (x1, y1, x2, y2); the second box is clipped to the 60x40 image
    np.testing.assert_allclose(recs[7]["boxes"], [[10, 5, 30, 15], [50, 30, 60, 40]])
    np.testing.assert_array_equal(recs[7]["classes"], [1, 0])
    np.testing.assert_allclose(recs[9]["boxes"], [[0, 0, 4, 6]])
    assert len(recs[11]["boxes"]) == 0 and not ann.skipped


def test_dataset_items_resize_normalise_and_batch(tmp_path):
    ann_file, img_dir = _write(tmp_path, ANN)
    tf = [{"type": "ResizeKeepRatio", "target_size": 20, "max_size": 45},
          {"type": "Normalize", "mean": [0.5] * 3, "std": [0.5] * 3}, {"type": "ToCHW"}]
    ds = COCODetection(ann_file, img_dir, tf, skip_empty=True, size_divisor=16)
    assert len(ds) == 2 and ds.num_classes == 2
    item = ds[0]  # 60x40 -> short side 20 would give 30x20, long side 30 <= 45: scale 0.5
    assert item["image"].shape == (3, 20, 30) and item["image"].dtype == np.float32
    np.testing.assert_allclose(item["gt_boxes"], [[5, 2.5, 15, 7.5], [25, 15, 30, 20]])
    np.testing.assert_allclose(item["scale_factor"], [0.5, 0.5])
    raw = np.asarray(Image.open(tmp_path / "img" / "a.png").convert("RGB").resize((30, 20), Image.BILINEAR))
    np.testing.assert_allclose(item["image"], (raw.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5, atol=1e-5)
    item2 = ds[1]  # 20x30 (w x h): short side 20 -> scale 1.0 (long 30 <= 45)
    assert item2["image"].shape == (3, 30, 20)
    batch = ds.collate_fn([item, item2])
    assert batch["image"].shape == (2, 3, 32, 32)  # max 30 -> padded to a multiple of 16
    np.testing.assert_array_equal(batch["image"][0, :, 20:], 0)
    np.testing.assert_allclose(batch["im_shape"], [[20, 30], [30, 20]])
    np.testing.assert_array_equal(batch["gt_num"], [2, 1])
    np.testing.assert_array_equal(batch["gt_classes"], [[1, 0], [0, -1]])
    np.testing.assert_array_equal(batch["im_id"], [7, 9])
    loader = build_dataloader(ds, 2, shuffle=False, drop_last=False)
    (b,) = list(loader)
    assert list(b["image"].shape) == [2, 3, 32, 32] and list(b["gt_boxes"].shape) == [2, 2, 4]


def test_resize_caps_long_side_and_flip_moves_boxes():
    sample = {"image": np.zeros((10, 100, 3), np.uint8), "gt_boxes": np.array([[10, 2, 30, 8]], np.float32),
              "scale_factor": np.ones(2, np.float32)}
    out = ResizeKeepRatio(50, 60)(sample)  # short side 50 would make the long 500 > 60: scale 0.6
    assert out["image"].shape == (6, 60, 3)
    np.testing.assert_allclose(out["gt_boxes"], [[6, 1.2, 18, 4.8]], rtol=1e-5)
    np.testing.assert_allclose(out["scale_factor"], [0.6, 0.6])
    img = np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3)
    flipped = RandomFlip(prob=1.0)({"image": img, "gt_boxes": np.array([[1, 0, 3, 2]], np.float32)})
    np.testing.assert_array_equal(flipped["image"], img[:, ::-1])
    np.testing.assert_allclose(flipped["gt_boxes"], [[2, 0, 4, 2]])
    same = RandomFlip(prob=0.0)({"image": img, "gt_boxes": np.array([[1, 0, 3, 2]], np.float32)})
    np.testing.assert_array_equal(same["image"], img)


def test_geometric_image_only_transform_is_refused(tmp_path):
    ann_file, img_dir = _write(tmp_path, ANN)
    with pytest.raises(ValueError, match="without the boxes"):
        COCODetection(ann_file, img_dir, [{"type": "RandomCrop", "size": 8}])


def test_collate_pads_images_without_boxes():
    items = [{"image": np.ones((3, 5, 7), np.float32), "gt_boxes": np.zeros((0, 4), np.float32),
              "gt_classes": np.zeros(0, np.int64), "im_id": 1, "scale_factor": np.ones(2, np.float32)}]
    b = collate_detection(items, 4)
    assert b["image"].shape == (1, 3, 8, 8) and b["gt_boxes"].shape == (1, 1, 4) and b["gt_num"][0] == 0


def _bad(**changes):
    ann = copy.deepcopy(ANN)
    for key, value in changes.items():
        ann[key] = value
    return ann


@pytest.mark.parametrize("annotation, reason", [
    ({"id": 4, "image_id": 7, "category_id": 5}, "missing keys"),
    ({"id": 4, "image_id": 7, "bbox": [1, 1, 2, 2]}, "missing keys"),
    ({"id": 4, "image_id": 7, "category_id": 5, "bbox": [1, 1, 0, 2]}, "zero or negative box size"),
    ({"id": 4, "image_id": 7, "category_id": 5, "bbox": [1, 1, 3, -2]}, "zero or negative box size"),
    ({"id": 4, "image_id": 7, "category_id": 5, "bbox": [70, 1, 3, 2]}, "zero or negative box size"),  # off the image
    ({"id": 4, "image_id": 7, "category_id": 5, "bbox": [1, 1, "a", 2]}, "bad bbox"),
    ({"id": 4, "image_id": 7, "category_id": 5, "bbox": [1, 1, float("nan"), 2]}, "bad bbox"),
    ({"id": 4, "image_id": 7, "category_id": 5, "bbox": [1, 1, 2]}, "bad bbox"),
    ({"id": 4, "image_id": 99, "category_id": 5, "bbox": [1, 1, 2, 2]}, "unknown image_id"),
    ({"id": 4, "image_id": 7, "category_id": 3, "bbox": [1, 1, 2, 2]}, "unknown category_id"),
])
def test_bad_annotation_is_counted_logged_skip_or_strict_error(tmp_path, caplog, annotation, reason):
    ann_file, img_dir = _write(tmp_path, _bad(annotations=ANN["annotations"] + [annotation]))
    logging.getLogger("paddle_dcn").propagate = True
    with caplog.at_level(logging.WARNING, logger="paddle_dcn"):
        parsed = COCOAnnotations(ann_file, img_dir)
    assert dict(parsed.skipped) == {reason: 1}
    assert f"1 x {reason}" in caplog.text
    # the good annotations are all still there, unchanged
    assert sum(len(r["boxes"]) for r in parsed.records) == 3
    with pytest.raises(ValueError, match=r"annotations\[3\]"):
        COCOAnnotations(ann_file, img_dir, strict=True)


def test_missing_image_file_is_skipped_or_strict_error(tmp_path):
    ann_file, img_dir = _write(tmp_path, ANN)
    (tmp_path / "img" / "sub" / "b.png").unlink()
    parsed = COCOAnnotations(ann_file, img_dir)
    assert dict(parsed.skipped) == {"image file missing": 1}
    assert sorted(r["id"] for r in parsed.records) == [7, 11]
    with pytest.raises(ValueError, match="b.png does not exist"):
        COCOAnnotations(ann_file, img_dir, strict=True)


def test_crowd_boxes_are_counted_not_trained(tmp_path):
    crowd = {"id": 4, "image_id": 7, "category_id": 5, "bbox": [1, 1, 5, 5], "iscrowd": 1}
    ann_file, img_dir = _write(tmp_path, _bad(annotations=ANN["annotations"] + [crowd]))
    parsed = COCOAnnotations(ann_file, img_dir)
    assert dict(parsed.skipped) == {"crowd (not trained on)": 1}


@pytest.mark.parametrize("ann, match", [
    ({"images": [], "annotations": []}, "'categories'"),
    ({"images": {}, "annotations": [], "categories": []}, "'images'"),
    (_bad(images=[{"id": 1}]), r"images\[0\] has no 'file_name'"),
    (_bad(categories=[{"id": 1}]), r"categories\[0\] has no 'name'"),
    (_bad(categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]), "duplicate id 1"),
    (_bad(images=[{"id": "x", "file_name": "a.png"}]), "id must be an integer"),
    ([], "JSON object"),
])
def test_structural_errors_name_the_key(tmp_path, ann, match):
    _write(tmp_path, ANN)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(ann))
    with pytest.raises(ValueError, match=match):
        COCOAnnotations(str(path), str(tmp_path / "img"))


def test_not_json_and_missing_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        COCOAnnotations(str(path), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        COCOAnnotations(str(tmp_path / "nope.json"), str(tmp_path))


def test_no_usable_images_is_an_error(tmp_path):
    ann_file, img_dir = _write(tmp_path, _bad(annotations=[]))
    with pytest.raises(ValueError, match="no usable images"):
        COCODetection(ann_file, img_dir, skip_empty=True)


def test_image_size_disagreeing_with_annotation_is_an_error(tmp_path):
    ann_file, img_dir = _write(tmp_path, ANN)
    Image.fromarray(np.zeros((41, 60, 3), np.uint8)).save(tmp_path / "img" / "a.png")
    ds = COCODetection(ann_file, img_dir)
    with pytest.raises(ValueError, match="a.png: the image is 41x60 .* says 40x60"):
        ds[0]
