"""Export a model with paddle_dcn layers and run it with Paddle Inference.

    from paddle_dcn import inference
    inference.export_model(model, "out/model", [paddle.static.InputSpec([None, 3, 64, 64], "float32", "x")])
    predictor = inference.create_predictor("out/model")
    (y,) = inference.run_predictor(predictor, [x_numpy])
    inference.export_onnx(model, "out/model.onnx", [paddle.static.InputSpec([None, 3, 64, 64], "float32", "x")])

``paddle.jit.save`` writes ``<prefix>.json`` + ``<prefix>.pdiparams`` under Paddle 3's PIR
(``<prefix>.pdmodel`` under the old IR; both are found). A saved model refers to our ops by
name (``pdcn_*``): :func:`create_predictor` registers the op library in this process
(``paddle_dcn.ops.load_library``) before it builds the predictor; do the same if you build a
``paddle.inference`` predictor yourself.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import paddle

from . import ops

MODEL_SUFFIXES = (".json", ".pdmodel")
PARAMS_SUFFIX = ".pdiparams"


def model_files(path_prefix: str) -> tuple[str, str]:
    """``(model_file, params_file)`` of a model saved by ``paddle.jit.save`` at ``path_prefix``;
    ``params_file`` is ``""`` for a model without parameters.

    Raises FileNotFoundError naming the files looked for.
    """
    for suffix in MODEL_SUFFIXES:
        if os.path.isfile(path_prefix + suffix):
            params = path_prefix + PARAMS_SUFFIX
            # a model without parameters is saved without a params file
            return path_prefix + suffix, (params if os.path.isfile(params) else "")
    raise FileNotFoundError(
        f"no exported model at path_prefix={path_prefix!r}: looked for "
        + " or ".join(path_prefix + s for s in MODEL_SUFFIXES)
    )


def uses_paddle_dcn_ops(model_file: str) -> bool:
    """Whether the saved program calls any of our ``pdcn_*`` operators."""
    with open(model_file, "rb") as handle:
        return b"pdcn_" in handle.read()


def export_model(layer: paddle.nn.Layer, path_prefix: str, input_spec: Sequence) -> tuple[str, str]:
    """Puts ``layer`` in eval mode and saves it with ``paddle.jit.save``; returns ``model_files``.

    ``input_spec``: one ``paddle.static.InputSpec`` per forward input (``None`` for a
    dimension that varies, e.g. the batch or the number of boxes).
    """
    directory = os.path.dirname(path_prefix)
    if directory:
        os.makedirs(directory, exist_ok=True)
    layer.eval()
    paddle.jit.save(layer, path_prefix, input_spec=list(input_spec))
    return model_files(path_prefix)


def export_onnx(layer: paddle.nn.Layer, path: str, input_spec: Sequence, opset: int = 19, **kwargs) -> str:
    """Writes ``layer`` as a standard ONNX file (see :func:`paddle_dcn.onnx_export.export_onnx`:
    DeformConv nodes, checked with onnx.checker and against Paddle in onnxruntime); needs
    ``pip install -e .[export]``. Returns ``path``."""
    from .onnx_export import export_onnx as _export_onnx

    return _export_onnx(layer, path, input_spec, opset=opset, **kwargs)


def create_predictor(
    path_prefix: str,
    device: str = "cpu",
    cpu_threads: Optional[int] = None,
    ir_optim: bool = True,
    gpu_memory_mb: int = 256,
    onednn: Optional[bool] = None,
) -> "paddle.inference.Predictor":
    """A Paddle Inference predictor for the model saved at ``path_prefix``.

    Args:
        path_prefix: what was given to ``paddle.jit.save`` / :func:`export_model`.
        device: ``"cpu"`` or ``"gpu"`` / ``"gpu:N"`` (needs paddlepaddle-gpu).
        cpu_threads: math-library threads on CPU (None: Paddle's default).
        ir_optim: Paddle Inference's graph optimisation passes (our ops pass through them).
        gpu_memory_mb: initial GPU memory pool.
        onednn: oneDNN kernels on CPU; None (default) keeps Paddle's default (on). Our ops
            take inputs in oneDNN's memory layout (they convert them to plain NCHW), so a
            model with them needs no special setting. Off costs speed: a 6-conv 64-channel
            56x56 net ran 6.3 ms with oneDNN, 73 ms without (Paddle 3.3.1, this CPU).
    """
    ops.load_library()  # the model refers to pdcn_* ops: register them first
    model_file, params_file = model_files(path_prefix)
    config = paddle.inference.Config(model_file, params_file)
    if device == "cpu":
        config.disable_gpu()
        if onednn is True:
            config.enable_onednn()
        elif onednn is False:
            config.disable_onednn()
        if cpu_threads is not None:
            config.set_cpu_math_library_num_threads(int(cpu_threads))
    elif device.startswith("gpu"):
        gpu_id = int(device.split(":")[1]) if ":" in device else 0
        config.enable_use_gpu(int(gpu_memory_mb), gpu_id)
    else:
        raise ValueError(f"device must be 'cpu', 'gpu' or 'gpu:N', got {device!r}")
    config.switch_ir_optim(bool(ir_optim))
    config.disable_glog_info()
    return paddle.inference.create_predictor(config)


def run_predictor(
    predictor: "paddle.inference.Predictor",
    inputs: Union[Sequence[np.ndarray], Mapping[str, np.ndarray]],
) -> list[np.ndarray]:
    """Feeds ``inputs`` (in the order of ``predictor.get_input_names()``, or by name) and
    returns every output as a numpy array, in the order of ``get_output_names()``."""
    names = predictor.get_input_names()
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ValueError(f"inputs lacks {missing}; the model's inputs are {names}")
        arrays = [inputs[n] for n in names]
    else:
        arrays = list(inputs)
        if len(arrays) != len(names):
            raise ValueError(f"inputs must hold {len(names)} arrays ({names}), got {len(arrays)}")
    for name, array in zip(names, arrays):
        handle = predictor.get_input_handle(name)
        array = np.ascontiguousarray(array)
        handle.reshape(list(array.shape))
        handle.copy_from_cpu(array)
    predictor.run()
    return [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]
