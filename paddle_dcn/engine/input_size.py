"""The input-size rule shared by train/eval, export and infer (classification).

``export.image_shape`` ``[C, H, W]`` is the size the model takes after export and in
``tools/infer.py``. It must be the size the eval set's samples reach the model (its first
sample after ``eval_dataset.transforms``; the train set's without an eval set):
:func:`check_export_shape` compares them (a warning at train/eval time, an error in export and
``infer.py -c``), naming ``export.image_shape`` and both sizes. ``-1`` entries (any size, the
detection configs) are not checked.

At inference (:class:`Preprocessor`) an image goes through the eval transforms; when what comes
out is not ``H x W``, the image is resized to ``H x W`` first and a warning names the sizes
and ``export.image_shape`` (once per input size): never a silent resize.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from ..data.transforms import Compose, Resize

logger = logging.getLogger("paddle_dcn")


def export_shape(cfg: Dict[str, Any]) -> List[int]:
    return [int(v) for v in (cfg.get("export") or {}).get("image_shape", [])]


def sample_shape(dataset: Any) -> Tuple[List[int], str]:
    """``([C, H, W] of the first sample's image, where it comes from)``."""
    item = dataset[0]
    return [int(v) for v in np.shape(item["image"])], str(item.get("file") or f"{type(dataset).__name__} sample 0")


def check_export_shape(cfg: Dict[str, Any], dataset: Any, key: str, strict: bool) -> Optional[str]:
    """Compares ``export.image_shape`` with what ``dataset`` (config key ``key``) gives the model.

    Returns the message of a mismatch (None when they agree, or for detection / ``-1`` sizes /
    a non-CHW sample); raises ValueError with it when ``strict``, else logs it as a warning.
    """
    shape = export_shape(cfg)
    if cfg.get("task") == "detection" or len(shape) != 3 or min(shape) < 0:
        return None
    got, where = sample_shape(dataset)
    if len(got) != 3 or got == shape:
        return None
    message = (f"export.image_shape is {shape} but {key}'s images reach the model as {got} (C, H, W: {where} "
               f"after {key}.transforms); export and infer would feed the model {shape[1]}x{shape[2]} inputs, "
               f"not the {got[1]}x{got[2]} it was trained and evaluated on. Set export.image_shape: {got} "
               f"(-o export.image_shape=[{','.join(map(str, got))}])")
    if strict:
        raise ValueError(message)
    logger.warning(message)
    return message


class Preprocessor:
    """uint8 HWC RGB image -> float32 model input of ``image_shape`` (see the module doc).

    Args:
        image_shape: ``export.image_shape`` ``[C, H, W]``.
        transforms: the eval transforms (configs).
        warn: where the resize warning goes (default: the ``paddle_dcn`` logger).
    """

    def __init__(self, image_shape: Sequence[int], transforms: List[Dict[str, Any]],
                 warn: Optional[Callable[[str], None]] = None) -> None:
        self.image_shape = [int(v) for v in image_shape]
        self.size = (self.image_shape[1], self.image_shape[2])
        self.resize = Resize(list(self.size))
        self.pipeline = Compose(transforms)
        self.warn = warn or logger.warning
        self._warned: Set[Tuple[int, int]] = set()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        out = self.pipeline(image)
        if tuple(np.shape(out)[-2:]) == self.size:
            return out
        hw = tuple(image.shape[:2])
        if hw not in self._warned:
            self._warned.add(hw)
            self.warn(f"a {hw[0]}x{hw[1]} image gives a {np.shape(out)[-2]}x{np.shape(out)[-1]} input after the "
                      f"eval transforms, not export.image_shape {self.image_shape} (what the model was trained "
                      f"and evaluated on): resized to {self.size[0]}x{self.size[1]} before the transforms")
        return self.pipeline(self.resize(image))
