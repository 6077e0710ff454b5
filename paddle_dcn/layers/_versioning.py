"""Versioned checkpoints for paddle_dcn layers.

Every paddle_dcn layer keeps a persistable int64 buffer ``version`` (shape ``[1]``) that
lands in ``state_dict()`` as ``<prefix>version``. When a later release renames or
reshapes a layer's parameters, it raises the class's ``VERSION`` and teaches
``upgrade_state_dict`` how to turn the old keys into the new ones.

Paddle's ``set_state_dict`` has no per-layer load hook, so loading goes through
:func:`upgrade_state_dict`: it walks the model and upgrades each versioned layer's
entries in place. :func:`load_state_dict` is that plus ``model.set_state_dict``; the engine,
export and the detectors' ``backbone_weights`` load through ``paddle_dcn.weights.load_weights``,
which upgrades the same way. A checkpoint without version keys (or a plain
``paddle.nn.Conv2D`` state dict loaded into a DeformConv2D) counts as version 1.
"""
from __future__ import annotations

from typing import Any, MutableMapping

import numpy as np
import paddle
from paddle import nn

VERSION_KEY = "version"


class VersionedLayer(nn.Layer):
    """Base of the paddle_dcn layers: adds the ``version`` buffer and the upgrade hook."""

    VERSION: int = 1

    def __init__(self) -> None:
        super().__init__()
        version = paddle.to_tensor([self.VERSION], dtype="int64")
        version.stop_gradient = True
        self.register_buffer(VERSION_KEY, version, persistable=True)

    @classmethod
    def upgrade_state_dict(
        cls, state_dict: MutableMapping[str, Any], prefix: str, from_version: int
    ) -> None:
        """Rewrites this layer's entries (keys starting with ``prefix``) from an older version.

        Version 1 is the first release: nothing to rename yet. Subclasses extend this.
        """


def checkpoint_version(state_dict: MutableMapping[str, Any], prefix: str) -> int:
    """Version stored for the layer at ``prefix`` (1 when the checkpoint has none)."""
    value = state_dict.get(prefix + VERSION_KEY)
    if value is None:
        return 1
    # Layer.to(dtype=...) casts every buffer, so the stored number may be a float
    return int(round(float(np.asarray(value.numpy() if hasattr(value, "numpy") else value).reshape(-1)[0])))


def upgrade_state_dict(model: nn.Layer, state_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Upgrades, in place, the entries of every versioned layer of ``model``; returns the dict.

    Raises ValueError when a layer's checkpoint is newer than this code.
    """
    for name, layer in model.named_sublayers(include_self=True):
        if not isinstance(layer, VersionedLayer):
            continue
        prefix = f"{name}." if name else ""
        stored = checkpoint_version(state_dict, prefix)
        if stored > layer.VERSION:
            raise ValueError(
                f"state_dict entry {prefix + VERSION_KEY!r} is version {stored}, but this "
                f"paddle_dcn's {type(layer).__name__} reads versions up to {layer.VERSION}: "
                "upgrade paddle_dcn to load this checkpoint"
            )
        if stored < layer.VERSION:
            layer.upgrade_state_dict(state_dict, prefix, stored)
        # in the buffer's own dtype: Layer.to(dtype=...) may have cast it
        state_dict[prefix + VERSION_KEY] = paddle.to_tensor(
            [layer.VERSION], dtype=getattr(layer, VERSION_KEY).dtype
        )
    return state_dict


def load_state_dict(model: nn.Layer, state_dict: MutableMapping[str, Any]):
    """``model.set_state_dict`` after upgrading old paddle_dcn layer entries.

    Returns what ``set_state_dict`` returns (missing keys, unexpected keys).
    """
    return model.set_state_dict(upgrade_state_dict(model, dict(state_dict)))
