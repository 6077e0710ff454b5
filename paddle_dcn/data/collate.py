"""Batching of classification items (``{'image', 'label', 'file'}``) with a readable error
for the classic mistake: images of different sizes and no resize in the transforms."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np


def _hw(shape: Sequence[int]) -> str:
    """``'HxW'`` of an image array shape, CHW (after ToCHW) or HWC."""
    if len(shape) == 3:
        h, w = (shape[1], shape[2]) if shape[0] <= 4 else (shape[0], shape[1])
        return f"{h}x{w}"
    if len(shape) == 2:
        return f"{shape[0]}x{shape[1]}"
    return "x".join(map(str, shape))


def resize_hint(h: Any, w: Any) -> str:
    return (f"a batch needs one size: add a resize to the dataset's transforms before Normalize, e.g. "
            f"{{type: Resize, size: [{h}, {w}]}} (or RandomResizedCrop / CenterCrop with a size)")


def mixed_sizes_error(source: str, file_a: str, size_a: str, file_b: str, size_b: str, when: str) -> ValueError:
    """The error for images of two sizes where one batch needs one (``size_*``: ``'HxW'``)."""
    h, w = size_a.split("x")[:2]
    return ValueError(f"{source}: a batch holds images of different sizes: {file_a} is {size_a} and {file_b} is "
                      f"{size_b} (H x W {when}); {resize_hint(h, w)}")


def check_uniform_files(files: Sequence[str], source: str) -> None:
    """For a dataset whose transforms keep every image's size: reads the image headers (not
    the pixels) and raises :func:`mixed_sizes_error` for the first file whose H x W differs
    from the first file's, before any batch is made."""
    from PIL import Image

    from .images import BadImageError

    first = None
    for path in files:
        try:
            with Image.open(path) as img:
                w, h = img.size
        except FileNotFoundError:
            raise BadImageError(f"{source}: image not found: {path} (bad_images: skip leaves such files out)") from None
        except (OSError, ValueError, SyntaxError) as error:
            raise BadImageError(f"{source}: cannot read image {path}: {type(error).__name__}: {error} "
                                "(bad_images: skip leaves such files out)") from None
        if first is None:
            first = (path, f"{h}x{w}")
        elif f"{h}x{w}" != first[1]:
            raise mixed_sizes_error(source, first[0], first[1], path, f"{h}x{w}",
                                    "as stored; the dataset's transforms keep the size")


def collate_images(items: List[Dict[str, Any]], source: str) -> Dict[str, np.ndarray]:
    """Stacks the items' arrays key by key into ``{'image': [N, ...], 'label': [N], ...}``;
    the ``file`` entries (image paths) are used for errors and left out of the batch.

    Raises ValueError when the images differ in shape, naming ``source`` (the dataset), the
    first file and the first file whose image differs from it, both sizes (H x W after the
    transforms), and the transform to add. (Raised in Paddle's loader thread, such an error
    may not reach the loop: file datasets check their files at build time too,
    :func:`check_uniform_files`.)
    """
    first = items[0]
    shape0 = np.shape(first["image"])
    for it in items[1:]:
        shape = np.shape(it["image"])
        if shape != shape0:
            raise mixed_sizes_error(source, first.get("file", "item 0"), _hw(shape0), it.get("file", "another item"),
                                    _hw(shape), "after the dataset's transforms")
    return {key: np.stack([np.asarray(it[key]) for it in items]) for key in first if key != "file"}
