"""Trace a layer into Paddle's PIR program: the op list an ONNX graph is written from.

The layer runs once under ``paddle.jit.to_static`` (``full_graph=True``) on ``input_spec``,
inside a thin wrapper so that the layer itself keeps its dygraph ``forward``. The result holds
the program's ops in order, the graph inputs (``pd_op.data``) and outputs (PIR Values), and the
value of every parameter and buffer (numpy, by the name ``builtin.parameter`` ops refer to).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np
import paddle


@dataclass
class TracedProgram:
    """What :func:`trace` returns; ``ops`` are PIR ``Operation`` objects in program order."""

    ops: List = field(default_factory=list)
    inputs: List = field(default_factory=list)   # PIR Values of the pd_op.data ops
    outputs: List = field(default_factory=list)  # PIR Values the forward returns, flattened
    params: Dict[str, np.ndarray] = field(default_factory=dict)


class _Traced1(paddle.nn.Layer):
    """``forward(x) = layer(x)``: to_static wraps this, not the user's layer (to_static
    needs a fixed number of named arguments, hence one class per arity)."""

    def __init__(self, layer: paddle.nn.Layer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x0):
        return self.layer(x0)


class _Traced2(_Traced1):
    def forward(self, x0, x1):
        return self.layer(x0, x1)


class _Traced3(_Traced1):
    def forward(self, x0, x1, x2):
        return self.layer(x0, x1, x2)


_WRAPPERS = {1: _Traced1, 2: _Traced2, 3: _Traced3}


def _flatten(outputs) -> list:
    if isinstance(outputs, (list, tuple)):
        return [v for item in outputs for v in _flatten(item)]
    if isinstance(outputs, dict):
        return [v for key in outputs for v in _flatten(outputs[key])]
    return [outputs]


def trace(layer: paddle.nn.Layer, input_spec: Sequence[paddle.static.InputSpec]) -> TracedProgram:
    """Traces ``layer`` in eval mode (its training flag is restored afterwards)."""
    was_training = layer.training
    layer.eval()
    try:
        if len(input_spec) not in _WRAPPERS:
            raise ValueError(f"input_spec must have 1 to {max(_WRAPPERS)} entries, got {len(input_spec)}")
        wrapper = _WRAPPERS[len(input_spec)](layer)
        static = paddle.jit.to_static(wrapper, input_spec=list(input_spec), full_graph=True)
        program = static.forward.concrete_program
    finally:
        if was_training:
            layer.train()
    ops = list(program.main_program.global_block().ops)
    eager, _values = program.parameters
    params = {t.name: np.asarray(t.numpy()) for t in eager}
    inputs = [op.result(0) for op in ops if op.name() == "pd_op.data"]
    return TracedProgram(ops=ops, inputs=inputs, outputs=_flatten(program.outputs), params=params)
