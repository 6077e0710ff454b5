#!/usr/bin/env bash
# One-shot GPU validation + benchmark of paddle_dcn's CUDA kernels (no Paddle needed):
# nvcc 13 + PyTorch/torchvision on the device machine. About 5-7 minutes on one H200.
#   bash custom_ops/tests/gpu_validate/run.sh [--quick]      (logs in $OUT or /tmp/pdcn_gpu)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${PDCN_ROOT:-$(cd "$here/../../.." && pwd)}"
[ -d "$root/custom_ops/kernels" ] || root="$(pwd)"
K="$root/custom_ops/kernels"
out="${OUT:-/tmp/pdcn_gpu}"; work=/tmp/pdcn_gpu_work; mkdir -p "$out" "$work"
quick=""; [ "${1:-}" = "--quick" ] && quick="--skip-bench --skip-large"
# The shim is built with the flags setup.py gives the kernels (no implicit half conversions).
half="-D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_OPERATORS__"
status=0; t0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - t0 )) s] $*"; }
{ nvidia-smi; nvcc --version; python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.version.cuda, torch.cuda.get_device_name())"; command -v compute-sanitizer; } > "$out/env.txt" 2>&1
stamp "builds (native tests for sm_80/sm_90, ctypes shim for sm_90), in parallel"
( bash "$root/custom_ops/tests/build.sh" --out "$work/native" > "$work/build_native.log" 2>&1; echo $? > "$work/native.rc" ) &
( nvcc -O3 -std=c++17 --expt-relaxed-constexpr $half -gencode arch=compute_90,code=sm_90 -Xcompiler -fPIC -shared -I"$K" \
    "$here/pdcn_shim.cu" "$K/deform_conv_cuda.cu" "$K/deform_roi_pool_cuda.cu" -o "$work/libpdcn_shim.so" \
    > "$work/build_shim.log" 2>&1; echo $? > "$work/shim.rc" ) &
wait
cat "$work/build_native.log" "$work/build_shim.log" > "$out/build.log"
stamp "native CUDA-vs-CPU tests"
if [ "$(cat "$work/native.rc")" = 0 ]; then
  for t in test_deform_conv_cuda test_deform_roi_pool_cuda; do
    timeout 120 "$work/native/$t" || { echo "FAILED: $t (rc $?)"; status=1; }
  done > "$out/native.log" 2>&1
  tail -n 3 "$out/native.log"
  stamp "compute-sanitizer memcheck + initcheck on the native tests (no shared memory: racecheck not needed)"
  if command -v compute-sanitizer > /dev/null; then
    for tool in memcheck initcheck; do
      for t in test_deform_conv_cuda test_deform_roi_pool_cuda; do
        ( timeout 240 compute-sanitizer --tool "$tool" --error-exitcode 9 --print-limit 20 \
            "$work/native/$t" > "$work/san_${tool}_$t.log" 2>&1; echo "$tool $t rc=$?" >> "$work/san.rc" ) &
      done
    done
    wait
    for f in "$work"/san_*.log; do echo "### $f"; grep -E "ERROR SUMMARY|=========|FAIL|passed" "$f" | head -40; done > "$out/sanitizer.log"
    cat "$work/san.rc" >> "$out/sanitizer.log"; cat "$work/san.rc"
    grep -q "rc=[^0]" "$work/san.rc" && status=1
  else
    echo "compute-sanitizer not on PATH" | tee "$out/sanitizer.log"
  fi
else
  echo "native build failed"; status=1
fi
stamp "torch harness: binding algorithm over the CUDA kernels vs torchvision, large indices, benchmarks"
if [ "$(cat "$work/shim.rc")" = 0 ]; then
  PYTHONUNBUFFERED=1 timeout 330 python3 "$here/validate.py" --lib "$work/libpdcn_shim.so" --out "$out" $quick \
    > "$out/validate.log" 2>&1 || status=1
  grep -E "^FAIL|raised|passed, " "$out/validate.log" | tail -n 40
else
  echo "shim build failed"; status=1
fi
stamp "done, status $status"
{ grep -h -E "passed|FAILED" "$out/native.log"; tail -n 1 "$out/validate.log"; echo "status $status"; } > "$out/summary.txt" 2>/dev/null
exit $status
