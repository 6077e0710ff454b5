"""Build-time class checks: the model's class count against the datasets', the eval set's
classes against the train set's, and the eval set given the train set's classes.

Run by the trainer before the first iteration (and by export/infer through
:func:`build_reference_dataset`). Every mismatch is a ValueError that names both numbers, the
config key to change and where the dataset's classes come from (``class_source``: folder,
list file, annotation file). ``allow_class_subset: true`` (top-level config key) is the one
deliberate exception: the data may use only some of the model's classes (``model.num_classes``
larger than a dataset's class count, an ImageFolder lacking some listed classes' folders, an
eval set whose classes are the first ones of the train set's); that is logged as a warning.
A model with fewer classes than the data is always an error.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from ..data.classes import config_class_names
from ..registry import DATASETS, accepted_keys, build

logger = logging.getLogger("paddle_dcn")

SUBSET_KEY = "allow_class_subset"


def allow_subset(cfg: Dict[str, Any]) -> bool:
    return bool(cfg.get(SUBSET_KEY, False))


def _names(dataset: Any) -> Optional[List[str]]:
    names = getattr(dataset, "class_names", None)
    return list(names) if names is not None else None


def _source(dataset: Any) -> str:
    return getattr(dataset, "class_source", type(dataset).__name__)


def dataset_config(ds_cfg: Dict[str, Any], train_names: Optional[List[str]], subset: bool) -> Dict[str, Any]:
    """``ds_cfg`` with the train set's classes as its ``class_names`` (when the dataset type
    takes them and the config gives none) and, with ``subset``, ``allow_missing_classes``."""
    keys = accepted_keys(DATASETS.get(ds_cfg["type"])) or []
    out = dict(ds_cfg)
    if (train_names is not None and "class_names" in keys and out.get("class_names") is None
            and out.get("class_names_file") is None):
        out["class_names"] = list(train_names)
    if subset and "allow_missing_classes" in keys:
        out.setdefault("allow_missing_classes", True)
    return out


def build_dataset(cfg: Dict[str, Any], key: str, train_names: Optional[List[str]] = None) -> Any:
    """Builds ``cfg[key]`` (see :func:`dataset_config`); a dataset that took the train set's
    classes and does not fit them raises ValueError saying so."""
    ds_cfg = dataset_config(cfg[key], train_names, allow_subset(cfg))
    try:
        return build(DATASETS, ds_cfg)
    except ValueError as exc:
        if "class_names" in ds_cfg and cfg[key].get("class_names") is None:
            raise ValueError(f"{key}: {exc} [{key} takes train_dataset's {len(ds_cfg['class_names'])} classes "
                             f"{ds_cfg['class_names']}]") from None
        raise


def train_class_names(cfg: Dict[str, Any], train_dataset: Any = None) -> Optional[List[str]]:
    """The train set's classes: of the built ``train_dataset``, else read from its config
    when that is cheap (class folders, list files, built-in sets; not COCO json)."""
    if train_dataset is not None:
        return _names(train_dataset)
    try:
        return config_class_names(cfg.get("train_dataset"))
    except FileNotFoundError as exc:  # e.g. evaluating where the training data are not
        logger.warning(f"train_dataset's classes unknown ({exc}); eval_dataset keeps its own")
        return None


def check_model_classes(cfg: Dict[str, Any], dataset: Any, key: str) -> None:
    """``model.num_classes`` against ``dataset``'s class count (see the module doc)."""
    model_n = (cfg.get("model") or {}).get("num_classes")
    names = _names(dataset)
    if model_n is None or names is None:
        return
    model_n, data_n = int(model_n), len(names)
    if model_n == data_n:
        return
    detection = cfg.get("task") == "detection"
    background = " (object classes: the detector adds background itself, do not count it)" if detection else ""
    head = (f"model.num_classes is {model_n} but {key} has {data_n} classes ({_source(dataset)})")
    if model_n < data_n:
        lost = (f"classes {model_n}..{data_n - 1} would be trained as background" if detection
                else f"labels {model_n}..{data_n - 1} are beyond the model's outputs")
        raise ValueError(f"{head}: {lost}. Set model.num_classes: {data_n}{background} "
                         f"(-o model.num_classes={data_n})")
    if allow_subset(cfg):
        logger.warning(f"{head}; {SUBSET_KEY} is true: the model's classes {data_n}..{model_n - 1} have no data")
        return
    raise ValueError(f"{head}: outputs {data_n}..{model_n - 1} would never see a sample. Set model.num_classes: "
                     f"{data_n}{background} (-o model.num_classes={data_n}), or {SUBSET_KEY}: true if the data "
                     f"deliberately use only some of the model's classes")


def check_eval_classes(cfg: Dict[str, Any], train_names: Optional[List[str]], eval_dataset: Any) -> None:
    """The eval set's ``class_names`` must be the train set's, in the same order (label i means
    the same class in both); with ``allow_class_subset``, the first few of them."""
    eval_names = _names(eval_dataset)
    if train_names is None or eval_names is None or eval_names == list(train_names):
        return
    train_names = list(train_names)
    if allow_subset(cfg) and eval_names == train_names[: len(eval_names)]:
        logger.warning(f"eval_dataset has the first {len(eval_names)} of train_dataset's {len(train_names)} "
                       f"classes ({_source(eval_dataset)}); {SUBSET_KEY} is true")
        return
    missing = [n for n in train_names if n not in eval_names]
    extra = [n for n in eval_names if n not in train_names]
    detail = (f"missing in eval: {missing}; " if missing else "") + (f"not in train: {extra}; " if extra else "")
    if not missing and not extra:
        detail = "the same classes in another order; "
    raise ValueError(
        f"eval_dataset has {len(eval_names)} classes ({_source(eval_dataset)}), train_dataset has "
        f"{len(train_names)}; {detail}label i must mean the same class in both. Give eval_dataset the "
        f"train set's classes (eval_dataset.class_names, where the dataset type takes it, or the same "
        f"categories / num_classes)")


def check_classes(cfg: Dict[str, Any], train_dataset: Any = None, eval_dataset: Any = None,
                  train_names: Optional[List[str]] = None) -> None:
    """All of the module's checks on what was built (each dataset may be None)."""
    if train_dataset is not None:
        check_model_classes(cfg, train_dataset, "train_dataset")
        train_names = _names(train_dataset)
    if eval_dataset is not None:
        check_eval_classes(cfg, train_names, eval_dataset)
        check_model_classes(cfg, eval_dataset, "eval_dataset")
