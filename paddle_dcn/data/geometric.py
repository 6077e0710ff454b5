"""The built-in data: shapes under strong geometric distortion, generated, cached, no download.

Every image shows one filled shape of a class (triangle, square, star, cross, L, ...) under
a random rotation, scale (log-uniform over a 4x range by default: the same shape appears
tiny or filling the image), mild anisotropic stretch and shear, translation, then a smooth
elastic warp in the shape's own frame (the distortions of the STN paper's distorted-MNIST
experiments; the warp scales with the shape, so no size is torn beyond recognition), over a textured
background with low-contrast clutter strokes. The class is decided by the shape alone, so a
model must be robust to geometric variation: the setting deformable convolution is meant for
(what it measured: docs/results.md).

Determinism: sample ``i`` of split ``s`` is a pure function of ``(seed, s, i)`` and the
generator version, so every process and every machine produces the same bytes. The set is
written once to ``cache_dir`` (default ``$PDCN_DATA_HOME`` or ``~/.cache/paddle_dcn``) as an
``.npz`` (atomic write) and read from there afterwards.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..registry import DATASETS
from .transforms import Compose

GENERATOR_VERSION = 6
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
SUPERSAMPLE = 4


def _regular(n: int, r: float = 1.0, phase: float = 0.0) -> np.ndarray:
    a = phase + np.arange(n) * 2 * np.pi / n
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _star(n: int = 5, r_out: float = 1.0, r_in: float = 0.42) -> np.ndarray:
    a = -np.pi / 2 + np.arange(2 * n) * np.pi / n
    r = np.where(np.arange(2 * n) % 2 == 0, r_out, r_in)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _poly(points: List[List[float]]) -> np.ndarray:
    return np.asarray(points, dtype=np.float64)


# Each class: a list of (polygon, fill) drawn in order on the mask (fill 0 cuts a hole).
SHAPES: Dict[str, List[tuple]] = {
    "triangle": [(_regular(3, 1.0, -np.pi / 2), 255)],
    "square": [(_regular(4, 1.0, np.pi / 4), 255)],
    "pentagon": [(_regular(5, 1.0, -np.pi / 2), 255)],
    "star": [(_star(5), 255)],
    "cross": [(_poly([[-0.3, -1], [0.3, -1], [0.3, -0.3], [1, -0.3], [1, 0.3], [0.3, 0.3],
                      [0.3, 1], [-0.3, 1], [-0.3, 0.3], [-1, 0.3], [-1, -0.3], [-0.3, -0.3]]), 255)],
    "ell": [(_poly([[-0.8, -1], [-0.2, -1], [-0.2, 0.4], [0.8, 0.4], [0.8, 1], [-0.8, 1]]), 255)],
    "tee": [(_poly([[-1, -1], [1, -1], [1, -0.4], [0.3, -0.4], [0.3, 1], [-0.3, 1],
                    [-0.3, -0.4], [-1, -0.4]]), 255)],
    "arrow": [(_poly([[-1, -0.25], [0.1, -0.25], [0.1, -0.75], [1, 0], [0.1, 0.75], [0.1, 0.25],
                      [-1, 0.25]]), 255)],
    "ring": [(_regular(40, 1.0), 255), (_regular(40, 0.55), 0)],
    "crescent": [(_regular(40, 1.0), 255), (_regular(40, 0.85) + [0.45, 0.0], 0)],
    "hourglass": [(_poly([[-0.9, -1], [0.9, -1], [0.15, 0], [0.9, 1], [-0.9, 1], [-0.15, 0]]), 255)],
    "chevron": [(_poly([[-1, -0.9], [-0.3, -0.9], [0.7, 0], [-0.3, 0.9], [-1, 0.9], [0, 0]]), 255)],
}
CLASS_NAMES = list(SHAPES)


def _smooth_field(rng: np.random.Generator, size: int, grid: int) -> np.ndarray:
    """A smooth random field ``[size, size]`` in about [-1, 1] (bilinear upsampling of a grid)."""
    coarse = rng.uniform(-1, 1, size=(grid, grid)).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _bilinear(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Samples ``img [H, W, (C)]`` at float coordinates with border clamping."""
    h, w = img.shape[:2]
    ys = np.clip(ys, 0, h - 1)
    xs = np.clip(xs, 0, w - 1)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = ys - y0
    wx = xs - x0
    if img.ndim == 3:
        wy = wy[..., None]
        wx = wx[..., None]
    return (img[y0, x0] * (1 - wy) * (1 - wx) + img[y0, x1] * (1 - wy) * wx
            + img[y1, x0] * wy * (1 - wx) + img[y1, x1] * wy * wx)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Textured background ``[size, size, 3]`` float in [0, 1]: gratings + smooth noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    tex = np.zeros((size, size), np.float32)
    for _ in range(2):
        theta = rng.uniform(0, np.pi)
        freq = rng.uniform(2, 7)
        tex += np.sin(2 * np.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy) + rng.uniform(0, 6.3))
    tex = 0.5 * tex / 2 + 0.5 * _smooth_field(rng, size, 5)
    tex = (tex - tex.min()) / max(float(tex.max() - tex.min()), 1e-6)
    c0 = rng.uniform(0.0, 0.45, 3)  # darker than every shape (shapes are light)
    c1 = np.clip(c0 + rng.uniform(-0.2, 0.2, 3), 0, 0.5)
    return (c0 * (1 - tex[..., None]) + c1 * tex[..., None]).astype(np.float32)


DEFAULT_SCALE_RANGE = (0.25, 0.95)
DEFAULT_WARP_RANGE = (0.06, 0.16)
# Affine limits, mild enough that the class stays decidable (v5 used 0.45 / 0.6: squares and
# pentagons, tees and ells became indistinguishable, docs/results.md).
MAX_LOG_ASPECT = 0.25     # stretch up to e^0.25 = 1.28x along one axis
MAX_SHEAR = 0.3
WARP_GRID = 5             # coarse displacement grid nodes per axis...
WARP_SPAN = 1.5           # ...spanning +-1.5 shape radii around the shape centre


def _sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([GENERATOR_VERSION, seed, SPLIT_CODES[split], index])


def _draw_label_angle_scale(rng: np.random.Generator, num_classes: int, scale_range: tuple) -> tuple:
    """The first draws of every sample: ``(label, rotation angle, radius / half side)``."""
    label = int(rng.integers(num_classes))
    angle = rng.uniform(0, 2 * np.pi)
    radius_fraction = float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
    return label, angle, radius_fraction


def sample_scale(seed: int, split: str, index: int, num_classes: int,
                 scale_range: tuple = DEFAULT_SCALE_RANGE) -> float:
    """The shape radius of sample ``index`` as a fraction of half the image side (as rendered
    by :func:`render_sample`, before the stretch and warp), without rendering it."""
    return _draw_label_angle_scale(_sample_rng(seed, split, index), num_classes, scale_range)[2]


def render_sample(seed: int, split: str, index: int, image_size: int, num_classes: int,
                  scale_range: tuple = DEFAULT_SCALE_RANGE,
                  warp_range: tuple = DEFAULT_WARP_RANGE) -> tuple:
    """Sample ``index`` of ``split``: ``(image uint8 [S, S, 3], label int)``; pure function.

    ``scale_range``: the shape's radius as a fraction of half the image, drawn log-uniformly
    (so small and large shapes are equally common); ``warp_range``: the elastic displacement
    amplitude as a fraction of the shape radius (the warp scales with the shape)."""
    image, label, _ = _render(seed, split, index, image_size, num_classes, scale_range, warp_range)
    return image, label


def render_shape_mask(seed: int, split: str, index: int, image_size: int, num_classes: int,
                      scale_range: tuple = DEFAULT_SCALE_RANGE,
                      warp_range: tuple = DEFAULT_WARP_RANGE) -> np.ndarray:
    """The shape's coverage in sample ``index``: float32 ``[S, S]`` in [0, 1] (1 on the shape,
    fractional on its anti-aliased edge), exactly as :func:`render_sample` composites it."""
    return _render(seed, split, index, image_size, num_classes, scale_range, warp_range)[2].astype(np.float32)


def _render(seed: int, split: str, index: int, image_size: int, num_classes: int,
            scale_range: tuple, warp_range: tuple) -> tuple:
    """``(image uint8 [S, S, 3], label, shape coverage float32 [S, S])``."""
    rng = _sample_rng(seed, split, index)
    label, angle, radius_fraction = _draw_label_angle_scale(rng, num_classes, scale_range)
    s = image_size
    big = s * SUPERSAMPLE

    # Random affine: rotation, anisotropic scale, shear, translation.
    scale = radius_fraction * big / 2
    aspect = np.exp(rng.uniform(-MAX_LOG_ASPECT, MAX_LOG_ASPECT))
    shear = rng.uniform(-MAX_SHEAR, MAX_SHEAR)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    lin = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([aspect, 1 / aspect]) * scale
    room = max(big / 2 - scale * 1.1, 0.0)
    centre = big / 2 + rng.uniform(-room, room, size=2)

    mask_img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask_img)
    for poly, fill in SHAPES[CLASS_NAMES[label]]:
        pts = poly @ lin.T + centre
        draw.polygon([tuple(p) for p in pts], fill=fill)
    mask = np.asarray(mask_img.resize((s, s), Image.BOX), dtype=np.float32) / 255.0

    # Elastic warp, defined in the shape's own frame: a smooth field on a coarse grid spanning
    # +-WARP_SPAN shape radii around the centre, amplitude a fraction of the radius. The warp
    # therefore scales with the shape (a small shape is warped like a large one, not torn up).
    radius = scale / SUPERSAMPLE                      # shape radius in output pixels
    alpha = rng.uniform(warp_range[0], warp_range[1]) * radius
    coarse = rng.uniform(-1, 1, size=(2, WARP_GRID, WARP_GRID)).astype(np.float32)
    gy, gx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    cy, cx = centre[1] / SUPERSAMPLE, centre[0] / SUPERSAMPLE
    to_grid = (WARP_GRID - 1) / (2 * WARP_SPAN * radius)
    uy = (gy - cy) * to_grid + (WARP_GRID - 1) / 2
    ux = (gx - cx) * to_grid + (WARP_GRID - 1) / 2
    dy = _bilinear(coarse[0], uy, ux) * alpha
    dx = _bilinear(coarse[1], uy, ux) * alpha
    mask = _bilinear(mask, gy - 0.5 + dy, gx - 0.5 + dx)

    bg = _background(rng, s)
    # Clutter: a few low-contrast strokes on the background.
    clutter = Image.new("L", (s, s), 0)
    cdraw = ImageDraw.Draw(clutter)
    for _ in range(int(rng.integers(1, 4))):
        p = rng.uniform(0, s, size=4)
        cdraw.line([tuple(p[:2]), tuple(p[2:])], fill=255, width=1)
    cmask = np.asarray(clutter, np.float32)[..., None] / 255.0 * rng.uniform(0.2, 0.5)
    bg = bg * (1 - cmask) + rng.uniform(0.3, 1, 3) * cmask

    # Foreground colour clearly different from the background's mean.
    fg = rng.uniform(0.65, 1.0, 3)
    fg_tex = fg * (0.85 + 0.15 * _smooth_field(rng, s, 6)[..., None])
    img = bg * (1 - mask[..., None]) + np.clip(fg_tex, 0, 1) * mask[..., None]
    img = img + rng.normal(0, 0.02, size=img.shape)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), label, mask


def default_cache_dir() -> str:
    return os.environ.get("PDCN_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache", "paddle_dcn"
    )


def generate(seed: int, split: str, num_samples: int, image_size: int, num_classes: int,
             scale_range: tuple = DEFAULT_SCALE_RANGE,
             warp_range: tuple = DEFAULT_WARP_RANGE) -> tuple:
    images = np.empty((num_samples, image_size, image_size, 3), np.uint8)
    labels = np.empty((num_samples,), np.int64)
    for i in range(num_samples):
        images[i], labels[i] = render_sample(seed, split, i, image_size, num_classes,
                                             scale_range, warp_range)
    return images, labels


@DATASETS.register()
class GeometricShapes:
    """The built-in classification set (see the module doc).

    Args:
        split: 'train', 'val' or 'test' (independent samples).
        num_samples: images in the split.
        image_size: side S of the square RGB images.
        num_classes: how many of the shape classes to use (2..len(CLASS_NAMES)).
        seed: generator seed (a different seed is a different data set).
        scale_range: [min, max] shape radius as a fraction of half the image side, drawn
            log-uniformly; 0 < min <= max <= 1.
        warp_range: [min, max] elastic displacement amplitude as a fraction of the shape's
            radius (the warp is defined in the shape's frame, so it scales with the shape).
        cache_dir: where the ``.npz`` goes; default ``$PDCN_DATA_HOME`` or ~/.cache/paddle_dcn.
        transforms: list of transform configs applied to the HWC uint8 image.

    Items: ``{'image': float32 [3, S, S] (after transforms), 'label': int64}``.
    """

    def __init__(
        self,
        split: str = "train",
        num_samples: int = 10000,
        image_size: int = 48,
        num_classes: int = 10,
        seed: int = 0,
        scale_range: Sequence[float] = DEFAULT_SCALE_RANGE,
        warp_range: Sequence[float] = DEFAULT_WARP_RANGE,
        cache_dir: Optional[str] = None,
        transforms: Optional[List[Dict[str, Any]]] = None,
    ) -> None:
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {list(SPLIT_CODES)}, got {split!r}")
        if not 2 <= int(num_classes) <= len(CLASS_NAMES):
            raise ValueError(f"num_classes must be in [2, {len(CLASS_NAMES)}], got {num_classes}")
        if int(num_samples) < 1 or int(image_size) < 8:
            raise ValueError(f"need num_samples >= 1 and image_size >= 8, got {num_samples}, {image_size}")
        scale_range = tuple(float(v) for v in scale_range)
        warp_range = tuple(float(v) for v in warp_range)
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1] <= 1:
            raise ValueError(f"scale_range must be [min, max] with 0 < min <= max <= 1, got {scale_range}")
        if len(warp_range) != 2 or not 0 <= warp_range[0] <= warp_range[1] <= 1:
            raise ValueError(f"warp_range must be [min, max] with 0 <= min <= max <= 1, got {warp_range}")
        self.scale_range, self.warp_range = scale_range, warp_range
        self.split, self.num_samples = split, int(num_samples)
        self.image_size, self.num_classes, self.seed = int(image_size), int(num_classes), int(seed)
        self.class_names = CLASS_NAMES[: self.num_classes]
        self.class_source = f"GeometricShapes split={split}: num_classes={self.num_classes}"
        self.cache_dir = cache_dir or default_cache_dir()
        self.transforms = Compose(transforms or [])
        self.images, self.labels = self._load_or_generate()

    @staticmethod
    def class_names_from_args(num_classes: int = 10, **_: Any) -> List[str]:
        """The ``class_names`` of a set with these arguments (nothing is generated)."""
        return CLASS_NAMES[: int(num_classes)]

    def cache_path(self) -> str:
        key = json.dumps([GENERATOR_VERSION, self.seed, self.split, self.num_samples,
                          self.image_size, self.num_classes, list(self.scale_range),
                          list(self.warp_range)])
        digest = hashlib.sha1(key.encode()).hexdigest()[:12]
        return os.path.join(self.cache_dir, f"geometric_shapes_{self.split}_{digest}.npz")

    def _load_or_generate(self) -> tuple:
        path = self.cache_path()
        if os.path.isfile(path):
            with np.load(path) as data:
                return data["images"], data["labels"]
        images, labels = generate(self.seed, self.split, self.num_samples, self.image_size,
                                  self.num_classes, self.scale_range, self.warp_range)
        os.makedirs(self.cache_dir, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(tmp, images=images, labels=labels)
        os.replace(tmp, path)
        return images, labels

    def shape_scales(self) -> np.ndarray:
        """``float64 [num_samples]``: each sample's shape radius as a fraction of half the image
        side (the size the model must cope with; see ``tools/accuracy_by_scale.py``)."""
        return np.array([sample_scale(self.seed, self.split, i, self.num_classes, self.scale_range)
                         for i in range(self.num_samples)])

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> Dict[str, Any]:
        return {"image": self.transforms(self.images[index]), "label": np.int64(self.labels[index])}
