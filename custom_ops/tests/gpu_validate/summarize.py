"""gpu_validate.json (validate.py) -> the markdown to paste into docs/benchmarks.md's GPU section.

    python3 summarize.py OUT/gpu_validate.json [--sanitizer OUT/sanitizer.log] [--native OUT/native.log]

Check summary (passed/failed, the failed names), the sanitizer result, deform_conv2d forward and
forward+backward times of ours against torchvision at the ResNet-50 stage shapes (float32,
float16, bfloat16), speedups, the bfloat16/float32 and deterministic/atomic ratios, and the goals:
fwd+bwd >= 1.5x faster than torchvision in float32 at every stage shape, bfloat16 >= 1.8x our
float32 speed (every shape), deterministic <= 2x atomic (every shape and dtype); and the
deform_aggregate (DCNv3/DCNv4 core) times at InternImage-T's stage shapes against InternImage's
PyTorch core and our DCN v2.
"""
import argparse
import json
import math
import re

OURS, DET, BIG, TV = "pdcn 64MiB", "pdcn 64MiB det", "pdcn 1GiB", "torchvision"
GOAL_TV, GOAL_BF16, GOAL_DET = 1.5, 1.8, 2.0


def _ok(v):
    return v is not None and isinstance(v, (int, float)) and not math.isnan(v) and v > 0


def ms(v):
    return f"{v:.3f}" if _ok(v) else "n/a"


def ratio(a, b):
    """a / b, or None."""
    return a / b if _ok(a) and _ok(b) else None


def x(v):
    return f"{v:.2f}x" if v is not None else "n/a"


def sanitizer_lines(path):
    """'memcheck test_x rc=N' lines (run.sh) and the ERROR SUMMARY lines of its log."""
    try:
        text = open(path).read()
    except OSError:
        return ["not run (no sanitizer log)"]
    rcs = re.findall(r"^(\w+) (\S+) rc=(\d+)$", text, re.M)
    if not rcs:
        return [line for line in text.splitlines() if line.strip()][:5] or ["no result"]
    out = []
    for tool, test, rc in rcs:
        state = {"0": "clean", "124": "TIMED OUT", "137": "KILLED", "9": "ERRORS"}.get(rc, f"rc {rc}")
        out.append(f"{tool} {test}: {state}")
    summaries = sorted(set(re.findall(r"ERROR SUMMARY: \d+ errors?", text)))
    if summaries:
        out.append("; ".join(summaries))
    return out


def summarize(res, sanitizer=None, native=None):
    env = res.get("env", {})
    lines = []
    lines.append(f"Measured {env.get('date', '?')}, {env.get('device', '?')}, torch {env.get('torch', '?')}, "
                 f"torchvision {env.get('torchvision', '?')}, CUDA {env.get('cuda', '?')}"
                 + (" (CPU MOCK: harness self-test, not GPU figures)" if env.get("mock") else "") + ".")
    lines.append("")
    failed = [c for c in res.get("checks", []) if not c["passed"]]
    lines.append(f"**Checks** (custom_ops/tests/gpu_validate/validate.py): {res.get('passed', 0)} passed, "
                 f"{res.get('failed', 0)} failed.")
    for c in failed:
        lines.append(f"- FAILED: {c['name']} {c.get('detail', '')}".rstrip())
    if native:
        try:
            nat = [l.strip() for l in open(native) if re.search(r"passed|FAILED|failed", l)]
        except OSError:
            nat = ["no native log"]
        lines.append("")
        lines.append("**Native CUDA-vs-CPU tests**: " + ("; ".join(nat[-4:]) if nat else "no result"))
    if sanitizer:
        lines.append("")
        lines.append("**compute-sanitizer** (memcheck, initcheck on the native tests): "
                     + "; ".join(sanitizer_lines(sanitizer)))
    steps = res.get("steps", {})
    if steps:
        lines.append("")
        lines.append("Step times: " + ", ".join(f"{k} {v} s" for k, v in steps.items()) + ".")

    rows = [r for r in res.get("bench", []) if r["op"].startswith("deform_conv2d")]
    t = {(r["shape"], r["dtype"], r["impl"]): r for r in rows}
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    dtypes = [d for d in ("float32", "float16", "bfloat16") if any(r["dtype"] == d for r in rows)]
    get = lambda s, d, i, k: t.get((s, d, i), {}).get(k)
    if rows:
        lines.append("")
        lines.append("deform_conv2d v2 3x3, padding 1, with mask, ResNet-50 stage shapes (ms, medians; ours at the "
                     "default 64 MiB workspace; speedup = torchvision / ours):")
        lines.append("")
        lines.append("| shape (NxCxHxW) | dtype | ours fwd | torchvision fwd | fwd speedup | ours fwd+bwd "
                     "| torchvision fwd+bwd | fwd+bwd speedup | ours 1 GiB fwd+bwd | deterministic fwd+bwd "
                     "| det / atomic |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for s in shapes:
            nchw = next((r.get("nchw") for r in rows if r["shape"] == s and r.get("nchw")), s)
            for d in dtypes:
                of, ofb = get(s, d, OURS, "fwd_ms"), get(s, d, OURS, "fwd_bwd_ms")
                tf, tfb = get(s, d, TV, "fwd_ms"), get(s, d, TV, "fwd_bwd_ms")
                dfb = get(s, d, DET, "fwd_bwd_ms")
                lines.append(f"| {nchw} ({s}) | {d} | {ms(of)} | {ms(tf)} | {x(ratio(tf, of))} | {ms(ofb)} "
                             f"| {ms(tfb)} | {x(ratio(tfb, ofb))} | {ms(get(s, d, BIG, 'fwd_bwd_ms'))} "
                             f"| {ms(dfb)} | {x(ratio(dfb, ofb))} |")
        lines.append("")
        lines.append("Half types against our float32 (speedup = float32 time / half time, fwd+bwd):")
        lines.append("")
        lines.append("| shape | float16 / float32 speedup | bfloat16 / float32 speedup |")
        lines.append("|---|---:|---:|")
        for s in shapes:
            f32 = get(s, "float32", OURS, "fwd_bwd_ms")
            lines.append(f"| {s} | {x(ratio(f32, get(s, 'float16', OURS, 'fwd_bwd_ms')))} "
                         f"| {x(ratio(f32, get(s, 'bfloat16', OURS, 'fwd_bwd_ms')))} |")

    roi = [r for r in res.get("bench", []) if r["op"].startswith("deform_roi_pool")]
    if roi:
        lines.append("")
        lines.append(f"{roi[0]['op']}, x {roi[0]['shape']} (ms):")
        lines.append("")
        lines.append("| dtype | impl | fwd | fwd+bwd |")
        lines.append("|---|---|---:|---:|")
        for r in roi:
            lines.append(f"| {r['dtype']} | {r['impl']} | {ms(r['fwd_ms'])} | {ms(r['fwd_bwd_ms'])} |")

    agg = res.get("bench_aggregate", [])
    if agg:
        ta = {(r["shape"], r["dtype"], r["impl"]): r for r in agg}
        aget = lambda s, d, i: ta.get((s, d, i), {}).get("fwd_bwd_ms")
        afwd = lambda s, d, i: ta.get((s, d, i), {}).get("fwd_ms")
        lines.append("")
        lines.append("deform_aggregate (DCNv3/DCNv4 core) 3x3, stride 1, padding 1, InternImage-T stage shapes, "
                     "forward+backward ms (forward in brackets); InternImage = its PyTorch core "
                     "(dcnv3_core_pytorch, grid_sample); DCNv2 = our deform_conv2d v2 at the same shape "
                     "(C -> C, deformable groups = G, its GEMMs included):")
        lines.append("")
        lines.append("| shape (NxHxWxC, G) | dtype | DCNv3 core | DCNv3 det | DCNv4 fused | InternImage pytorch "
                     "| our DCNv2 | InternImage / DCNv3 | DCNv2 / DCNv3 | det / atomic |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for s in dict.fromkeys(r["shape"] for r in agg):
            r0 = next(r for r in agg if r["shape"] == s)
            for d in [d for d in ("float64", "float32", "float16", "bfloat16") if (s, d, "pdcn DCNv3") in ta]:
                cell = lambda i: f"{ms(aget(s, d, i))} ({ms(afwd(s, d, i))})"
                v3 = aget(s, d, "pdcn DCNv3")
                lines.append(f"| {r0['nhwc']}, G={r0['groups']} ({s}) | {d} | {cell('pdcn DCNv3')} "
                             f"| {cell('pdcn DCNv3 det')} | {cell('pdcn DCNv4 fused')} | {cell('InternImage pytorch')} "
                             f"| {cell('pdcn DCNv2')} | {x(ratio(aget(s, d, 'InternImage pytorch'), v3))} "
                             f"| {x(ratio(aget(s, d, 'pdcn DCNv2'), v3))} "
                             f"| {x(ratio(aget(s, d, 'pdcn DCNv3 det'), v3))} |")
        if res.get("bench_aggregate_truncated"):
            lines.append("")
            lines.append("(the aggregate benchmark was cut short by its time budget)")

    # goals
    def goal(values, test):
        vals = [v for v in values if v is not None]
        if not vals or len(vals) < len(values):
            return "not measured" + (f" at every shape ({len(vals)} of {len(values)})" if vals else "")
        return "met" if all(test(v) for v in vals) else "NOT met"

    tv_sp = [ratio(get(s, "float32", TV, "fwd_bwd_ms"), get(s, "float32", OURS, "fwd_bwd_ms")) for s in shapes]
    bf = [ratio(get(s, "float32", OURS, "fwd_bwd_ms"), get(s, "bfloat16", OURS, "fwd_bwd_ms")) for s in shapes]
    det = [ratio(get(s, d, DET, "fwd_bwd_ms"), get(s, d, OURS, "fwd_bwd_ms")) for s in shapes for d in dtypes]
    fmt = lambda vals, f: ", ".join(x(v) for v in vals) + (f" ({f} {x(f_(vals, f))})" if any(v is not None for v in vals) else "")
    f_ = lambda vals, f: (min if f == "min" else max)(v for v in vals if v is not None)
    lines.append("")
    lines.append("Goals:")
    lines.append(f"- forward+backward >= {GOAL_TV}x faster than torchvision in float32 at every stage shape: "
                 f"{goal(tv_sp, lambda v: v >= GOAL_TV)} ({fmt(tv_sp, 'min') if shapes else 'no data'})")
    lines.append(f"- bfloat16 >= {GOAL_BF16}x our float32 speed (fwd+bwd, every shape): "
                 f"{goal(bf, lambda v: v >= GOAL_BF16)} ({fmt(bf, 'min') if shapes else 'no data'})")
    lines.append(f"- deterministic <= {GOAL_DET}x atomic (fwd+bwd, every shape and dtype): "
                 f"{goal(det, lambda v: v <= GOAL_DET)} ({fmt(det, 'max') if shapes else 'no data'})")
    if res.get("bench_truncated"):
        lines.append("- (the benchmark was cut short by its time budget: missing rows are 'n/a')")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--sanitizer")
    ap.add_argument("--native")
    a = ap.parse_args()
    with open(a.json) as f:
        res = json.load(f)
    print(summarize(res, a.sanitizer, a.native), end="")


if __name__ == "__main__":
    main()
