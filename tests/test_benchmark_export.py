"""tools/benchmark_export.py: one tiny timing run, its table and its section of the docs."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))

import benchmark_export  # noqa: E402


def test_benchmark_export_times_both_formats_and_writes_its_section(tmp_path):
    doc = tmp_path / "bench.md"
    doc.write_text("intro\n<!-- onnx-export:begin -->\nold\n<!-- onnx-export:end -->\noutro\n")
    rows = benchmark_export.main(["-c", "configs/dcn_r50.yml", "--batch", "2", "--repeats", "1",
                                  "--write", str(doc)])
    (row,) = rows
    assert row["deform_convs"] == 7 and row["batch"] == 2
    assert row["ort_ms"] > 0 and row["paddle_ms"] > 0
    assert row["max_diff"] < 1e-4  # the two exports compute the same probabilities
    text = doc.read_text()
    assert "old" not in text and text.startswith("intro") and text.rstrip().endswith("outro")
    assert "| dcn_r50 | 7 | 2 |" in text


def test_offset_predictors_of_every_deformable_operator_are_perturbed():
    from paddle_dcn.config import load_config
    from paddle_dcn.registry import MODELS, build

    counts = {}
    for config in ("configs/dcn_r50.yml", "configs/dcnv3_r50.yml", "configs/dcnv4_flash_r50.yml", "configs/r50.yml"):
        model = build(MODELS, load_config(config)["model"])
        params = benchmark_export._offset_predictors(model)
        # their weights start at zero: these are the predictors (biases may hold a mask's start)
        assert all(not p.numpy().any() for p in params if p.ndim > 1)
        counts[config.split("/")[1]] = len(params)
    # 7 deformable layers: DCN v2's conv_offset (weight + bias), DCNv3's offset and mask Linears,
    # DCNv4's fused offset_mask Linear
    assert counts == {"dcn_r50.yml": 14, "dcnv3_r50.yml": 28, "dcnv4_flash_r50.yml": 14, "r50.yml": 0}
