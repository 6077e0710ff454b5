"""Timing helpers shared by the benchmark scripts in tools/ (interleaved medians, pass wrappers)."""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Dict, List

import paddle


def interleaved_medians(candidates: Dict[str, Callable[[], None]], repeats: int,
                        warmup: int = 2) -> Dict[str, float]:
    """Median milliseconds of each candidate, run round-robin ``repeats`` times after a warm-up,
    so that machine noise hits all candidates alike."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def passes(fn: Callable[[], paddle.Tensor],
           leaves: List[paddle.Tensor]) -> Dict[str, Callable[[], None]]:
    """The two timed passes of ``fn``: forward under no_grad, and forward + backward of the
    output's sum (clearing the leaves' gradients afterwards)."""
    def forward() -> None:
        with paddle.no_grad():
            fn()

    def forward_backward() -> None:
        fn().sum().backward()
        for t in leaves:
            t.clear_gradient()

    return {"forward": forward, "forward+backward": forward_backward}


def compare(op: str, shape: str, peer: str, ours: Callable, theirs: Callable,
            leaves: List[paddle.Tensor], repeats: int) -> List[dict]:
    """Rows {op, shape, mode, ours_ms, peer, peer_ms, speedup} for both passes."""
    rows = []
    ours_passes, peer_passes = passes(ours, leaves), passes(theirs, leaves)
    for mode in ("forward", "forward+backward"):
        m = interleaved_medians({"ours": ours_passes[mode], "peer": peer_passes[mode]}, repeats)
        rows.append(dict(op=op, shape=shape, mode=mode, ours_ms=m["ours"], peer=peer,
                         peer_ms=m["peer"], speedup=m["peer"] / m["ours"]))
    return rows


def markers(section: str) -> tuple:
    """The ``<!-- section:begin -->`` / ``<!-- section:end -->`` pair of a docs section."""
    return f"<!-- {section}:begin -->", f"<!-- {section}:end -->"


def write_section(path: str, body: str, section: str) -> None:
    """Replaces the text between ``section``'s markers in ``path`` with ``body`` (the markers
    are appended when missing; the file is created when absent), atomically."""
    BEGIN, END = markers(section)
    text = open(path).read() if os.path.exists(path) else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{head}{BEGIN}\n{body}\n{END}{tail}")
    os.replace(tmp, path)
