"""Image transforms on HWC numpy arrays (uint8 in, float32 CHW out at the end of a pipeline).

Each transform is a registered class with a plain constructor and ``__call__(image)``.
Random transforms draw from ``numpy.random`` (the trainer seeds it and restores it on
resume). A typical pipeline: ``RandomResizedCrop`` / ``RandomCrop`` / ``RandomHorizontalFlip``
-> ``Normalize`` (uint8 -> float32, ``(x/255 - mean) / std``) -> ``ToCHW``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Union

import numpy as np
from PIL import Image

from ..registry import TRANSFORMS, build

IntOrPair = Union[int, Sequence[int]]


def _pair(size: IntOrPair) -> tuple:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _resize(image: np.ndarray, size_hw: tuple) -> np.ndarray:
    h, w = size_hw
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


class Compose:
    """Applies the transforms built from ``cfgs`` (list of ``{'type': ..., ...}``) in order."""

    def __init__(self, cfgs: List[Dict[str, Any]]) -> None:
        self.transforms = [build(TRANSFORMS, c) if isinstance(c, dict) else c for c in cfgs]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        for t in self.transforms:
            image = t(image)
        return image

    def size_effect(self) -> str:
        """What the pipeline does to the image's H x W: ``'keep'`` (every transform keeps it),
        ``'fix'`` (the last one that changes it makes a fixed size), ``'vary'`` (it depends on
        the input, e.g. ``Resize(short_side=True)`` last) or ``'unknown'`` (a transform without
        a ``size_effect``). Each transform says its own in ``size_effect``."""
        state = "keep"
        for t in self.transforms:
            effect = getattr(t, "size_effect", None)
            if effect not in ("keep", "fix", "vary"):
                return "unknown"
            if effect != "keep":
                state = effect
        return state

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


@TRANSFORMS.register()
class Resize:
    """Resizes to ``size`` (int: square; [h, w]); ``short_side=True`` scales the short side."""

    def __init__(self, size: IntOrPair, short_side: bool = False) -> None:
        self.size, self.short_side = size, short_side
        self.size_effect = "vary" if short_side else "fix"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.short_side:
            h, w = image.shape[:2]
            s = int(self.size) / min(h, w)
            return _resize(image, (max(1, round(h * s)), max(1, round(w * s))))
        return _resize(image, _pair(self.size))


@TRANSFORMS.register()
class CenterCrop:
    """Crops the central ``size`` region (pads with zeros when the image is smaller)."""

    size_effect = "fix"

    def __init__(self, size: IntOrPair) -> None:
        self.size = _pair(size)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        th, tw = self.size
        h, w = image.shape[:2]
        if h < th or w < tw:
            pad = ((max(0, (th - h + 1) // 2),) * 2, (max(0, (tw - w + 1) // 2),) * 2)
            image = np.pad(image, pad + ((0, 0),) * (image.ndim - 2))
            h, w = image.shape[:2]
        top, left = (h - th) // 2, (w - tw) // 2
        return image[top: top + th, left: left + tw]


@TRANSFORMS.register()
class RandomCrop:
    """Pads by ``padding`` (reflect) and crops a random ``size`` region."""

    size_effect = "fix"

    def __init__(self, size: IntOrPair, padding: int = 0) -> None:
        self.size, self.padding = _pair(size), int(padding)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.padding:
            p = self.padding
            image = np.pad(image, ((p, p), (p, p)) + ((0, 0),) * (image.ndim - 2), mode="reflect")
        th, tw = self.size
        h, w = image.shape[:2]
        if h < th or w < tw:
            raise ValueError(f"RandomCrop: image {h}x{w} is smaller than size {th}x{tw}")
        top = np.random.randint(0, h - th + 1)
        left = np.random.randint(0, w - tw + 1)
        return image[top: top + th, left: left + tw]


@TRANSFORMS.register()
class RandomResizedCrop:
    """Crops a random region (area fraction in ``scale``, aspect in ``ratio``), resizes to ``size``."""

    size_effect = "fix"

    def __init__(self, size: IntOrPair, scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3)) -> None:
        self.size, self.scale, self.ratio = _pair(size), tuple(scale), tuple(ratio)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        area = h * w
        for _ in range(10):
            target = area * np.random.uniform(*self.scale)
            aspect = np.exp(np.random.uniform(np.log(self.ratio[0]), np.log(self.ratio[1])))
            cw = int(round(np.sqrt(target * aspect)))
            ch = int(round(np.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                top = np.random.randint(0, h - ch + 1)
                left = np.random.randint(0, w - cw + 1)
                return _resize(image[top: top + ch, left: left + cw], self.size)
        return _resize(CenterCrop(min(h, w))(image), self.size)


@TRANSFORMS.register()
class RandomHorizontalFlip:
    size_effect = "keep"

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = float(prob)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return image[:, ::-1] if np.random.rand() < self.prob else image


@TRANSFORMS.register()
class Normalize:
    """uint8 HWC -> float32 HWC ``(x / 255 - mean) / std`` (mean/std per channel, in [0, 1] units)."""

    size_effect = "keep"

    def __init__(self, mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225)) -> None:
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return (image.astype(np.float32) / 255.0 - self.mean) / self.std


@TRANSFORMS.register()
class ToCHW:
    """HWC -> CHW float32 (contiguous); a 2-D image gets one channel."""

    size_effect = "keep"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:
            image = image[..., None]
        return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
