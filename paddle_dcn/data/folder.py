"""Real-data loaders: ImageNet-style class folders and ``path label`` list files.

Classes: label i is ``class_names[i]``. Without an explicit ``class_names`` (a list, or a file
with one name a line), ImageFolder's classes are its sorted sub-folder names (hidden folders,
``.name``, are skipped) and ImageList's are ``'0' .. 'max label'``. With one, ImageFolder maps
each folder by name, so a missing folder cannot shift later labels: a listed class without a
folder is an error naming it (``allow_missing_classes: true`` accepts it, e.g. an eval set that
deliberately lacks some classes), and a folder that is not listed is an error (its images would
have no label). The trainer gives an eval set that sets no ``class_names`` the train set's.

Items: ``{'image': transformed image, 'label': int64, 'file': path}``; :meth:`collate_fn` makes
the batches (``file`` is left out; images of different sizes are an error naming two files).
When the transforms keep every image's size (no resize or crop), the constructor reads the
image headers and raises that error at once, before any batch.

Broken files: an image that is missing or cannot be decoded raises :class:`BadImageError`
naming the file (the loader stops the run with it, naming the item's index). With
``bad_images: skip`` the constructor checks every file first (exists, PIL's ``verify``), leaves
out the broken ones and logs their count and names; an image that still fails to decode
when loaded is replaced by the next readable one, with a warning, and counted in
``skipped_at_load`` (per process).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..registry import DATASETS
from .classes import ClassNames, describe_names, read_class_names
from .collate import check_uniform_files, collate_images
from .images import BadImageError, image_problem, load_rgb
from .transforms import Compose

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")
BAD_IMAGE_POLICIES = ("raise", "skip")

logger = logging.getLogger("paddle_dcn")


def bad_image_policy(value: str) -> str:
    if value not in BAD_IMAGE_POLICIES:
        raise ValueError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, got {value!r}")
    return value


class _FileDataset:
    samples: List[tuple]
    class_names: List[str]
    class_source: str
    transforms: Compose

    def __len__(self) -> int:
        return len(self.samples)

    bad_images: str = "raise"
    skipped: List[Tuple[str, str]] = []  # (path, reason) left out at build (bad_images: skip)
    skipped_at_load: int = 0

    def __getitem__(self, index: int) -> Dict[str, Any]:
        for attempt in range(len(self.samples)):
            path, label = self.samples[(index + attempt) % len(self.samples)]
            try:
                image = load_rgb(path)
            except BadImageError as error:
                if self.bad_images != "skip":
                    raise
                self.skipped_at_load += 1
                logger.warning(f"{self.class_source}: item {index}: {error}; using the next image instead "
                               f"(bad_images: skip; {self.skipped_at_load} so far in this process)")
                continue
            return {"image": self.transforms(image), "label": np.int64(label), "file": path}
        raise BadImageError(f"{self.class_source}: no readable image left (bad_images: skip)")

    def _drop_bad_images(self, bad_images: str) -> None:
        """``bad_images: skip``: leaves out (and logs) every missing or undecodable file now."""
        self.bad_images = bad_image_policy(bad_images)
        self.skipped = []
        if self.bad_images != "skip":
            return
        kept = []
        for path, label in self.samples:
            problem = image_problem(path)
            if problem is None:
                kept.append((path, label))
            else:
                self.skipped.append((path, problem))
        if self.skipped:
            shown = "; ".join(f"{p} ({why})" for p, why in self.skipped[:5])
            logger.warning(f"{self.class_source}: skipped {len(self.skipped)} of {len(self.samples)} images "
                           f"(bad_images: skip): {shown}{' ...' if len(self.skipped) > 5 else ''}")
        if not kept:
            raise ValueError(f"{self.class_source}: none of the {len(self.samples)} images is readable "
                             f"(first: {shown})")
        self.samples = kept

    def _check_sizes(self) -> None:
        """Transforms that keep every image's size (no resize or crop): all images must have
        one size, checked from the file headers now, before the first batch."""
        if self.transforms.size_effect() == "keep":
            check_uniform_files([path for path, _ in self.samples], self.class_source)

    def collate_fn(self, items: List[Dict[str, Any]]) -> Dict[str, np.ndarray]:
        """``{'image': [N, ...], 'label': [N]}`` (see :func:`collate.collate_images`)."""
        return collate_images(items, self.class_source)


def _class_folders(root: str) -> List[str]:
    if not os.path.isdir(root):
        raise FileNotFoundError(f"ImageFolder root is not a directory: {root}")
    return sorted(d for d in os.listdir(root) if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))


def folder_classes(root: str, class_names: Optional[ClassNames] = None,
                   allow_missing_classes: bool = False) -> Tuple[List[str], str]:
    """``(class_names, class_source)`` of an ImageFolder (see the module doc for the rules).

    Raises ValueError naming the folders: no class folders; a listed class without a folder
    (unless ``allow_missing_classes``); a folder that is not listed.
    """
    folders = _class_folders(root)
    if class_names is None:
        if not folders:
            raise ValueError(f"ImageFolder: {root} has no class sub-folders")
        return folders, f"ImageFolder root={root}: {len(folders)} class folders"
    names = read_class_names(class_names, "ImageFolder class_names")
    source = f"ImageFolder root={root}, {describe_names(class_names)}: {len(names)} classes"
    extra = [f for f in folders if f not in set(names)]
    if extra:
        raise ValueError(f"ImageFolder root={root}: folder(s) {extra} are not in class_names ({source}); "
                         f"their images would have no label: add them to class_names or move them out of the root")
    missing = [n for n in names if n not in set(folders)]
    if missing and not allow_missing_classes:
        raise ValueError(f"ImageFolder root={root}: no folder for class(es) {missing} of class_names ({source}); "
                         f"add the folders, or set allow_missing_classes: true (config: allow_class_subset: true) "
                         f"if this set deliberately lacks them")
    return names, source


@DATASETS.register()
class ImageFolder(_FileDataset):
    """``root/<class name>/<image>`` (see the module doc for how classes are found).

    Args:
        root: the folder of class folders.
        transforms: transform configs applied to each uint8 HWC image.
        extensions: image file name endings taken (case-insensitive).
        class_names: the classes in label order, a list or a file of one name a line; default:
            the sorted sub-folder names.
        allow_missing_classes: with ``class_names``, a class without a folder is accepted
            (it gets no samples; the other labels keep their index).
        bad_images: ``'raise'`` (default: a missing or undecodable file stops the run naming
            it) or ``'skip'`` (left out and counted in the log; see the module doc).
    """

    def __init__(self, root: str, transforms: Optional[List[Dict[str, Any]]] = None,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS, class_names: Optional[ClassNames] = None,
                 allow_missing_classes: bool = False, bad_images: str = "raise") -> None:
        self.class_names, self.class_source = folder_classes(root, class_names, allow_missing_classes)
        exts = tuple(e.lower() for e in extensions)
        self.samples = []
        for label, name in enumerate(self.class_names):
            if not os.path.isdir(os.path.join(root, name)):
                continue  # allowed missing class
            for dirpath, _, files in sorted(os.walk(os.path.join(root, name))):
                for f in sorted(files):
                    if f.lower().endswith(exts):
                        self.samples.append((os.path.join(dirpath, f), label))
        if not self.samples:
            raise ValueError(f"ImageFolder: no images with extensions {exts} under {root}")
        self._drop_bad_images(bad_images)
        self.transforms = Compose(transforms or [])
        self._check_sizes()

    @staticmethod
    def class_names_from_args(root: str, class_names: Optional[ClassNames] = None,
                              allow_missing_classes: bool = False, **_: Any) -> List[str]:
        """The ``class_names`` an ImageFolder with these arguments has (reads only ``root``'s listing)."""
        return folder_classes(root, class_names, allow_missing_classes)[0]


def read_list_file(list_file: str, root: str = "", delimiter: Optional[str] = None) -> List[tuple]:
    """``[(root/path, label), ...]`` of a ``path label`` list file; ValueError naming the line
    for a line that is not ``path label`` or a label that is not an integer >= 0."""
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f"ImageList list_file not found: {list_file}")
    samples = []
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
            if label < 0:
                raise ValueError(f"{list_file}:{lineno}: label {label} is negative (labels are 0, 1, ...)")
            samples.append((os.path.join(root, parts[0]), label, lineno))
    if not samples:
        raise ValueError(f"ImageList: {list_file} lists no images")
    return samples


def list_classes(list_file: str, samples: List[tuple], class_names: Optional[ClassNames] = None,
                 class_names_file: Optional[str] = None) -> Tuple[List[str], str]:
    """``(class_names, class_source)`` of an ImageList: the given names (every label must be
    below their count: ValueError naming the first line that is not), else ``'0'..'max label'``."""
    if class_names is not None and class_names_file is not None:
        raise ValueError("ImageList: give class_names or class_names_file, not both")
    given = class_names if class_names is not None else class_names_file
    top = max(s[1] for s in samples)
    if given is None:
        return [str(i) for i in range(top + 1)], f"ImageList {list_file}: labels up to {top}, {top + 1} classes"
    names = read_class_names(given, "ImageList class_names")
    source = f"ImageList {list_file}, {describe_names(given)}: {len(names)} classes"
    for _, label, lineno in samples:
        if label >= len(names):
            raise ValueError(f"{list_file}:{lineno}: label {label}, but class_names has {len(names)} names "
                             f"(labels 0..{len(names) - 1}; {source})")
    return names, source


@DATASETS.register()
class ImageList(_FileDataset):
    """A list file of ``relative/path.jpg label`` lines (PaddleClas format), paths under ``root``.

    Args:
        list_file: the list; labels are integers >= 0.
        root: folder the paths are relative to.
        transforms: transform configs applied to each uint8 HWC image.
        class_names: the classes in label order, a list or a file of one name a line (every
            label must be below their count); default ``'0' .. 'max label'``.
        class_names_file: the same as a file (the older argument; not together with class_names).
        delimiter: between path and label (default: whitespace; the label is the last field).
        bad_images: ``'raise'`` (default: a missing or undecodable file stops the run naming
            it) or ``'skip'`` (left out and counted in the log; see the module doc).
    """

    def __init__(self, list_file: str, root: str = "", transforms: Optional[List[Dict[str, Any]]] = None,
                 class_names: Optional[ClassNames] = None, class_names_file: Optional[str] = None,
                 delimiter: Optional[str] = None, bad_images: str = "raise") -> None:
        listed = read_list_file(list_file, root, delimiter)
        self.class_names, self.class_source = list_classes(list_file, listed, class_names, class_names_file)
        self.samples = [(path, label) for path, label, _ in listed]
        self._drop_bad_images(bad_images)
        self.transforms = Compose(transforms or [])
        self._check_sizes()

    @staticmethod
    def class_names_from_args(list_file: str, root: str = "", class_names: Optional[ClassNames] = None,
                              class_names_file: Optional[str] = None, delimiter: Optional[str] = None,
                              **_: Any) -> List[str]:
        """The ``class_names`` an ImageList with these arguments has (reads only the list file)."""
        return list_classes(list_file, read_list_file(list_file, root, delimiter), class_names, class_names_file)[0]
