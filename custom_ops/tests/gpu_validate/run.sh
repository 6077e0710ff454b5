#!/usr/bin/env bash
# One-shot GPU validation + benchmark of paddle_dcn's CUDA kernels (no Paddle needed): nvcc 13 +
# PyTorch/torchvision on the device machine. Run from the repository root:
#   bash custom_ops/tests/gpu_validate/run.sh [--quick] 2>&1 | tee $OUT/run.log
# Every stage is time-boxed against one budget (PDCN_GPU_BUDGET_S, default 420 s: the device
# gives 10 minutes a command), a failing stage never stops the later ones, and results are
# written as they come: env.txt, build.log, native.log, validate.log, gpu_validate.json,
# sanitizer.log, summary.md (the docs/benchmarks.md text, summarize.py), summary.txt in $OUT
# (or /tmp/pdcn_gpu). Order: builds, native CUDA-vs-CPU tests, validate.py (checks, >2^31
# indices, benchmarks), compute-sanitizer last (the least predictable in time). Exit 0 iff all ran
# and passed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${PDCN_ROOT:-$(cd "$here/../../.." && pwd)}"
[ -d "$root/custom_ops/kernels" ] || root="$(pwd)"
K="$root/custom_ops/kernels"
out="${OUT:-/tmp/pdcn_gpu}"
mkdir -p "$out"
work="$(mktemp -d "${TMPDIR:-/tmp}/pdcn_gpu_work.XXXXXX")"
budget="${PDCN_GPU_BUDGET_S:-420}"
quick=""; [ "${1:-}" = "--quick" ] && quick="--skip-bench --skip-large"
PY="${PYTHON:-python3}"
status=0; t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
left() { echo $(( budget - $(elapsed) )); }
stamp() { echo "== [$(elapsed) s] $*"; }
# cap SECONDS [MIN]: min(SECONDS, what is left of the budget), at least MIN (default 10)
cap() { local l; l=$(left); [ "$l" -lt "$1" ] || l="$1"; [ "$l" -ge "${2:-10}" ] || l="${2:-10}"; echo "$l"; }
summary() {
  [ -f "$out/gpu_validate.json" ] && "$PY" "$here/summarize.py" "$out/gpu_validate.json" \
    --sanitizer "$out/sanitizer.log" --native "$out/native.log" > "$out/summary.md" 2>> "$out/summarize.err"
  { grep -h -E "passed|FAILED" "$out/native.log" 2>/dev/null; grep -E "passed, " "$out/validate.log" 2>/dev/null | tail -n 1
    cat "$work/san.rc" 2>/dev/null; echo "status $status after $(elapsed) s"; } > "$out/summary.txt"
}

stamp "environment (budget $budget s, results in $out)"
{ timeout 20 nvidia-smi; nvcc --version; timeout 60 "$PY" -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.version.cuda, torch.cuda.get_device_name())"
  command -v compute-sanitizer; nproc; } > "$out/env.txt" 2>&1
tail -n 3 "$out/env.txt"

stamp "builds in parallel: native tests (custom_ops/tests/build.sh, sm_80 + sm_90), ctypes shim (sm_90)"
half="-D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_OPERATORS__"
build_s=$(cap 200)
( timeout "$build_s" bash "$root/custom_ops/tests/build.sh" --out "$work/native" > "$work/build_native.log" 2>&1
  echo $? > "$work/native.rc" ) &
( timeout "$build_s" nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 --expt-relaxed-constexpr $half \
    -Xcompiler -fPIC -shared -I"$K" "$here/pdcn_shim.cu" "$K/deform_conv_cuda.cu" "$K/deform_roi_pool_cuda.cu" "$K/deform_aggregate_cuda.cu" \
    -o "$work/libpdcn_shim.so" > "$work/build_shim.log" 2>&1
  echo $? > "$work/shim.rc" ) &
wait
{ echo "### native (rc $(cat "$work/native.rc"))"; cat "$work/build_native.log"
  echo "### shim (rc $(cat "$work/shim.rc"))"; cat "$work/build_shim.log"; } > "$out/build.log"
[ "$(cat "$work/native.rc")" = 0 ] || { echo "native build failed (rc $(cat "$work/native.rc")), see build.log"; status=1; }
[ "$(cat "$work/shim.rc")" = 0 ] || { echo "shim build failed (rc $(cat "$work/shim.rc")), see build.log"; status=1; }

native_tests=()
for t in "$work"/native/test_*_cuda; do [ -x "$t" ] && native_tests+=("$t"); done
stamp "native CUDA-vs-CPU tests: ${#native_tests[@]}"
: > "$out/native.log"
for t in "${native_tests[@]}"; do
  echo "### $(basename "$t")" >> "$out/native.log"
  timeout "$(cap 60)" "$t" >> "$out/native.log" 2>&1
  rc=$?; [ $rc = 0 ] || { echo "FAILED: $(basename "$t") (rc $rc)" | tee -a "$out/native.log"; status=1; }
done
tail -n 3 "$out/native.log"

stamp "validate.py: binding algorithm over the CUDA kernels vs torchvision, large indices, benchmarks"
if [ -f "$work/libpdcn_shim.so" ]; then
  # leave ~70 s of the budget for the sanitizer
  vbudget=$(cap $(( $(left) - 70 )) 60)
  PYTHONUNBUFFERED=1 timeout --kill-after=10 $(( vbudget + 30 )) "$PY" "$here/validate.py" \
    --lib "$work/libpdcn_shim.so" --out "$out" --budget-s "$vbudget" $quick > "$out/validate.log" 2>&1
  rc=$?; [ $rc = 0 ] || { echo "validate.py rc $rc"; status=1; }
  grep -E "^FAIL|raised|passed, " "$out/validate.log" | tail -n 40
else
  echo "no shim: validate.py not run"; status=1
fi
summary

stamp "compute-sanitizer memcheck + initcheck on the native tests, in parallel"
if ! command -v compute-sanitizer > /dev/null; then
  echo "compute-sanitizer not on PATH" | tee "$out/sanitizer.log"; status=1
elif [ "${#native_tests[@]}" = 0 ]; then
  echo "no native tests built" | tee "$out/sanitizer.log"; status=1
else
  san_s=$(cap 150 30)
  : > "$work/san.rc"
  for tool in memcheck initcheck; do
    for t in "${native_tests[@]}"; do
      ( timeout --kill-after=5 "$san_s" compute-sanitizer --tool "$tool" --error-exitcode 9 --print-limit 20 \
          "$t" > "$work/san_${tool}_$(basename "$t").log" 2>&1
        echo "$tool $(basename "$t") rc=$?" >> "$work/san.rc" ) &
    done
  done
  wait
  { for f in "$work"/san_*.log; do echo "### $(basename "$f")"; grep -E "ERROR SUMMARY|=========|FAIL|passed" "$f" | head -40; done
    cat "$work/san.rc"; } > "$out/sanitizer.log"
  cat "$work/san.rc"
  grep -q "rc=[^0]" "$work/san.rc" && status=1
fi

summary
stamp "done, status $status"
cat "$out/summary.md" 2>/dev/null
exit $status
