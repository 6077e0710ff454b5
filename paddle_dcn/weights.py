"""Model weights: finding a checkpoint's files and loading them into a model, one path for all.

Everything that puts a file's (or a state dict's) weights into a model goes through
:func:`load_weights`: the trainer (``-w`` and ``-r``), export and inference
(``engine.deploy``), and a detector's ``backbone_weights``. It upgrades the entries of
older paddle_dcn layers first (``layers/_versioning.py``: a checkpoint written before a
layer renamed its parameters still loads), refuses a checkpoint newer than this code, and
reports what did not fit (missing, unused, shape mismatches).

A checkpoint ``<dir>/<tag>`` is ``<tag>.pdparams`` (the model's state dict) plus, for the
trainer's checkpoints, ``<tag>.pdstate`` (optimizer, schedule, epoch: ``engine.checkpoint``).
This module sits below ``models`` and ``engine`` (it imports neither): models load their
pretrained parts through it.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import paddle

from .layers._versioning import upgrade_state_dict

_EPOCH_RE = re.compile(r"epoch_(\d+)\.pdparams$")


def checkpoint_epochs(directory: str) -> List[int]:
    """The ``N`` of every ``epoch_N.pdparams`` in ``directory``, sorted."""
    found = []
    for path in glob.glob(os.path.join(directory, "epoch_*.pdparams")):
        m = _EPOCH_RE.search(path)
        if m:
            found.append(int(m.group(1)))
    return sorted(found)


def resolve(path: str) -> str:
    """``-r``/``-w`` argument -> checkpoint prefix (without extension).

    Accepts a prefix (``output/x/epoch_3``), a ``.pdparams``/``.pdstate`` file, or a
    directory (its ``latest``, else its highest ``epoch_N``).
    """
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "latest.pdparams")):
            return os.path.join(path, "latest")
        epochs = checkpoint_epochs(path)
        if not epochs:
            raise FileNotFoundError(f"no checkpoint (latest.pdparams or epoch_N.pdparams) in {path}")
        return os.path.join(path, f"epoch_{epochs[-1]}")
    for ext in (".pdparams", ".pdstate"):
        if path.endswith(ext):
            path = path[: -len(ext)]
    if not os.path.exists(path + ".pdparams"):
        raise FileNotFoundError(f"checkpoint not found: {path}.pdparams")
    return path


def read_checkpoint(path: str, with_state: bool = True) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
    """``(model_state, state)`` of the checkpoint ``path`` (see :func:`resolve`); ``state`` is
    None unless ``with_state`` (then a missing ``.pdstate`` is an error)."""
    prefix = resolve(path)
    model_state = paddle.load(prefix + ".pdparams")
    state = None
    if with_state:
        if not os.path.exists(prefix + ".pdstate"):
            raise FileNotFoundError(f"{prefix}.pdstate is missing: {prefix} holds weights only, "
                                    f"it cannot be resumed (use -w / pretrained weights instead)")
        state = paddle.load(prefix + ".pdstate")
    return model_state, state


@dataclass
class LoadReport:
    """What :func:`load_weights` did: ``source`` (the resolved prefix, or ``'state dict'``),
    ``loaded`` (entries copied), ``missing`` (model entries the source lacks: kept as they
    were), ``unused`` (source entries the model has no place for), ``mismatched``
    (``'name [file shape] vs [model shape]'``: not loaded)."""

    source: str
    loaded: int = 0
    missing: List[str] = field(default_factory=list)
    unused: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"loaded weights from {self.source}"
        if self.missing:
            text += f"; {len(self.missing)} parameters not in the file (kept initial): {self.missing[:5]}"
        if self.unused:
            text += f"; {len(self.unused)} entries unused: {self.unused[:5]}"
        if self.mismatched:
            text += f"; {len(self.mismatched)} shape mismatches (not loaded): {self.mismatched[:5]}"
        return text


def _shape(value: Any) -> List[int]:
    return [int(d) for d in getattr(value, "shape", [])]


def load_weights(model: paddle.nn.Layer, source: Union[str, Mapping[str, Any]], prefix: str = "",
                 strict: bool = False, what: str = "weights", hint: str = "") -> LoadReport:
    """Loads ``source`` (a checkpoint path for :func:`resolve`, or a state dict) into ``model``.

    ``prefix``: take only the entries starting with it, without it (``'backbone.'`` loads a
    whole model's checkpoint into its backbone). Versioned paddle_dcn layers are upgraded
    first (:func:`paddle_dcn.layers.upgrade_state_dict`; a newer checkpoint is a ValueError).
    Entries whose shape differs are not loaded. ``strict``: a missing entry or a shape
    mismatch is a ValueError naming them (``what`` names the source in it, ``hint`` says what
    must agree) instead of a report. Returns the :class:`LoadReport`.
    """
    if isinstance(source, str):
        state, _ = read_checkpoint(source, with_state=False)
        report = LoadReport(resolve(source))
    else:
        state, report = dict(source), LoadReport("state dict")
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    state = upgrade_state_dict(model, dict(state))
    own = model.state_dict()
    report.missing = [k for k in own if k not in state]
    report.unused = sorted(k for k in state if k not in own)
    report.mismatched = [f"{k} {_shape(state[k])} vs {_shape(own[k])}" for k in own
                         if k in state and _shape(state[k]) != _shape(own[k])]
    if strict and (report.missing or report.mismatched):
        raise ValueError(
            f"{what} {report.source}: the checkpoint does not fit this model{hint}; missing: {report.missing[:5]}"
            f"{' ...' if len(report.missing) > 5 else ''}, shape mismatches: {report.mismatched[:5]}")
    bad = {m.split(" ", 1)[0] for m in report.mismatched}
    fitting = {k: v for k, v in state.items() if k in own and k not in bad}
    model.set_state_dict(fitting)
    report.loaded = len(fitting)
    return report
