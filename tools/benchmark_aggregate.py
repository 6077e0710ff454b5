#!/usr/bin/env python
"""DCNv3/DCNv4 on the CPU: our op and layers against the pure-Paddle grid_sample reference.

    python tools/benchmark_aggregate.py [--repeats 10] [--mkl-avx2] [--write docs/benchmarks.md]

Shapes: the four stages of InternImage-T at 224 px (batch 1; 16 channels per group) and the
two deformable stages of the shipped dcnv3_r50 / dcnv4_r50 (batch 32, 48 px). Per shape,
interleaved in one process (round-robin over repeats, medians), one thread as Paddle sets it:
``deform_aggregate`` against ``deform_aggregate_reference`` (InternImage's grid_sample core,
ported), forward and forward+backward; and forward+backward of the layers: DCNv3 with our op,
DCNv3 with the reference core, and DCNv4 with our op twice: as FlashInternImage builds it (no
depthwise conv before the fused offset/weight projection: its DW_KERNEL_SIZE is None, and no
output-projection bias) and with the 3x3 depthwise conv (our layer's default, as
configs/dcnv4_r50.yml uses it). The InternImage-T rows run the layers channels-last, as the
InternImage blocks call them; the built-in model's rows run them NCHW, as its ResNet does.
``--runs N`` measures every shape N times (the shapes in turn, in one process) and tables the
per-cell medians, the ratios as medians of each run's ratio: on a shared VM the machine's speed
drifts over tens of seconds, more than the differences measured here. With ``--write`` the
table replaces the ``dcnv3-cpu`` section of the file.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import paddle  # noqa: E402

from bench_common import interleaved_medians, passes, write_section  # noqa: E402
from paddle_dcn import DCNv3, DCNv4  # noqa: E402
from paddle_dcn.layers import dcnv3 as dcnv3_module  # noqa: E402
from paddle_dcn.ops import deform_aggregate  # noqa: E402
from paddle_dcn.ops.deform_aggregate_reference import deform_aggregate_reference  # noqa: E402

SECTION = "dcnv3-cpu"
# (label, N, C, H=W, G, the layers' data_format)
SHAPES = [("InternImage-T stage 1", 1, 64, 56, 4, "NHWC"), ("InternImage-T stage 2", 1, 128, 28, 8, "NHWC"),
          ("InternImage-T stage 3", 1, 256, 14, 16, "NHWC"), ("InternImage-T stage 4", 1, 512, 7, 32, "NHWC"),
          ("dcnv3_r50 conv2_x", 32, 16, 24, 4, "NCHW"), ("dcnv3_r50 conv3_x", 32, 32, 12, 4, "NCHW")]


class _ReferenceOps:
    """``ops`` for the DCNv3 module with the reference core (same layer, other op)."""

    deform_aggregate = staticmethod(deform_aggregate_reference)


def measure(label: str, n: int, c: int, hw: int, g: int, data_format: str, repeats: int) -> dict:
    paddle.seed(0)
    k = 9
    value = paddle.randn([n, hw, hw, c])
    offset = paddle.randn([n, hw, hw, g * k * 2])
    weight = paddle.rand([n, hw, hw, g * k]) / k
    for t in (value, offset, weight):
        t.stop_gradient = False
    leaves = [value, offset, weight]
    ours = passes(lambda: deform_aggregate(value, offset, weight, 3, 1, 1, 1, g), leaves)
    ref = passes(lambda: deform_aggregate_reference(value, offset, weight, 3, 1, 1, 1, g), leaves)
    x = paddle.randn([n, c, hw, hw] if data_format == "NCHW" else [n, hw, hw, c])
    x.stop_gradient = False
    v3 = DCNv3(c, groups=g, data_format=data_format)
    # FlashInternImage's DCNv4 (DW_KERNEL_SIZE None, DCN_OUTPUT_BIAS False); "mean" weights so
    # that the output is not all zero (the same work either way)
    v4 = DCNv4(c, groups=g, dw_kernel_size=None, output_bias=False, mask_init="mean", data_format=data_format)
    v4_dw = DCNv4(c, groups=g, dw_kernel_size=3, mask_init="mean", data_format=data_format)
    v3_ref = DCNv3(c, groups=g, data_format=data_format)
    v3_ref.set_state_dict(v3.state_dict())

    def v3_reference_layer():
        saved = dcnv3_module.ops
        dcnv3_module.ops = _ReferenceOps
        try:
            return v3_ref(x)
        finally:
            dcnv3_module.ops = saved

    layers = {name: passes(fn, [x] + list(layer.parameters()))["forward+backward"]
              for name, fn, layer in (("v3", lambda: v3(x), v3), ("v3_ref", v3_reference_layer, v3_ref),
                                      ("v4", lambda: v4(x), v4), ("v4_dw", lambda: v4_dw(x), v4_dw))}
    m = interleaved_medians({"ours_f": ours["forward"], "ref_f": ref["forward"], "ours_fb": ours["forward+backward"],
                             "ref_fb": ref["forward+backward"], **layers}, repeats)
    return dict(label=label, shape=f"{n}x{hw}x{hw}x{c}, G={g}", layout=data_format, **m,
                ratio=m["v3"] / m["v4"], ratio_dw=m["v3"] / m["v4_dw"])


def median_rows(runs: list) -> list:
    """Per shape, the median of every timing (and ratio) over ``runs`` (lists of rows, one per
    run, the shapes in the same order)."""
    merged = []
    for rows in zip(*runs):
        row = dict(rows[0])
        for key, value in rows[0].items():
            if isinstance(value, float):
                row[key] = statistics.median(r[key] for r in rows)
        row["ratios"] = [r["ratio"] for r in rows]
        merged.append(row)
    return merged


def table(rows: list, repeats: int, runs: int = 1) -> str:
    mkl = os.environ.get("MKL_DEBUG_CPU_TYPE")
    mkl_note = f", MKL_DEBUG_CPU_TYPE={mkl}" if mkl is not None else ""
    flag = (" --mkl-avx2" if mkl is not None else "") + (f" --runs {runs}" if runs > 1 else "")
    over = (f"; each cell the median of {runs} runs, the ratios medians of the runs' ratios (the runs' "
            "DCNv3 / DCNv4 ratios listed after the table)") if runs > 1 else ""
    head = (f"Measured {datetime.date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} CPU cores, Python "
            f"{platform.python_version()}, paddlepaddle {paddle.__version__}, one thread{mkl_note}; medians of "
            f"{repeats} interleaved repeats{over} (`python tools/benchmark_aggregate.py{flag} --write "
            "docs/benchmarks.md`). 3x3 kernel, stride 1; ms.\n\n"
            "Layers forward+backward; DCNv4 as FlashInternImage builds it (no depthwise conv, no output bias) "
            "and with a 3x3 depthwise conv before its offset/weight projection (as configs/dcnv4_r50.yml).\n\n"
            "| shape | value NxHxWxC | op fwd | reference fwd | op fwd+bwd | reference fwd+bwd | reference / op "
            "(fwd+bwd) | layers' layout | DCNv3 layer | DCNv3 layer, reference core | DCNv4 layer | "
            "**DCNv3 / DCNv4 layer** | DCNv4 layer with dw conv | DCNv3 / DCNv4 with dw conv |\n"
            "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n")
    lines = [f"| {r['label']} | {r['shape']} | {r['ours_f']:.1f} | {r['ref_f']:.1f} | {r['ours_fb']:.1f} | "
             f"{r['ref_fb']:.1f} | {r['ref_fb'] / r['ours_fb']:.1f}x | {r['layout']} | {r['v3']:.1f} | "
             f"{r['v3_ref']:.1f} | {r['v4']:.1f} | **{r['ratio']:.2f}x** | {r['v4_dw']:.1f} | "
             f"{r['ratio_dw']:.2f}x |" for r in rows]
    spread = ""
    if runs > 1:
        spread = "\nDCNv3 / DCNv4 layer in each run: " + "; ".join(
            f"{r['label']} " + ", ".join(f"{x:.2f}" for x in r["ratios"]) for r in rows) + ".\n"
    return head + "\n".join(lines) + "\n" + spread


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--shapes", type=int, nargs="*", default=None, help="indices into the shape list")
    parser.add_argument("--runs", type=int, default=1, help="measure every shape this many times; table the medians")
    parser.add_argument("--write", default=None)
    parser.add_argument("--mkl-avx2", action="store_true",
                        help="MKL's AVX2 path on AMD CPUs (MKL_DEBUG_CPU_TYPE=5), as the tools set it "
                             "(the layers' projections are MKL GEMMs)")
    args = parser.parse_args(argv)
    if args.mkl_avx2:
        from paddle_dcn.runtime import prefer_fast_mkl_path
        if not prefer_fast_mkl_path():
            print("--mkl-avx2: not an AMD CPU or MKL_DEBUG_CPU_TYPE already set; MKL unchanged")
    chosen = SHAPES if args.shapes is None else [SHAPES[i] for i in args.shapes]
    runs = max(1, args.runs)
    rows = median_rows([[measure(*s, repeats=args.repeats) for s in chosen] for _ in range(runs)])
    text = table(rows, args.repeats, runs)
    print(text)
    if args.write:
        write_section(args.write, text.rstrip("\n"), SECTION)
    return rows


if __name__ == "__main__":
    main()
