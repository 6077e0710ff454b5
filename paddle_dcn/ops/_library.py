"""Finds, loads and calls the compiled operator library (the only module that knows it exists).

The library is built ahead of time by ``pip install --no-build-isolation -e .``
and lives beside the package as ``paddle_dcn/_pdcn_ops*.so``. Loading registers
our ``pdcn_*`` operators with Paddle (dygraph, ``paddle.jit.to_static`` and
Paddle Inference all see them); nothing is ever compiled at import time.
"""
from __future__ import annotations

import glob
import os
import threading
from typing import Any

import paddle
import paddle.utils.cpp_extension  # imported quietly by paddle_dcn._paddle_import (no ccache warning)
from paddle import _C_ops
from paddle.jit.marker import unified

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIBRARY_GLOBS = ("_pdcn_ops_pd_*.so", "_pdcn_ops_pd_.so", "_pdcn_ops*.so")
_lock = threading.Lock()
_loaded_path: str | None = None

BUILD_HINT = (
    "paddle_dcn's operator library is not built. From the repository root run\n"
    "    pip install --no-build-isolation -e .\n"
    "in an environment that already has paddlepaddle (or paddlepaddle-gpu) installed."
)


class OpLibraryNotBuiltError(ImportError):
    """Raised when the compiled operator library cannot be found."""


def library_path() -> str:
    """Absolute path of the compiled operator library; raises OpLibraryNotBuiltError if absent."""
    for pattern in _LIBRARY_GLOBS:
        found = sorted(glob.glob(os.path.join(_PACKAGE_DIR, pattern)))
        if found:
            return found[0]
    raise OpLibraryNotBuiltError(BUILD_HINT + f"\n(looked for _pdcn_ops*.so in {_PACKAGE_DIR})")


def load_library() -> str:
    """Registers the operators with Paddle once per process; returns the library path.

    Call it before ``paddle.inference.create_predictor`` when running an exported
    model that contains paddle_dcn operators.
    """
    global _loaded_path
    with _lock:
        if _loaded_path is None:
            path = library_path()
            paddle.utils.cpp_extension.load_op_meta_info_and_register_op(path)
            _loaded_path = path
        return _loaded_path


@unified
def run_op(op_name: str, *inputs_then_attrs: Any) -> Any:
    """Runs a registered ``pdcn_*`` operator: inputs first, then attributes in declared order.

    Returns the single output, or a tuple when the op has several. Under ``paddle.no_grad()``
    (dygraph) the tensor inputs go in detached: Paddle's custom-op call traces a backward node
    whatever the grad mode, which would keep the inputs alive and let gradients through.
    """
    if paddle.in_dynamic_mode() and not paddle.is_grad_enabled():
        inputs_then_attrs = tuple(a.detach() if isinstance(a, paddle.Tensor) else a for a in inputs_then_attrs)
    outs = _C_ops._run_custom_op(op_name, *inputs_then_attrs)
    return outs[0] if len(outs) == 1 else tuple(outs)
