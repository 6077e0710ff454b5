"""Reading image files with errors that name the file (one place for every reader: the file
datasets, the size check at build time, tools/infer.py)."""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
from PIL import Image


class BadImageError(OSError):
    """An image file that is missing or cannot be decoded; the message names the file."""


def load_rgb(path: str) -> np.ndarray:
    """The image at ``path`` as uint8 HWC RGB; :class:`BadImageError` naming the file when it is
    missing or cannot be decoded."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise BadImageError(f"image not found: {path}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise BadImageError(f"cannot read image {path}: {type(error).__name__}: {error}") from None


def image_problem(path: str) -> Optional[str]:
    """Why the image at ``path`` cannot be used (``'file not found'``, the decoder's error), or
    None: a cheap check (PIL's ``verify``: header and structure, no full decode)."""
    if not os.path.isfile(path):
        return "file not found"
    try:
        with Image.open(path) as img:
            img.verify()
    except Exception as error:  # noqa: BLE001 - any decoder error means the file is unusable
        return f"{type(error).__name__}: {error}"
    return None


