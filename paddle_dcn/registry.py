"""Name -> class registries, one per kind of object a config can build.

Each kind (models, datasets, transforms, optimizers, schedulers, metrics) has its own small
:class:`Registry`. Classes register with a decorator; a second registration under the same
name is refused; looking up an unknown name raises a ``KeyError`` that lists the valid
names. Building an object from a config section is the separate function :func:`build`,
which also checks the section's keys against the constructor's signature, so a misspelt key
is an error that lists the valid keys instead of a silently ignored value.
"""
from __future__ import annotations

import copy
import inspect
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Sequence, TypeVar

T = TypeVar("T")


class Registry:
    """A named mapping from strings to classes (or factory functions) of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: Dict[str, Callable[..., Any]] = {}

    def register(self, name: Optional[str] = None) -> Callable[[T], T]:
        """Decorator: ``@MODELS.register()`` registers under the class name, or ``name``."""

        def decorator(obj: T) -> T:
            key = name or obj.__name__  # type: ignore[attr-defined]
            if key in self._entries:
                raise KeyError(
                    f"{self.kind} registry: {key!r} is already registered "
                    f"(by {self._entries[key].__module__}); choose another name"
                )
            self._entries[key] = obj  # type: ignore[assignment]
            return obj

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        """The class registered as ``name``; KeyError listing the valid names otherwise."""
        if name not in self._entries:
            _import_builtins()
        if name not in self._entries:
            raise KeyError(
                f"unknown {self.kind} {name!r}; valid {self.kind} names: {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> list:
        _import_builtins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


_BUILTIN_MODULES = ("paddle_dcn.data", "paddle_dcn.models", "paddle_dcn.engine")


def _import_builtins() -> None:
    """Imports the modules whose classes register themselves (once), so that building from
    a config works whatever the caller imported."""
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


MODELS = Registry("model")
BACKBONES = Registry("backbone")
DATASETS = Registry("dataset")
TRANSFORMS = Registry("transform")
OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")
METRICS = Registry("metric")


def accepted_keys(fn: Callable[..., Any]) -> Optional[list]:
    """Keyword names ``fn`` accepts, or None when it takes ``**kwargs`` (anything goes)."""
    target = fn.__init__ if inspect.isclass(fn) else fn  # type: ignore[misc]
    params = list(inspect.signature(target).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [
        p.name
        for p in params
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


class UnknownKeyError(KeyError, ValueError):
    """A config section names keys its target does not take; the message lists the valid ones.
    Both a KeyError (the registries' error) and a ValueError (the layers' argument error)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def check_keys(section: str, given: Iterable[str], valid: Sequence[str],
               error: type = UnknownKeyError) -> None:
    """The one "unknown key(s)" check of config sections: raises ``error`` (default
    :class:`UnknownKeyError`) ``'<section>: unknown key(s) 'a', 'b'; valid keys: x, y'`` when
    ``given`` has keys not in ``valid``."""
    unknown = sorted(set(map(str, given)) - set(valid))
    if unknown:
        raise error(
            f"{section}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}"
        )


def construct(cls: Callable[..., Any], cfg: Optional[Dict[str, Any]], section: str, **fixed: Any) -> Any:
    """``cls(**cfg, **fixed)`` for a config section without ``type`` (a sub-part whose class
    the parent fixes): ``cfg``'s keys are checked (:func:`check_keys`) against what ``cls``
    accepts, less ``fixed`` (the values the parent sets, which the config cannot)."""
    cfg = dict(cfg or {})
    valid = accepted_keys(cls)
    if valid is not None:
        check_keys(section, cfg, [k for k in valid if k not in fixed])
    return cls(**cfg, **fixed)


def build(registry: Registry, cfg: Dict[str, Any], **extra: Any) -> Any:
    """Builds ``registry[cfg['type']](**rest_of_cfg, **extra)``.

    ``cfg`` is not modified. ``extra`` carries objects the config cannot hold (parameters,
    iteration counts, ...). Keys the constructor does not accept raise ``KeyError`` listing
    the keys it does accept (:func:`check_keys`).
    """
    if not isinstance(cfg, dict):
        raise TypeError(f"{registry.kind} config must be a mapping with a 'type' key, got {cfg!r}")
    if "type" not in cfg:
        raise KeyError(
            f"{registry.kind} config {cfg!r} has no 'type'; valid types: {', '.join(registry.names())}"
        )
    kwargs = copy.deepcopy({k: v for k, v in cfg.items() if k != "type"})
    cls = registry.get(cfg["type"])
    valid = accepted_keys(cls)
    if valid is not None:
        hidden = set(extra)
        check_keys(f"{registry.kind} {cfg['type']!r}", set(kwargs) - hidden, [k for k in valid if k not in hidden])
    kwargs.update(extra)
    return cls(**kwargs)
