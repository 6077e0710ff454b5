#!/usr/bin/env python
"""Tables of final metrics over seeds, from the train.log files of finished runs.

    python tools/summarize_runs.py --metric top1 --baseline r50 \\
        r50=output/results/r50_seed{seed} dcn_r50=output/results/dcn_r50_seed{seed} --seeds 0 1 2

Each ``name=directory pattern`` names a config; ``{seed}`` in the pattern is replaced by every
seed. The value is the metric of the last ``eval epoch`` line of ``train.log`` (``top1``, ``top5``
for classification; ``AP``, ``AP50``, ``AP75``, ... for detection). Prints a markdown table:
per-seed values, mean, sample standard deviation (n-1), and differences to the baseline paired
by seed.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
from typing import Dict, List, Optional


def final_metric(log_path: str, metric: str) -> Optional[float]:
    """The ``metric`` of the last ``eval epoch`` line of a train.log, or None if absent."""
    if not os.path.isfile(log_path):
        return None
    value = None
    pattern = re.compile(rf"\b{re.escape(metric)} (-?[0-9.]+|nan)\b")
    with open(log_path) as f:
        for line in f:
            if "eval epoch" in line:
                match = pattern.search(line)
                if match:
                    value = float(match.group(1))
    return value


def summary_table(values: Dict[str, List[Optional[float]]], seeds: List[int],
                  baseline: Optional[str], metric: str) -> str:
    """Markdown table: one row per config, one column per seed, mean, sd and paired deltas."""
    head = ["config"] + [f"seed {s}" for s in seeds] + ["mean", "sd (n-1)"]
    if baseline:
        head.append(f"vs {baseline}, paired by seed")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in values.items():
        done = [v for v in row if v is not None]
        mean = statistics.fmean(done) if done else float("nan")
        sd = statistics.stdev(done) if len(done) > 1 else float("nan")
        cells = [name] + [("-" if v is None else f"{v:.2f}") for v in row]
        cells += [f"**{mean:.2f}**", f"{sd:.2f}"]
        if baseline:
            if name == baseline:
                cells.append("")
            else:
                deltas = [v - b for v, b in zip(row, values[baseline]) if v is not None and b is not None]
                text = ", ".join(f"{d:+.2f}" for d in deltas)
                cells.append(f"{text} (mean {statistics.fmean(deltas):+.2f})" if deltas else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return f"{metric}:\n\n" + "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="name=directory pattern with {seed}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--metric", default="top1")
    parser.add_argument("--baseline", default=None, help="name of the config to compare with")
    args = parser.parse_args(argv)
    values: Dict[str, List[Optional[float]]] = {}
    for spec in args.runs:
        if "=" not in spec:
            parser.error(f"run spec must be name=pattern, got {spec!r}")
        name, pattern = spec.split("=", 1)
        values[name] = [final_metric(os.path.join(pattern.format(seed=s), "train.log"), args.metric)
                        for s in args.seeds]
    if args.baseline and args.baseline not in values:
        parser.error(f"--baseline {args.baseline!r} is not one of {list(values)}")
    text = summary_table(values, args.seeds, args.baseline, args.metric)
    print(text)
    return text


if __name__ == "__main__":
    main()
