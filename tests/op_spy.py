"""Which library ops a wrapper module called: its ``run_op`` replaced by a recorder that still
runs the op."""
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
