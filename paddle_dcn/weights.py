"""Model weights: finding a checkpoint's files and loading them into a model, one path for all.

Everything that puts a file's (or a state dict's) weights into a model goes through
:func:`load_weights`: the trainer (``-w`` and ``-r``), export and inference
(``engine.deploy``), and a detector's ``backbone_weights``. It upgrades the entries of
older paddle_dcn layers first (``layers/_versioning.py``: a checkpoint written before a
layer renamed its parameters still loads), refuses a checkpoint newer than this code, and
reports what did not fit (missing, unused, shape mismatches).

A checkpoint ``<dir>/<tag>`` is ``<tag>.pdparams`` (the model's state dict) plus, for the
trainer's checkpoints, ``<tag>.pdstate`` (optimizer, schedule, epoch: ``engine.checkpoint``).
The ``.pdstate`` holds the SHA-256 of the ``.pdparams`` written with it (``PARAMS_DIGEST_KEY``):
resume takes only a pair whose digests agree (:func:`read_resumable`), so a run killed between
writing the two files never resumes one epoch's weights with another's optimizer and epoch.
This module sits below ``models`` and ``engine`` (it imports neither): models load their
pretrained parts through it.
"""
from __future__ import annotations

import glob
import hashlib
import io
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import paddle

from .layers._versioning import upgrade_state_dict

_EPOCH_RE = re.compile(r"epoch_(\d+)\.pdparams$")
logger = logging.getLogger("paddle_dcn")

PARAMS_DIGEST_KEY = "params_sha256"
"""The ``.pdstate`` entry holding the SHA-256 (hex) of its ``.pdparams`` file."""


def _load_file(path: str, data: Optional[bytes] = None) -> Any:
    """``paddle.load(path)`` (from ``data``, the file's bytes, when the caller has read them);
    an unreadable file (empty, truncated) is a ValueError naming it."""
    try:
        return paddle.load(path if data is None else io.BytesIO(data))
    except Exception as err:  # paddle raises EOFError, UnpicklingError, ... for a bad file
        raise ValueError(f"cannot read {path} ({type(err).__name__}: {err}): the file is damaged or not "
                         f"a paddle.save file") from err


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
    None unless ``with_state`` (then the pair must be resumable: :func:`read_resumable`)."""
    if with_state:
        _, model_state, state = read_resumable(path)
        return model_state, state
    return _load_file(resolve(path) + ".pdparams"), None


def _read_resumable_pair(prefix: str) -> Tuple[Optional[Exception], Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """``(why prefix cannot be resumed or None, its model state, its state)``: the reason is the
    error to raise (FileNotFoundError for a missing file, ValueError otherwise); the weights
    file is read once, for its digest and its contents."""
    if not os.path.exists(prefix + ".pdparams"):
        return FileNotFoundError(f"{prefix}.pdparams is missing"), None, None
    if not os.path.exists(prefix + ".pdstate"):
        return FileNotFoundError(f"{prefix}.pdstate is missing: {prefix} holds weights only, it cannot be "
                                 f"resumed (use -w / pretrained weights instead)"), None, None
    try:
        state = _load_file(prefix + ".pdstate")
    except ValueError as err:
        return err, None, None
    with open(prefix + ".pdparams", "rb") as f:
        params = f.read()
    digest = state.get(PARAMS_DIGEST_KEY) if isinstance(state, dict) else None
    if digest is not None and digest != hashlib.sha256(params).hexdigest():
        return ValueError(f"{prefix}.pdparams and {prefix}.pdstate are from different saves (a run stopped "
                          f"between writing the two files, or the weights were changed since): resume from an "
                          f"earlier epoch_N, or start from these weights with -w"), None, None
    return None, _load_file(prefix + ".pdparams", params), state


def read_resumable(path: str) -> Tuple[str, Dict[str, Any], Dict[str, Any]]:
    """``(prefix, model_state, state)`` of the checkpoint to resume from ``path``.

    A prefix or file names the checkpoint; its ``.pdstate`` must exist and, when it holds
    ``PARAMS_DIGEST_KEY``, match the ``.pdparams`` (else a ValueError / FileNotFoundError
    saying why). A directory takes its ``latest``, else the newest ``epoch_N``, whose pair is
    whole and matching, with a warning for each newer one passed over (a run killed while
    copying ``epoch_N`` to ``latest`` resumes from ``epoch_N``)."""
    if os.path.isdir(path):
        candidates = [os.path.join(path, f"epoch_{n}") for n in reversed(checkpoint_epochs(path))]
        if os.path.exists(os.path.join(path, "latest.pdparams")):
            candidates.insert(0, os.path.join(path, "latest"))
        if not candidates:
            raise FileNotFoundError(f"no checkpoint (latest.pdparams or epoch_N.pdparams) in {path}")
    else:
        candidates = [resolve(path)]
    problems: List[Exception] = []
    for prefix in candidates:
        problem, model_state, state = _read_resumable_pair(prefix)
        if problem is None:
            for skipped in problems:
                logger.warning(f"not resuming from it: {skipped}")
            return prefix, model_state, state
        problems.append(problem)
    if len(candidates) == 1:
        raise problems[0]
    raise ValueError(f"no checkpoint in {path} can be resumed: " + "; ".join(map(str, problems)))


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
                 strict: bool = False, what: str = "weights", hint: str = "",
                 allow_unused: bool = True, source_name: str = "state dict") -> LoadReport:
    """Loads ``source`` (a checkpoint path for :func:`resolve`, or a state dict) into ``model``.

    ``prefix``: take only the entries starting with it, without it (``'backbone.'`` loads a
    whole model's checkpoint into its backbone). Versioned paddle_dcn layers are upgraded
    first (:func:`paddle_dcn.layers.upgrade_state_dict`; a newer checkpoint is a ValueError).
    Entries whose shape differs are not loaded. ``strict``: a missing entry or a shape
    mismatch is a ValueError naming them (``what`` names the source in it, ``hint`` says what
    must agree) instead of a report; with ``allow_unused=False`` also an entry the model has no
    place for (what deployment and evaluation ask: the file must be this model's weights).
    ``source_name`` names a state-dict ``source`` in the report. Returns the :class:`LoadReport`.
    """
    if isinstance(source, str):
        state, _ = read_checkpoint(source, with_state=False)
        report = LoadReport(resolve(source))
    else:
        state, report = dict(source), LoadReport(source_name)
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    state = upgrade_state_dict(model, dict(state))
    own = model.state_dict()
    report.missing = [k for k in own if k not in state]
    report.unused = sorted(k for k in state if k not in own)
    report.mismatched = [f"{k} {_shape(state[k])} vs {_shape(own[k])}" for k in own
                         if k in state and _shape(state[k]) != _shape(own[k])]
    unused = [] if allow_unused else report.unused
    if strict and (report.missing or report.mismatched or unused):
        def listed(entries: List[str]) -> str:
            return f"{entries[:5]}{' ...' if len(entries) > 5 else ''} ({len(entries)})"

        raise ValueError(
            f"{what} {report.source}: the checkpoint does not fit this model{hint}; missing: {listed(report.missing)}"
            f", shape mismatches: {listed(report.mismatched)}" + (f", unused: {listed(unused)}" if unused else ""))
    bad = {m.split(" ", 1)[0] for m in report.mismatched}
    fitting = {k: v for k, v in state.items() if k in own and k not in bad}
    model.set_state_dict(fitting)
    report.loaded = len(fitting)
    return report
