"""Checkpoints: atomic writes (temp file + rename), keep-last-N, best, resolution of ``-r``.

A checkpoint ``<dir>/<tag>`` is two files: ``<tag>.pdparams`` (the model's state dict, what
``-w`` loads and what other tools read) and ``<tag>.pdstate`` (optimizer, scheduler, epoch,
best metric, config name). Tags: ``epoch_<N>`` (the last ``keep_last`` are kept), ``best``
and ``latest`` (a copy of the newest epoch checkpoint). Each file is written whole (temp file +
rename) and the ``.pdstate`` holds the digest of its ``.pdparams``, so resume can tell a
matching pair from one a kill left half-replaced (``weights.read_resumable``). Finding and reading a checkpoint,
and loading weights into a model, is ``paddle_dcn.weights`` (``resolve``, ``load`` here are
its functions).
"""
from __future__ import annotations

import glob
import hashlib
import io
import os
import shutil
from typing import Any, Dict, Tuple, Union

import paddle

from .. import weights


def atomic_write(path: str, data: Union[bytes, str]) -> None:
    """``data`` (a str as UTF-8) to ``path`` via a temp file in the same directory and
    ``os.replace``: a reader, or a run killed meanwhile, never leaves a partial file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)


def atomic_save(obj: Any, path: str) -> str:
    """``paddle.save`` to ``path`` (:func:`atomic_write`); returns the SHA-256 (hex) of the
    bytes written."""
    buffer = io.BytesIO()
    paddle.save(obj, buffer)
    data = buffer.getvalue()
    atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()


class CheckpointManager:
    """Writes and prunes checkpoints under ``directory``."""

    def __init__(self, directory: str, keep_last: int = 2) -> None:
        if keep_last < 1:
            raise ValueError(f"checkpoint.keep_last must be >= 1, got {keep_last}")
        self.directory, self.keep_last = directory, int(keep_last)
        os.makedirs(directory, exist_ok=True)

    def save(self, tag: str, model_state: Dict[str, Any], state: Dict[str, Any]) -> str:
        """Writes ``<tag>.pdparams``, then ``<tag>.pdstate`` with the former's digest."""
        prefix = os.path.join(self.directory, tag)
        digest = atomic_save(model_state, prefix + ".pdparams")
        state = dict(state, **{weights.PARAMS_DIGEST_KEY: digest})
        atomic_save(state, prefix + ".pdstate")
        return prefix

    def copy(self, src_tag: str, dst_tag: str) -> None:
        for ext in (".pdparams", ".pdstate"):
            src = os.path.join(self.directory, src_tag + ext)
            dst = os.path.join(self.directory, dst_tag + ext)
            tmp = f"{dst}.tmp{os.getpid()}"
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)

    def epochs(self) -> list:
        return weights.checkpoint_epochs(self.directory)

    def prune(self) -> None:
        """Removes all but the last ``keep_last`` epoch checkpoints, and temp files that a killed
        process left behind."""
        for epoch in self.epochs()[: -self.keep_last]:
            for ext in (".pdparams", ".pdstate"):
                path = os.path.join(self.directory, f"epoch_{epoch}{ext}")
                if os.path.exists(path):
                    os.remove(path)
        for path in glob.glob(os.path.join(self.directory, "*.pd*.tmp*")):
            pid = path.rsplit(".tmp", 1)[1]
            if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
                os.remove(path)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# reading a checkpoint lives below the engine (models load pretrained parts too)
resolve = weights.resolve
load = weights.read_checkpoint
read_resumable = weights.read_resumable


_SEP = "@param@"


def _name_maps(model: paddle.nn.Layer) -> Tuple[Dict[str, str], Dict[str, str]]:
    unique_to_path = {p.name: path for path, p in model.named_parameters()}
    return unique_to_path, {v: k for k, v in unique_to_path.items()}


def _rename(key: str, table: Dict[str, str], sep_out: str, sep_in: str) -> str:
    """Replaces the longest parameter-name prefix of ``key`` using ``table``."""
    best = None
    for name in table:
        if key.startswith(name + sep_in) and (best is None or len(name) > len(best)):
            best = name
    return key if best is None else table[best] + sep_out + key[len(best) + len(sep_in):]


def portable_optimizer_state(state: Dict[str, Any], model: paddle.nn.Layer) -> Dict[str, Any]:
    """Optimizer state keyed by parameter paths (``backbone.res3.0.conv2.weight``) instead of
    Paddle's process-global unique names (``conv2d_60.w_0``), which depend on how many layers
    the process built before: a checkpoint must load in any process."""
    unique_to_path, _ = _name_maps(model)
    out: Dict[str, Any] = {}
    for key, value in state.items():
        if key == "master_weights" and isinstance(value, dict):
            out[key] = {unique_to_path.get(k, k): v for k, v in value.items()}
        elif key == "LR_Scheduler":
            out[key] = value
        else:
            out[_rename(key, unique_to_path, _SEP, "_")] = value
    return out


def restore_optimizer_state(state: Dict[str, Any], model: paddle.nn.Layer) -> Dict[str, Any]:
    """Inverse of :func:`portable_optimizer_state` for this process's ``model``."""
    _, path_to_unique = _name_maps(model)
    out: Dict[str, Any] = {}
    for key, value in state.items():
        if key == "master_weights" and isinstance(value, dict):
            out[key] = {path_to_unique.get(k, k): v for k, v in value.items()}
        elif key == "LR_Scheduler":
            out[key] = value
        else:
            out[_rename(key, path_to_unique, "_", _SEP)] = value
    return out
