"""tools/benchmark_aggregate.py: one tiny timing run and its section of the docs."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))

import benchmark_aggregate  # noqa: E402


def test_benchmark_aggregate_times_every_candidate_and_writes_its_section(tmp_path):
    doc = tmp_path / "bench.md"
    doc.write_text("a\n<!-- dcnv3-cpu:begin -->\nold\n<!-- dcnv3-cpu:end -->\nb\n")
    (row,) = benchmark_aggregate.main(["--repeats", "1", "--shapes", "3", "--write", str(doc)])
    assert all(row[k] > 0 for k in ("ours_f", "ref_f", "ours_fb", "ref_fb", "v3", "v3_ref", "v4", "v4_dw"))
    assert row["layout"] == "NHWC"
    text = doc.read_text()
    assert "old" not in text and "| InternImage-T stage 4 | 1x7x7x512, G=32 |" in text
