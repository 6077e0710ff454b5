"""Export paddle_dcn models to standard ONNX, verified in onnxruntime.

    from paddle_dcn.onnx_export import export_onnx
    export_onnx(model, "model.onnx", [paddle.static.InputSpec([None, 3, 48, 48], "float32", "image")])

How: the layer is traced once with ``paddle.jit.to_static`` into Paddle's PIR program
(:mod:`.trace`), and each op of the program is written as standard ONNX nodes by a converter
(``convert_*.py``); paddle_dcn's deformable convolutions become one ``DeformConv`` node each
(opset 19+) with their ``offset_group``, ``group``, strides, pads, dilations, bias, and a mask
input for DCN v2 only. Why not paddle2onnx: it does not know our custom ops, its DeformConv
mapping of Paddle's own op drops ``offset_group`` (the file is then rejected by onnxruntime),
it pins ``onnx<=1.17`` and its optimiser pip-installs packages at export time.

An op without a standard ONNX equivalent (deformable RoI pooling) or without a converter is
an :class:`OnnxExportError` naming the layer and the reason; no file is written then. Every
written file passes ``onnx.checker`` (full check), and with ``verify=True`` (default) its
onnxruntime output on a random batch must match Paddle's, or the export fails.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence

import numpy as np
import paddle

from .errors import OnnxExportError

DEFAULT_OPSET = 19
SUPPORTED_OPSETS = (19, 20, 21, 22)

__all__ = ["export_onnx", "OnnxExportError", "DEFAULT_OPSET", "SUPPORTED_OPSETS", "build_model", "verify_model",
           "unsupported_ops", "why_unsupported", "random_inputs"]


def _require_onnx():
    try:
        import onnx  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("ONNX export needs the 'onnx' package: pip install -e .[export] "
                          "(onnx and onnxruntime)") from err


def build_model(layer: paddle.nn.Layer, input_spec: Sequence[paddle.static.InputSpec], opset: int = DEFAULT_OPSET,
                output_names: Optional[Sequence[str]] = None):
    """The ``onnx.ModelProto`` of ``layer`` on ``input_spec`` (dynamic dims: ``None``/-1)."""
    _require_onnx()
    from onnx import helper

    from . import convert_aggregate, convert_math, convert_nn, convert_tensor  # noqa: F401 - registers the converters
    from .fuse import fuse_conv_bias
    from .graph import CONVERTERS, GraphBuilder, layer_of, onnx_dtype
    from .trace import trace

    if opset not in SUPPORTED_OPSETS:
        raise ValueError(f"opset must be one of {SUPPORTED_OPSETS}, got {opset!r}")
    program = trace(layer, input_spec)
    live = _live_ops(program)
    b = GraphBuilder(opset, program.params)
    for index, op in enumerate(program.ops):
        if index not in live:
            continue
        convert = CONVERTERS.get(op.name())
        if convert is None:
            raise OnnxExportError(
                f"layer {layer_of(op)}: Paddle op {op.name()} has no converter in paddle_dcn's ONNX exporter "
                f"(converted ops: {', '.join(sorted(n.split('.', 1)[1] for n in CONVERTERS))})")
        convert(b, op)

    def dims(shape, name):
        return [d if d >= 0 else ("batch" if i == 0 else f"{name}_dim{i}") for i, d in enumerate(int(s) for s in shape)]

    graph_inputs = [helper.make_tensor_value_info(b.name(v), onnx_dtype(v.dtype), dims(v.shape, b.name(v)))
                    for v in program.inputs]
    names = list(output_names) if output_names else (
        ["output"] if len(program.outputs) == 1 else [f"output_{i}" for i in range(len(program.outputs))])
    if len(names) != len(program.outputs):
        raise ValueError(f"output_names has {len(names)} names, the model returns {len(program.outputs)} tensors")
    outputs = []
    for value, name in zip(program.outputs, names):
        b.nodes.append(helper.make_node("Identity", [b.name(value)], [name], name=b.fresh("node_output")))
        outputs.append(helper.make_tensor_value_info(name, onnx_dtype(value.dtype), dims(value.shape, name)))
    nodes = fuse_conv_bias(b.nodes, b.initializers, names)
    graph = helper.make_graph(nodes, type(layer).__name__, graph_inputs, outputs, initializer=b.initializer_protos())
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="paddle_dcn")
    model.ir_version = min(model.ir_version, 10)  # onnxruntime 1.20+ reads IR 10
    return _with_output_shapes(model)


def _with_output_shapes(model):
    """Output shapes from ONNX shape inference (Paddle's static types of some ops, e.g.
    grid_sample's, are not exact), dynamic dims keeping their symbolic names."""
    from onnx import shape_inference

    import copy

    declared = {o.name: copy.deepcopy(o.type) for o in model.graph.output}
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")
    inferred = {o.name: o.type for o in shape_inference.infer_shapes(model).graph.output}
    for out in model.graph.output:
        source = inferred.get(out.name)
        if source is None or not source.tensor_type.HasField("shape"):
            source = declared[out.name]
        out.type.CopyFrom(source)
    return model


def unsupported_ops(layer: paddle.nn.Layer, input_spec: Sequence[paddle.static.InputSpec]) -> List[tuple]:
    """``[(Paddle op, layer path), ...]`` of the ops in ``layer``'s traced program that have
    no ONNX converter or no standard ONNX equivalent (empty: the layer exports)."""
    _require_onnx()
    from . import convert_aggregate, convert_math, convert_nn, convert_tensor  # noqa: F401 - registers the converters
    from .graph import CONVERTERS, layer_of
    from .trace import trace

    program = trace(layer, input_spec)
    found = []
    for index in sorted(_live_ops(program)):
        op = program.ops[index]
        if op.name() not in CONVERTERS or op.name() in convert_nn.NO_STANDARD_EQUIVALENT:
            entry = (op.name(), layer_of(op))
            if entry not in found:
                found.append(entry)
    return found


_NO_SINGLE_OP = ("pd_op.generate_proposals", "pd_op.distribute_fpn_proposals")


def why_unsupported(op_name: str) -> str:
    """Why the op ``op_name`` (one of :func:`unsupported_ops`'s) is not in an exported file."""
    from .convert_nn import NO_STANDARD_EQUIVALENT

    if op_name in NO_STANDARD_EQUIVALENT:
        return "no standard ONNX operator (deformable RoI pooling)"
    if op_name in _NO_SINGLE_OP:
        return "no single ONNX operator (a decomposition into TopK/NonMaxSuppression/Gather is not written)"
    return "no converter in paddle_dcn's exporter (ONNX has an equivalent)"


def _live_ops(program) -> set:
    """Indices of the ops the outputs depend on."""
    defining = {}
    for index, op in enumerate(program.ops):
        for i in range(op.num_results()):
            defining[op.result(i).id] = index
    live, stack = set(), [defining[v.id] for v in program.outputs if v.id in defining]
    while stack:
        index = stack.pop()
        if index in live:
            continue
        live.add(index)
        for v in program.ops[index].operands_source():
            if v is not None and v.initialized() and v.id in defining:
                stack.append(defining[v.id])
    return live


def random_inputs(input_spec: Sequence[paddle.static.InputSpec], batch: int = 2, size: int = 64,
                  seed: int = 0) -> List[np.ndarray]:
    """One standard-normal array per spec entry; a dynamic first dimension becomes ``batch``,
    any other dynamic dimension ``size``."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in input_spec:
        shape = [(batch if i == 0 else size) if (d is None or d < 0) else int(d) for i, d in enumerate(spec.shape)]
        arrays.append(rng.standard_normal(shape).astype(np.dtype(str(spec.dtype).replace("paddle.", ""))))
    return arrays


def verify_model(path: str, layer: paddle.nn.Layer, inputs: Sequence[np.ndarray], rtol: float = 1e-4,
                 atol: float = 1e-5, threads: int = 1) -> float:
    """Runs ``path`` in onnxruntime (CPU) and ``layer`` in Paddle on ``inputs``; returns the
    largest ``max|ort - paddle| / (atol + rtol * max|paddle|)`` over the outputs (the error
    relative to each output's scale) and raises OnnxExportError when it exceeds 1 (a file
    that computes something else is an export failure)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feeds = {i.name: a for i, a in zip(session.get_inputs(), inputs)}
    got = session.run(None, feeds)
    was_training = layer.training
    layer.eval()
    with paddle.no_grad():
        want = layer(*[paddle.to_tensor(a) for a in inputs])
    if was_training:
        layer.train()
    from .trace import _flatten

    want = [w.numpy() for w in _flatten(want)]
    worst = 0.0
    for k, (g, w) in enumerate(zip(got, want)):
        if g.shape != w.shape:
            raise OnnxExportError(f"{path}: output {k} has shape {list(g.shape)} in onnxruntime, {list(w.shape)} in Paddle")
        ratio = float(np.max(np.abs(g - w)) / (atol + rtol * np.max(np.abs(w)))) if g.size else 0.0
        if not np.isfinite(ratio) or ratio > 1.0:
            raise OnnxExportError(f"{path}: output {k} differs from Paddle's: max |diff| "
                                  f"{float(np.max(np.abs(g - w))):.3g} (rtol {rtol}, atol {atol})")
        worst = max(worst, ratio)
    return worst


def export_onnx(layer: paddle.nn.Layer, path: str, input_spec: Sequence[paddle.static.InputSpec],
                opset: int = DEFAULT_OPSET, output_names: Optional[Sequence[str]] = None, verify: bool = True,
                verify_inputs: Optional[Sequence[np.ndarray]] = None) -> str:
    """Writes ``layer`` as a standard ONNX file at ``path`` and returns the path.

    Args:
        layer: the model (put in eval mode for tracing; its mode is restored).
        path: the ``.onnx`` file; its directory is created.
        input_spec: one ``paddle.static.InputSpec`` per forward input; ``None`` dims stay
            dynamic in the graph (``batch`` for the first).
        opset: ONNX opset, one of ``SUPPORTED_OPSETS`` (19: DeformConv; 22: also its bfloat16).
        output_names: names of the graph outputs (default ``output`` / ``output_<i>``).
        verify: run the file in onnxruntime and compare with Paddle (needs onnxruntime;
            skipped with a note when it is not installed) on ``verify_inputs`` (default: a
            random batch of 2, other dynamic dimensions 64, see :func:`random_inputs`).

    Raises:
        OnnxExportError: a layer that cannot be expressed (named, with the reason), or a file
            whose result differs from Paddle's. Nothing is left at ``path`` then.
    """
    import onnx

    model = build_model(layer, input_spec, opset=opset, output_names=output_names)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = path + ".tmp"
    onnx.save(model, tmp)
    try:
        onnx.checker.check_model(tmp, full_check=True)
        if verify:
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                print("onnxruntime is not installed: the exported file was not run (pip install -e .[export])")
            else:
                verify_model(tmp, layer, list(verify_inputs) if verify_inputs is not None else random_inputs(input_spec))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
