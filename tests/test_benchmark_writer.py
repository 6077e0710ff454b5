"""tools/benchmark_ops.py writes its tables between markers, one section at a time."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))

import benchmark_ops  # noqa: E402


def test_write_section_replaces_only_its_section(tmp_path):
    path = str(tmp_path / "bench.md")
    benchmark_ops.write_section(path, "first", benchmark_ops.SECTION)
    benchmark_ops.write_section(path, "avx2 table", benchmark_ops.SECTION_MKL_AVX2)
    with open(path, "a") as f:
        f.write("\nhand-written reading\n")
    benchmark_ops.write_section(path, "second", benchmark_ops.SECTION)
    text = open(path).read()
    assert "first" not in text and text.count("second") == 1
    assert text.count("avx2 table") == 1 and text.rstrip().endswith("hand-written reading")
    begin, end = benchmark_ops.markers(benchmark_ops.SECTION)
    assert text.index(begin) < text.index("second") < text.index(end)
