"""tools/summarize_runs.py: final metrics from train.log files, mean, sd and paired deltas."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))

import summarize_runs  # noqa: E402


def _log(path, lines):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "train.log"), "w") as f:
        f.write("\n".join(lines) + "\n")


def test_table_of_final_metrics(tmp_path):
    for seed, (a, b) in enumerate([(50.0, 53.0), (40.0, 46.0)]):
        _log(tmp_path / f"base_s{seed}", ["[t] eval epoch 1: top1 10.00 top5 50.00 (best 10.00)",
                                          f"[t] eval epoch 2: top1 {a:.2f} top5 90.00 (best {a:.2f})"])
        _log(tmp_path / f"dcn_s{seed}", [f"[t] eval epoch 2: top1 {b:.2f} top5 91.00 (best {b:.2f})"])
    _log(tmp_path / "det_s0", ["[t] eval epoch 4: AP 31.03 AP50 52.10 AP75 33.82 APl nan (best 31.03)"])
    assert summarize_runs.final_metric(str(tmp_path / "det_s0" / "train.log"), "AP") == 31.03
    assert summarize_runs.final_metric(str(tmp_path / "det_s0" / "train.log"), "AP50") == 52.10
    assert summarize_runs.final_metric(str(tmp_path / "missing" / "train.log"), "AP") is None
    text = summarize_runs.main(["--seeds", "0", "1", "--baseline", "base",
                                f"base={tmp_path}/base_s{{seed}}", f"dcn={tmp_path}/dcn_s{{seed}}"])
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "**45.00**" in rows["base"] and "7.07" in rows["base"]        # mean, sd of 50, 40
    assert "**49.50**" in rows["dcn"] and "+3.00, +6.00 (mean +4.50)" in rows["dcn"]
