"""Which library ops a wrapper module called (its ``run_op`` replaced by a recorder that still
runs the op), and which ops a traced layer's program holds."""
import paddle

from paddle_dcn.ops._library import run_op


def spy_on_run_op(monkeypatch, module: str) -> list:
    """Patches ``<module>.run_op`` (e.g. ``"paddle_dcn.ops.row_bias"``) for the test; returns the
    list the op names it is called with are appended to, in call order."""
    calls = []

    def spy(name, *args):
        calls.append(name)
        return run_op(name, *args)
    monkeypatch.setattr(f"{module}.run_op", spy)
    return calls


def traced_op_names(layer, shape=(None, 8, 7, 7)) -> set:
    """The op names of ``layer``'s traced program (paddle_dcn.onnx_export.trace) for a float32
    input of ``shape``."""
    from paddle_dcn.onnx_export.trace import trace

    return {op.name() for op in trace(layer, [paddle.static.InputSpec(list(shape), "float32")]).ops}
