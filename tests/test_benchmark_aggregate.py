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


def test_runs_table_the_medians_of_every_cell_and_list_the_ratios(tmp_path):
    runs = [[dict(label="s", shape="x", layout="NHWC", ours_f=f, ref_f=1.0, ours_fb=1.0, ref_fb=2.0, v3=v3,
                  v3_ref=9.0, v4=v4, v4_dw=3.0, ratio=v3 / v4, ratio_dw=v3 / 3.0)]
            for f, v3, v4 in ((1.0, 6.0, 2.0), (3.0, 4.0, 4.0), (2.0, 5.0, 1.0))]
    (row,) = benchmark_aggregate.median_rows(runs)
    assert row["ours_f"] == 2.0 and row["v3"] == 5.0 and row["v4"] == 2.0
    assert row["ratio"] == 3.0 and row["ratios"] == [3.0, 1.0, 5.0]  # the median ratio, not 5.0 / 2.0
    text = benchmark_aggregate.table([row], 1, runs=3)
    assert "**3.00x**" in text and "s 3.00, 1.00, 5.00" in text and "median of 3 runs" in text
