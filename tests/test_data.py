"""Built-in data determinism and caching, samplers, transforms, folder/list datasets."""
import os

import numpy as np
import pytest
from PIL import Image

from paddle_dcn.data import EpochBatchSampler, GeometricShapes, ImageFolder, ImageList
from paddle_dcn.data.geometric import render_sample
from paddle_dcn.data.transforms import CenterCrop, Compose, Normalize, RandomCrop, ToCHW


def test_geometric_shapes_deterministic_and_cached(tmp_path):
    a = GeometricShapes("train", num_samples=24, image_size=20, num_classes=6, cache_dir=str(tmp_path / "a"))
    b = GeometricShapes("train", num_samples=24, image_size=20, num_classes=6, cache_dir=str(tmp_path / "b"))
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.images.shape == (24, 20, 20, 3) and a.images.dtype == np.uint8
    assert set(a.labels.tolist()) <= set(range(6)) and len(set(a.labels.tolist())) > 2
    # sample i is a pure function of (seed, split, i): independent of the set's size
    img, label = render_sample(0, "train", 5, 20, 6)
    np.testing.assert_array_equal(img, a.images[5])
    assert label == a.labels[5]
    # cached: the second build reads the file, and a changed file is what comes back
    path = a.cache_path()
    assert os.path.isfile(path)
    with np.load(path) as data:
        images, labels = data["images"].copy(), data["labels"]
    images[0] = 7
    np.savez(path, images=images, labels=labels)
    c = GeometricShapes("train", num_samples=24, image_size=20, num_classes=6, cache_dir=str(tmp_path / "a"))
    assert (c.images[0] == 7).all()


def test_geometric_shapes_splits_and_seeds_differ(tmp_path):
    kw = dict(num_samples=8, image_size=16, num_classes=4, cache_dir=str(tmp_path))
    train = GeometricShapes("train", **kw)
    val = GeometricShapes("val", **kw)
    other = GeometricShapes("train", seed=1, **kw)
    assert not np.array_equal(train.images, val.images)
    assert not np.array_equal(train.images, other.images)
    item = GeometricShapes("train", transforms=[{"type": "Normalize", "mean": [0.5] * 3, "std": [0.25] * 3},
                                                {"type": "ToCHW"}], **kw)[3]
    expected = ((train.images[3] / 255.0 - 0.5) / 0.25).transpose(2, 0, 1)
    np.testing.assert_allclose(item["image"], expected, rtol=1e-6, atol=1e-6)
    assert item["label"] == train.labels[3]
    with pytest.raises(ValueError, match="split"):
        GeometricShapes("training", **kw)
    with pytest.raises(ValueError, match="num_classes"):
        GeometricShapes("train", num_samples=8, image_size=16, num_classes=99, cache_dir=str(tmp_path))


def test_sampler_splits_global_batches_across_processes():
    one = list(EpochBatchSampler(50, 8, shuffle=True, seed=4, rank=0, world_size=1))
    ranks = [list(EpochBatchSampler(50, 4, shuffle=True, seed=4, rank=r, world_size=2)) for r in range(2)]
    assert len(one) == len(ranks[0]) == len(ranks[1]) == 6
    for b, batch in enumerate(one):
        assert batch == ranks[0][b] + ranks[1][b]
    s = EpochBatchSampler(50, 8, shuffle=True, seed=4)
    s.set_epoch(1)
    assert list(s) != one  # a new order each epoch
    assert len(set(sum(list(s), []))) == 48


def test_eval_sampler_visits_every_sample_once():
    for world in (1, 2, 3):
        seen = []
        for r in range(world):
            sampler = EpochBatchSampler(23, 4, shuffle=False, rank=r, world_size=world, drop_last=False)
            batches = list(sampler)
            assert len(batches) == len(sampler)
            seen += sum(batches, [])
        assert sorted(seen) == list(range(23))


def test_transforms_numbers():
    img = (np.arange(5 * 6 * 3) % 256).astype(np.uint8).reshape(5, 6, 3)
    out = Compose([{"type": "Normalize", "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.5, 0.5]}, {"type": "ToCHW"}])(img)
    ref = ((img.astype(np.float64) / 255 - [0.1, 0.2, 0.3]) / 0.5).transpose(2, 0, 1)
    assert out.shape == (3, 5, 6) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5)
    np.testing.assert_array_equal(CenterCrop(3)(img), img[1:4, 1:4])
    np.random.seed(0)
    crop = RandomCrop(4, padding=1)(img)
    assert crop.shape == (4, 4, 3)
    assert ToCHW()(np.zeros((2, 3), np.float32)).shape == (1, 2, 3)
    assert Normalize()(img).dtype == np.float32


def _save(path, color):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((6, 5, 3), color, np.uint8)).save(path)


def test_image_folder_and_list(tmp_path):
    _save(str(tmp_path / "cat" / "a.png"), 10)
    _save(str(tmp_path / "cat" / "b.png"), 20)
    _save(str(tmp_path / "dog" / "c.png"), 30)
    folder = ImageFolder(str(tmp_path), transforms=[{"type": "ToCHW"}])
    assert folder.class_names == ["cat", "dog"] and len(folder) == 3
    item = folder[2]
    assert item["label"] == 1 and item["image"].shape == (3, 6, 5) and item["image"][0, 0, 0] == 30
    lst = tmp_path / "list.txt"
    lst.write_text("dog/c.png 1\ncat/a.png 0\n\n")
    listed = ImageList(str(lst), root=str(tmp_path))
    assert len(listed) == 2 and listed[0]["label"] == 1 and listed[0]["image"][0, 0, 0] == 30
    lst.write_text("dog/c.png one\n")
    with pytest.raises(ValueError, match="not an integer"):
        ImageList(str(lst), root=str(tmp_path))
    with pytest.raises(FileNotFoundError):
        ImageFolder(str(tmp_path / "nope"))


def test_geometric_shapes_scale_and_warp_ranges(tmp_path):
    """scale_range sets the shape size: tiny shapes light far fewer pixels than large ones;
    the ranges are part of the cache key and are validated."""
    kw = dict(num_samples=16, image_size=32, num_classes=4, cache_dir=str(tmp_path))
    small = GeometricShapes("train", scale_range=[0.2, 0.22], warp_range=[0.0, 0.0], **kw)
    large = GeometricShapes("train", scale_range=[0.9, 0.95], warp_range=[0.0, 0.0], **kw)
    assert small.cache_path() != large.cache_path()

    def lit_fraction(images):  # the shapes are lighter than every background (>= 0.65 vs <= 0.5)
        return float((images.min(axis=-1) > 0.6 * 255).mean())

    # area grows with the square of the radius: (0.9 / 0.22)^2 ~ 17
    assert lit_fraction(large.images) > 6 * lit_fraction(small.images) > 0
    np.testing.assert_array_equal(small.labels, large.labels)  # same draws, other geometry
    for bad in ([0.0, 0.5], [0.6, 0.5], [0.5, 1.2], [0.5]):
        with pytest.raises(ValueError, match="scale_range"):
            GeometricShapes("train", scale_range=bad, **kw)
    with pytest.raises(ValueError, match="warp_range"):
        GeometricShapes("train", warp_range=[0.2, 0.1], **kw)


def test_geometric_shapes_warp_scales_with_the_shape(tmp_path):
    """v6: the elastic warp lives in the shape's frame, so it displaces a tiny shape by as
    many of its own radii as a large one (v5's image-relative warp tore small shapes apart)."""
    kw = dict(num_samples=24, image_size=48, num_classes=10, cache_dir=str(tmp_path))

    def lit(scale, warp):
        ds = GeometricShapes("train", scale_range=[scale, scale], warp_range=[warp, warp], **kw)
        return ds.images.min(axis=-1) > 0.6 * 255  # shapes are lighter than every background

    def mean_iou(a, b):
        inter = (a & b).sum(axis=(1, 2))
        union = (a | b).sum(axis=(1, 2))
        return float(np.mean(inter / np.maximum(union, 1)))

    iou = {scale: mean_iou(lit(scale, 0.0), lit(scale, 0.35)) for scale in (0.3, 0.9)}
    assert 0.3 < iou[0.3] < 0.95 and 0.3 < iou[0.9] < 0.95  # the warp moves the shape, but not off
    assert abs(iou[0.3] - iou[0.9]) < 0.15, iou             # and by the same relative amount


def test_shape_scales_are_the_rendered_sizes(tmp_path):
    """shape_scales() reads the radius each sample was drawn with, without rendering: it lies in
    scale_range and orders the samples by lit area (area ~ radius^2)."""
    ds = GeometricShapes("train", num_samples=40, image_size=48, num_classes=10, cache_dir=str(tmp_path))
    scales = ds.shape_scales()
    assert scales.shape == (40,) and scales.min() >= 0.25 and scales.max() <= 0.95
    # backgrounds are <= 0.5 in every channel; shapes mostly above (their texture dips lower)
    lit = (ds.images.min(axis=-1) > 0.5 * 255).sum(axis=(1, 2)).astype(float)
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    assert np.corrcoef(rank(scales), rank(lit))[0, 1] > 0.8  # Spearman rank correlation
