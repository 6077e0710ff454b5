"""Real-data loaders: ImageNet-style class folders and ``path label`` list files."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from ..registry import DATASETS
from .transforms import Compose

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")


def load_rgb(path: str) -> np.ndarray:
    """The image at ``path`` as uint8 HWC RGB."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


class _FileDataset:
    samples: List[tuple]
    class_names: List[str]
    transforms: Compose

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        path, label = self.samples[index]
        return {"image": self.transforms(load_rgb(path)), "label": np.int64(label)}


@DATASETS.register()
class ImageFolder(_FileDataset):
    """``root/<class name>/<image>``: classes are the sorted sub-folder names.

    Items: ``{'image': transformed image, 'label': int64}``.
    """

    def __init__(self, root: str, transforms: Optional[List[Dict[str, Any]]] = None,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS) -> None:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"ImageFolder root is not a directory: {root}")
        self.class_names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        if not self.class_names:
            raise ValueError(f"ImageFolder: {root} has no class sub-folders")
        exts = tuple(e.lower() for e in extensions)
        self.samples = []
        for label, name in enumerate(self.class_names):
            for dirpath, _, files in sorted(os.walk(os.path.join(root, name))):
                for f in sorted(files):
                    if f.lower().endswith(exts):
                        self.samples.append((os.path.join(dirpath, f), label))
        if not self.samples:
            raise ValueError(f"ImageFolder: no images with extensions {exts} under {root}")
        self.transforms = Compose(transforms or [])


@DATASETS.register()
class ImageList(_FileDataset):
    """A list file of ``relative/path.jpg label`` lines (PaddleClas format), paths under ``root``.

    ``class_names_file`` (optional): one class name per line, line i naming label i.
    """

    def __init__(self, list_file: str, root: str = "", transforms: Optional[List[Dict[str, Any]]] = None,
                 class_names_file: Optional[str] = None, delimiter: Optional[str] = None) -> None:
        self.samples = []
        with open(list_file, "r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                parts = line.rsplit(delimiter, 1) if delimiter else line.rsplit(None, 1)
                if len(parts) != 2:
                    raise ValueError(f"{list_file}:{lineno}: expected 'path label', got {line!r}")
                try:
                    label = int(parts[1])
                except ValueError:
                    raise ValueError(f"{list_file}:{lineno}: label {parts[1]!r} is not an integer") from None
                self.samples.append((os.path.join(root, parts[0]), label))
        if not self.samples:
            raise ValueError(f"ImageList: {list_file} lists no images")
        if class_names_file:
            with open(class_names_file, "r", encoding="utf-8") as f:
                self.class_names = [l.strip() for l in f if l.strip()]
        else:
            self.class_names = [str(i) for i in range(max(l for _, l in self.samples) + 1)]
        self.transforms = Compose(transforms or [])
