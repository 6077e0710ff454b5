"""The ONNX graph under construction: value names, constants, nodes.

:class:`GraphBuilder` walks a :class:`~.trace.TracedProgram` op by op. Each converter (see
``convert_*.py``) reads the op's operands through the builder and either emits ONNX nodes or,
when every operand is a known constant, records the result as a constant (folded into an
initializer only if an emitted node needs it). Integer vectors that are only partly known
(shapes with a dynamic batch dimension) are tracked as tuples with ``None`` for the unknown
entries, so that converters which need static sizes (affine grids, splits, flatten) can read
what is known without constant-folding what is not.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle
from onnx import TensorProto, helper, numpy_helper

from .errors import OnnxExportError

PartialInts = Tuple[Optional[int], ...]


# converter: (builder, op) -> None; registered per PIR op name
CONVERTERS: Dict[str, Callable] = {}


def converter(*op_names: str):
    """Registers a converter for PIR ops ``op_names`` (e.g. ``"pd_op.conv2d"``)."""

    def register(fn):
        for name in op_names:
            CONVERTERS[name] = fn
        return fn

    return register


_DTYPES = [  # (paddle dtype, numpy dtype, ONNX element type)
    (paddle.float32, np.float32, TensorProto.FLOAT),
    (paddle.float64, np.float64, TensorProto.DOUBLE),
    (paddle.float16, np.float16, TensorProto.FLOAT16),
    (paddle.bfloat16, None, TensorProto.BFLOAT16),
    (paddle.int64, np.int64, TensorProto.INT64),
    (paddle.int32, np.int32, TensorProto.INT32),
    (paddle.int16, np.int16, TensorProto.INT16),
    (paddle.int8, np.int8, TensorProto.INT8),
    (paddle.uint8, np.uint8, TensorProto.UINT8),
    (paddle.bool, np.bool_, TensorProto.BOOL),
]


def numpy_dtype(dtype) -> np.dtype:
    for pd, npd, _ in _DTYPES:
        if dtype == pd and npd is not None:
            return np.dtype(npd)
    raise OnnxExportError(f"dtype {dtype} has no numpy equivalent in the exporter")


def onnx_dtype(dtype) -> int:
    for pd, npd, ox in _DTYPES:
        if dtype == pd or (npd is not None and not isinstance(dtype, paddle.dtype) and np.dtype(dtype) == npd):
            return ox
    raise OnnxExportError(f"dtype {dtype} has no ONNX equivalent in the exporter")


def layer_of(op) -> str:
    """The layer path Paddle records on an op (``/ResNet/Sequential_1/Bottleneck/...``)."""
    return str(op.attrs().get("struct_name", "") or "(model's forward)")


def attr(op, key: str, default=None):
    return op.attrs().get(key, default)


class GraphBuilder:
    """Names, constants and nodes of the ONNX graph being written (one per export)."""

    def __init__(self, opset: int, params: Dict[str, np.ndarray]) -> None:
        self.opset = int(opset)
        self.params = params
        self.nodes: List = []
        self.initializers: Dict[str, np.ndarray] = {}
        self._names: Dict[str, str] = {}             # PIR value id -> ONNX name
        self._consts: Dict[str, np.ndarray] = {}     # value id -> fully known value
        self._partial: Dict[str, PartialInts] = {}   # value id -> partly known int vector/scalar
        self._vectors: Dict[str, list] = {}          # vector value id -> its element Values
        self._used: set = set()
        self._const_names: Dict[str, str] = {}       # value id -> initializer name
        self._hints: Dict[str, str] = {}             # value id -> initializer name prefix

    # ---- names -------------------------------------------------------------------------
    def fresh(self, prefix: str) -> str:
        prefix = prefix.replace("pd_op.", "").replace("custom_op.", "").replace(".", "_")
        k = 0
        while f"{prefix}_{k}" in self._used:
            k += 1
        name = f"{prefix}_{k}"
        self._used.add(name)
        return name

    @staticmethod
    def is_null(value) -> bool:
        """Whether an optional operand is absent."""
        return value is None or not value.initialized()

    def bind(self, value, name: str) -> None:
        self._names[value.id] = name

    def bind_const(self, value, array: np.ndarray, hint: Optional[str] = None) -> None:
        """``value`` is the constant ``array``; ``hint`` names its initializer if one is made."""
        self._consts[value.id] = np.asarray(array)
        if hint:
            self._hints[value.id] = hint

    def bind_partial(self, value, entries: Sequence[Optional[int]]) -> None:
        self._partial[value.id] = tuple(None if e is None else int(e) for e in entries)

    def bind_vector(self, value, elements: list) -> None:
        self._vectors[value.id] = list(elements)

    def vector(self, value) -> list:
        if value.id not in self._vectors:
            raise OnnxExportError(f"internal: vector value {value} was not built by builtin.combine/split")
        return self._vectors[value.id]

    def has_name(self, value) -> bool:
        return value.id in self._names or value.id in self._consts

    def name(self, value) -> str:
        """The ONNX name of ``value``; a known constant becomes an initializer on first use."""
        if value.id in self._names:
            return self._names[value.id]
        if value.id in self._consts:
            if value.id not in self._const_names:
                hint = self._hints.get(value.id, "const")
                self._const_names[value.id] = self.constant(self._consts[value.id], hint)
            return self._const_names[value.id]
        raise OnnxExportError(f"internal: value {value} is used before an op defined it")

    # ---- constants ---------------------------------------------------------------------
    def known(self, value) -> Optional[np.ndarray]:
        """The value of ``value`` when it is a constant (parameters, fills, folded results)."""
        return None if self.is_null(value) else self._consts.get(value.id)

    def partial(self, value) -> Optional[PartialInts]:
        """An int scalar/vector's entries with ``None`` where unknown; None if nothing known."""
        known = self.known(value)
        if known is not None and known.dtype.kind in "iu":
            return tuple(int(v) for v in known.reshape(-1))
        return self._partial.get(value.id)

    def constant(self, array, prefix: str = "const") -> str:
        """Adds ``array`` as an initializer; returns its name."""
        name = self.fresh(prefix)
        self.initializers[name] = np.asarray(array)
        return name

    def ints(self, values: Sequence[int], prefix: str = "ints") -> str:
        return self.constant(np.asarray(list(values), dtype=np.int64), prefix)

    def scalar_like(self, value, number: float, prefix: str = "scalar") -> str:
        """A 0-D constant with ``value``'s dtype."""
        return self.constant(np.asarray(number, dtype=numpy_dtype(value.dtype)), prefix)

    # ---- nodes -------------------------------------------------------------------------
    def node(self, op_type: str, inputs: Sequence[str], outputs: int = 1, prefix: Optional[str] = None,
             **attrs) -> List[str]:
        """Emits one ONNX node; returns its output names (``""`` inputs are absent optionals)."""
        outs = [self.fresh(prefix or op_type.lower()) for _ in range(outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.fresh("node_" + op_type), **attrs))
        return outs

    def emit(self, op, op_type: str, inputs: Sequence[str], **attrs) -> str:
        """Emits a one-output node for ``op`` and binds the op's result 0 to it."""
        (out,) = self.node(op_type, inputs, prefix=op.name(), **attrs)
        self.bind(op.result(0), out)
        return out

    def initializer_protos(self) -> list:
        # np.array, not np.ascontiguousarray: that one turns a 0-D constant into 1-D
        return [numpy_helper.from_array(np.array(a, order="C"), name) for name, a in self.initializers.items()]
