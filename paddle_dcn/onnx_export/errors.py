"""The exporter's error type (importable without the onnx package)."""


class OnnxExportError(ValueError):
    """A model (or one of its layers) that cannot be written as a standard ONNX graph, or an
    exported file whose result differs from Paddle's."""
