"""YAML configs with ``_base_`` inheritance and typed ``-o key.sub=value`` overrides.

A config file is a YAML mapping. ``_base_: path`` (or a list of paths, relative to the
file) names files merged underneath it, in order; the file's own keys win. Mappings merge
key by key, everything else (lists, scalars) is replaced. A mapping whose ``type`` differs
from the base's ``type`` replaces the base mapping entirely (switching ``Momentum`` to
``AdamW`` does not inherit ``momentum``).

Overrides ``a.b=1 c=[3,4]`` parse the value as YAML (never ``eval``). The key path must
exist, with one exception: a mapping that has a ``type`` key is the argument list of a
registered class, and it may gain any key; :func:`paddle_dcn.registry.build` then checks
it against the constructor. Unknown keys are errors that list the valid ones. An override of
a ``type`` to another class drops the mapping's other keys, as between ``_base_`` files,
except those given by the same command line (``dcn.groups=4 dcn.type=DCNv3`` keeps groups in
either order; see :func:`apply_overrides`).

The top-level keys a config may use, with their defaults, are :data:`DEFAULTS`; so are the
keys of its settings sections (``loader``, ``checkpoint``, ``amp``, ``visualdl``, ``export``).
"""
from __future__ import annotations

import copy
import os
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import yaml

from .registry import check_keys

#: Every top-level key a config may have, with its default (None: the config must set it
#: when the part that needs it runs).
DEFAULTS: Dict[str, Any] = {
    "task": "classification",
    "epochs": 10,
    "seed": 0,
    "output_dir": None,  # default: output/<config name>
    "log_interval": 10,  # iterations between progress lines
    "eval_interval": 1,  # epochs between evaluations (0: only at the end)
    "checkpoint": {"interval": 1, "keep_last": 2},
    "amp": {"enabled": False, "level": "O1", "dtype": "float16", "init_loss_scaling": 1024.0},
    "grad_clip": None,  # max global gradient norm, or None
    "visualdl": {"enabled": True, "num_images": 4, "histograms": True},
    "model": None,
    "train_dataset": None,
    "eval_dataset": None,
    "loader": {"batch_size": 32, "eval_batch_size": 64, "num_workers": 0, "drop_last": True},
    "optimizer": None,
    "lr_scheduler": None,
    "metric": {"type": "TopKAccuracy", "topk": [1, 5]},
    "export": {"image_shape": [3, 32, 32]},
    # true: the datasets may use only some of the model's classes (paddle_dcn/engine/class_check.py)
    "allow_class_subset": False,
    # a NaN/inf training loss: "raise" stops the run naming epoch, iteration and value; "skip"
    # drops that step (no parameter update) and counts it in the log
    "nonfinite_loss": "raise",
}

BASE_KEY = "_base_"


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``5e-4`` / ``1e3`` as floats (YAML 1.2; PyYAML's 1.1 rules
    need a dot and a signed exponent, so ``weight_decay: 5e-4`` would become a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+][0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def yaml_load(text: Any) -> Any:
    """Parses YAML text (or a stream) with the config loader (safe; floats as in YAML 1.2)."""
    return yaml.load(text, Loader=_Loader)


class ConfigError(KeyError):
    """A config or override names a key that does not exist (the message lists valid ones)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def merge(base: Dict[str, Any], child: Dict[str, Any]) -> Dict[str, Any]:
    """Returns ``child`` merged over ``base`` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            if "type" in value and "type" in old and value["type"] != old["type"]:
                out[key] = copy.deepcopy(value)
            else:
                out[key] = merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: str) -> Dict[str, Any]:
    with open(path, "r", encoding="utf-8") as f:
        data = yaml_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config {path} must be a YAML mapping, got {type(data).__name__}")
    return data


def load_yaml_with_bases(path: str, _stack: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """Reads ``path`` and, recursively, its ``_base_`` files; returns the merged mapping."""
    path = os.path.abspath(path)
    if path in _stack:
        raise ValueError(f"config _base_ cycle: {' -> '.join(_stack + (path,))}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    merged: Dict[str, Any] = {}
    for base in bases:
        base_path = os.path.join(os.path.dirname(path), base)
        merged = merge(merged, load_yaml_with_bases(base_path, _stack + (path,)))
    return merge(merged, data)


def parse_overrides(items: Optional[Iterable[Any]]) -> List[Tuple[str, Any]]:
    """``['a.b=1', 'c=[2, 3]']`` (nested lists from repeated ``-o`` are flattened) ->
    ``[('a.b', 1), ('c', [2, 3])]``; values are parsed as YAML."""
    flat: List[str] = []

    def add(item: Any) -> None:
        if isinstance(item, (list, tuple)):
            for sub in item:
                add(sub)
        else:
            flat.append(str(item))

    add(items or [])
    pairs = []
    for item in flat:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ValueError(f"override {item!r}: bad key {key!r}")
        pairs.append((key, yaml_load(text) if text.strip() else None))
    return pairs


def apply_override(cfg: Dict[str, Any], key: str, value: Any) -> bool:
    """Sets ``cfg[a][b]... = value`` for ``key = 'a.b...'``, refusing unknown keys (a mapping
    this override creates, below a typed one, takes any key). A ``type`` of another class
    replaces its mapping with ``{type: value}``, as between ``_base_`` files; returns whether
    it did."""
    parts = key.split(".")
    node: Any = cfg
    created = False
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth]) or "<top level>"
        last = depth == len(parts) - 1
        if isinstance(node, list):
            try:
                index = int(part)
                node[index]  # noqa: B018 - bounds check
            except (ValueError, IndexError):
                raise ConfigError(
                    f"override {key!r}: {where} is a list of {len(node)} items, {part!r} is not an index"
                ) from None
            if last:
                node[index] = value
            else:
                node = node[index]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {where} is a {type(node).__name__}, not a mapping")
        if part not in node and not ("type" in node and depth > 0) and not created:
            raise ConfigError(
                f"override {key!r}: unknown key {part!r} in {where}; valid keys: "
                f"{', '.join(sorted(map(str, node)))}"
            )
        if last and part == "type" and "type" in node and node["type"] != value:
            # as between _base_ files: another type is another class, whose arguments the
            # old ones are not (-o model.backbone.dcn.type=DCNv3 on a DeformConv2D dcn)
            node.clear()
            node["type"] = value
            return True
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = {}
                created = True
            node = node[part]
    return False


def apply_overrides(cfg: Dict[str, Any], pairs: Sequence[Tuple[str, Any]]) -> None:
    """:func:`apply_override` of each pair, left to right (a later override of a key wins).
    When a ``type`` override replaces its mapping, the earlier overrides of keys inside that
    mapping are applied again after it, so ``dcn.groups=4 dcn.type=DCNv3`` keeps groups as
    ``dcn.type=DCNv3 dcn.groups=4`` does; an earlier override of the mapping itself (or of
    a parent) is not, it came before the type that replaced it."""
    done: List[Tuple[str, Any]] = []
    for key, value in pairs:
        if apply_override(cfg, key, value):
            inside = key[: -len("type")]  # 'a.b.' of 'a.b.type'
            for k, v in done:
                if k.startswith(inside) and k != key:
                    apply_override(cfg, k, v)
        done.append((key, value))


def check_top_level(cfg: Dict[str, Any], source: str) -> None:
    unknown = sorted(set(cfg) - set(DEFAULTS) - {"_name_"})
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(sorted(DEFAULTS))}"
        )


def fixed_sections() -> List[str]:
    """The top-level keys whose default is a mapping of settings (not a ``type`` to build):
    their keys are fixed, those of :data:`DEFAULTS`."""
    return [k for k, v in DEFAULTS.items() if isinstance(v, dict) and "type" not in v]


def check_sections(cfg: Dict[str, Any], source: str) -> None:
    """A key inside a fixed section (``loader``, ``checkpoint``, ``amp``, ...) that it does not
    have is a ConfigError listing the valid ones (``loader: {batch_sise: 8}`` was ignored)."""
    for section in fixed_sections():
        value = cfg.get(section)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {section} must be a mapping of {', '.join(sorted(DEFAULTS[section]))}, "
                              f"got {type(value).__name__} {value!r}")
        check_keys(f"{source}: {section}", value, sorted(DEFAULTS[section]), error=ConfigError)


def load_config(path: str, overrides: Optional[Sequence[Any]] = None) -> Dict[str, Any]:
    """The full config of ``path``: defaults < ``_base_`` files < the file < ``overrides``.

    Adds ``_name_`` (the file name without extension) and fills ``output_dir``
    (``output/<name>``) when unset.
    """
    data = load_yaml_with_bases(path)
    check_top_level(data, path)
    check_sections(data, path)
    cfg = merge(DEFAULTS, data)
    cfg["_name_"] = os.path.splitext(os.path.basename(path))[0]
    apply_overrides(cfg, parse_overrides(overrides))
    check_top_level(cfg, "overrides")
    if not cfg.get("output_dir"):
        cfg["output_dir"] = os.path.join("output", cfg["_name_"])
    return cfg


def dump_config(cfg: Dict[str, Any]) -> str:
    """The config as YAML text (what is printed and saved beside the outputs)."""
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)
