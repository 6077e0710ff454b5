"""Class lists of datasets: reading an explicit list (or a file of one), and what a dataset
config's classes are without building the dataset.

A dataset that knows its classes has ``class_names`` (label i is ``class_names[i]``) and
``class_source`` (a short text saying where they come from: which folder, list file or
annotation file), which the trainer's checks quote in their errors.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

from ..registry import DATASETS

ClassNames = Union[str, Sequence[str]]


def read_class_names(value: ClassNames, what: str) -> List[str]:
    """The class names of ``value``: a list of names, or the path of a text file with one name
    a line (blank lines skipped). ``what`` names the argument in errors (e.g.
    ``'ImageFolder class_names'``).

    Raises FileNotFoundError for a missing file, ValueError for an empty list or duplicates.
    """
    if isinstance(value, str):
        if not os.path.isfile(value):
            raise FileNotFoundError(f"{what}: {value!r} is neither a list of names nor an existing file "
                                    f"(one class name a line)")
        with open(value, "r", encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
        origin = f" (file {value})"
    elif isinstance(value, (list, tuple)):
        names = [str(n) for n in value]
        origin = ""
    else:
        raise TypeError(f"{what} must be a list of names or a file path, got {type(value).__name__}")
    if not names:
        raise ValueError(f"{what}{origin}: no class names")
    seen, dups = set(), []
    for n in names:
        if n in seen and n not in dups:
            dups.append(n)
        seen.add(n)
    if dups:
        raise ValueError(f"{what}{origin}: duplicate class name(s) {dups}")
    return names


def describe_names(value: ClassNames) -> str:
    """``'class_names file names.txt'`` or ``'class_names (list)'``: for ``class_source`` texts."""
    return f"class_names file {value}" if isinstance(value, str) else "class_names (list)"


def config_class_names(ds_cfg: Optional[Dict[str, Any]]) -> Optional[List[str]]:
    """The ``class_names`` a dataset built from ``ds_cfg`` would have, when its class can tell
    without reading images or big files (``class_names_from_args``: ImageFolder, ImageList,
    GeometricShapes); None otherwise (COCO json files are not read here)."""
    if not ds_cfg or "type" not in ds_cfg:
        return None
    resolve = getattr(DATASETS.get(ds_cfg["type"]), "class_names_from_args", None)
    if resolve is None:
        return None
    return list(resolve(**{k: v for k, v in ds_cfg.items() if k != "type"}))
