"""Times paddle_dcn's operators side by side with their peers and records the figures.

    python tools/benchmark_ops.py [--repeats 15] [--write docs/benchmarks.md] [--mkl-avx2]

Every candidate of a case runs interleaved in one process (round-robin over repeats, after a
warm-up) and the median wall time is reported, so machine noise hits all alike. Deformable
convolution: ours against ``paddle.vision.ops.deform_conv2d`` (DCN v2, with mask) and the plain
``paddle.nn.functional.conv2d`` of the same shape; deformable RoI pooling against
``paddle.vision.ops.roi_align`` (tools/bench_roi_pool.py); the per-channel sampling layer
against ``grid_sample`` (tools/bench_variants.py). With ``--write`` the tables replace the
section between the ``<!-- cpu-ops:begin -->`` / ``<!-- cpu-ops:end -->`` markers of the file.
``--mkl-avx2`` first sets ``MKL_DEBUG_CPU_TYPE=5`` on AMD CPUs (``paddle_dcn.runtime``: MKL's AVX2
path instead of its generic one, which speeds up Paddle's conv2d, matmul and native op) and
writes the ``cpu-ops-mkl-avx2`` section instead.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from typing import List

import numpy as np
import paddle
import paddle.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paddle_dcn  # noqa: E402
from bench_common import interleaved_medians, markers, write_section  # noqa: E402,F401
from paddle_dcn.ops import (  # noqa: E402
    deform_conv2d, get_workspace_limit, images_per_chunk, workspace_bytes_per_image)

SECTION, SECTION_MKL_AVX2, SECTION_STAGES = "cpu-ops", "cpu-ops-mkl-avx2", "cpu-dcn-stages"






def deform_conv_case(n: int, c: int, hw: int, repeats: int) -> List[dict]:
    """DCN v2 3x3, padding 1, C_out = C_in: forward and forward+backward, three candidates."""
    rng = np.random.default_rng(0)
    def tensor(*shape, scale=1.0):
        t = paddle.to_tensor((rng.standard_normal(shape) * scale).astype("float32"))
        t.stop_gradient = False
        return t
    x, weight, bias = tensor(n, c, hw, hw), tensor(c, c, 3, 3, scale=0.05), tensor(c)
    offset, mask = tensor(n, 18, hw, hw, scale=2.0), paddle.nn.functional.sigmoid(tensor(n, 9, hw, hw))
    mask = mask.detach()
    mask.stop_gradient = False

    def ours():
        return deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)

    def ours_paddle_gemm():
        # The same op with its GEMMs through paddle.matmul (MKL) instead of oneDNN.
        os.environ["PADDLE_DCN_CPU_GEMM"] = "paddle"
        try:
            return ours()
        finally:
            os.environ.pop("PADDLE_DCN_CPU_GEMM")

    def native():
        return paddle.vision.ops.deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)

    def conv():
        return F.conv2d(x, weight, bias, padding=1)

    def fwd(fn):
        def run():
            with paddle.no_grad():
                fn()
        return run

    def fwd_bwd(fn):
        def run():
            fn().sum().backward()
            for t in (x, weight, bias, offset, mask):
                t.clear_gradient()
        return run

    candidates = {"ours": ours, "ours_paddle_gemm": ours_paddle_gemm, "native": native,
                  "conv2d": conv}
    rows = []
    shape = f"{n}x{c}x{hw}x{hw}"
    chunk = images_per_chunk(n, workspace_bytes_per_image(c, 9, hw * hw, 1, 4))
    workspace_mib = chunk * c * 9 * hw * hw * 4 / 2**20  # the column buffer
    for mode, wrap in (("forward", fwd), ("forward+backward", fwd_bwd)):
        medians = interleaved_medians({k: wrap(v) for k, v in candidates.items()}, repeats)
        rows.append(dict(
            op="deform_conv2d v2 3x3", shape=shape, mode=mode, ours_ms=medians["ours"],
            ours_paddle_gemm_ms=medians["ours_paddle_gemm"],
            native_ms=medians["native"], conv2d_ms=medians["conv2d"],
            speedup=medians["native"] / medians["ours"],
            vs_conv=medians["ours"] / medians["conv2d"],
            workspace_mib=workspace_mib * (1 if mode == "forward" else 2),
        ))
    return rows


def conv_table(rows: List[dict]) -> str:
    lines = [
        "| op | shape (NxCxHxW) | pass | ours ms | ours, GEMM by paddle.matmul ms | Paddle native ms | F.conv2d ms | native / ours | ours / conv2d | peak column workspace |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['op']} | {r['shape']} | {r['mode']} | {r['ours_ms']:.1f} | "
            f"{r['ours_paddle_gemm_ms']:.1f} | {r['native_ms']:.1f} | "
            f"{r['conv2d_ms']:.1f} | {r['speedup']:.2f}x | {r['vs_conv']:.2f}x | {r['workspace_mib']:.1f} MiB |"
        )
    return "\n".join(lines)


def roi_table(rows: List[dict]) -> str:
    lines = ["| op | shape | pass | ours ms | peer | peer ms | peer / ours |",
             "|---|---|---|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['op']} | {r['shape']} | {r.get('mode', '')} | {r['ours_ms']:.1f} | "
                     f"{r.get('peer', '')} | {r.get('peer_ms', float('nan')):.1f} | "
                     f"{r.get('speedup', float('nan')):.2f}x |")
    return "\n".join(lines)


def machine_line() -> str:
    return (f"{datetime.date.today().isoformat()}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, "
            f"paddlepaddle {paddle.__version__}, paddle_dcn {paddle_dcn.__version__}, "
            f"workspace limit {get_workspace_limit() // 2**20} MiB")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--write", metavar="MARKDOWN", help="update this file's CPU section")
    parser.add_argument("--skip-roi", action="store_true",
                        help="only the deformable conv cases (no RoI pooling, no variants)")
    parser.add_argument("--stages", action="store_true",
                        help="only the DCN v2 stage table against Conv2D and the models' images/s "
                             "(tools/bench_dcn_stages.py), written to the cpu-dcn-stages section")
    parser.add_argument("--mkl-avx2", action="store_true",
                        help="MKL's AVX2 path on AMD CPUs (MKL_DEBUG_CPU_TYPE=5) for everyone")
    args = parser.parse_args(argv)
    if args.mkl_avx2:
        from paddle_dcn.runtime import prefer_fast_mkl_path
        if not prefer_fast_mkl_path():
            print("--mkl-avx2: not an AMD CPU or MKL_DEBUG_CPU_TYPE already set; MKL unchanged")
    paddle.set_device("cpu")
    if args.stages:
        from bench_dcn_stages import run as run_stages
        mkl = os.environ.get("MKL_DEBUG_CPU_TYPE")
        text = (f"Measured {machine_line()}" + (f", MKL_DEBUG_CPU_TYPE={mkl}" if mkl else "")
                + f"; forward+backward, medians of {args.repeats} interleaved repeats.\n\n"
                + run_stages(args.repeats))
        print(text)
        if args.write:
            write_section(args.write, text, SECTION_STAGES)
        return
    rows = deform_conv_case(2, 64, 56, args.repeats) + deform_conv_case(4, 256, 14, args.repeats)
    mkl = os.environ.get("MKL_DEBUG_CPU_TYPE")
    mkl_note = f", MKL_DEBUG_CPU_TYPE={mkl}" if mkl is not None else ""
    body = [f"Measured {machine_line()}{mkl_note}; medians of {args.repeats} interleaved repeats.", "",
            conv_table(rows)]
    if not args.skip_roi:
        # Sections of the other op families (tools/bench_*.py, each with run(repeats)).
        from bench_roi_pool import run as run_roi
        from bench_variants import run as run_variants
        body += ["", "Deformable RoI pooling (K = 512 boxes, 256 channels, 7x7, 50x50 map):", "",
                 roi_table(run_roi(args.repeats))]
        body += ["", "Deformable variants (per-channel sampling, offsets over outputs):", "",
                 roi_table(run_variants(args.repeats))]
    text = "\n".join(body)
    print(text)
    if args.write:
        write_section(args.write, text, SECTION_MKL_AVX2 if args.mkl_avx2 else SECTION)


if __name__ == "__main__":
    main()
