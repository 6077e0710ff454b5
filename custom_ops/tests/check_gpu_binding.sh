#!/usr/bin/env bash
# Syntax-checks the GPU half of the Paddle bindings (code under PADDLE_WITH_CUDA),
# which only compiles for real against a CUDA build of Paddle. Against the CPU
# wheel's headers it needs the CUDA toolkit headers (cudart + CCCL) and empty
# stand-ins for the cuBLAS/cuDNN/... headers that a cudart-only toolkit lacks.
# Diagnostics inside Paddle's headers (caused by the stand-ins) are ignored;
# any error located in custom_ops/ fails the check.
#   bash custom_ops/tests/check_gpu_binding.sh [PYTHON]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PY="${1:-python3}"
cuda_include=""
for candidate in "${CUDA_HOME:-}" /usr/local/cuda /usr/local/cuda-*; do
  if [ -n "$candidate" ] && [ -f "$candidate/include/cuda_runtime.h" ]; then
    cuda_include="$candidate/include"; break
  fi
done
[ -n "$cuda_include" ] || { echo "no CUDA toolkit headers found (set CUDA_HOME)" >&2; exit 1; }
read -r paddle_include py_include < <("$PY" -c "
import os, sysconfig, paddle
print(os.path.join(os.path.dirname(paddle.__file__), 'include'), sysconfig.get_paths()['include'])")
stubs="$(mktemp -d)"
trap 'rm -rf "$stubs"' EXIT
flags=(-std=c++17 -fsyntax-only -DPADDLE_WITH_CUDA -DPADDLE_WITH_CUSTOM_KERNEL
       -I"$paddle_include" -I"$paddle_include/third_party"
       -I"$paddle_include/paddle/phi/api/include/compat"
       -I"$paddle_include/paddle/phi/api/include/compat/torch/csrc/api/include"
       -I"$cuda_include" -I"$cuda_include/cccl" -I"$stubs" -I"$py_include")
# The headers a cudart-only toolkit lacks (seen with CUDA 13 + Paddle 3.3); any
# other missing header is found and stubbed below.
for header in cublasXt.h cublas_v2.h cublas_api.h cublasLt.h cudnn.h cufft.h curand.h \
              cusparse.h cusolverDn.h; do
  : > "$stubs/$header"
done
check_one() {  # prints "ok ..." or our errors; returns non-zero on an error of ours
  local source="$1" output missing ours
  for _ in $(seq 1 50); do
    output=$(g++ "${flags[@]}" -fmax-errors=0 "$source" 2>&1 || true)
    missing=$(printf '%s\n' "$output" | sed -nE 's/.*fatal error: ([^:]+): No such file.*/\1/p' | head -1)
    [ -z "$missing" ] && break
    mkdir -p "$stubs/$(dirname "$missing")"
    : > "$stubs/$missing"
  done
  ours=$(printf '%s\n' "$output" | grep -E "^[^ ]*custom_ops/[^:]+:[0-9]+:[0-9]+: error" || true)
  if [ -n "$ours" ]; then
    echo "$ours"; return 1
  fi
  echo "ok  $(basename "$source") (PADDLE_WITH_CUDA)"
}
# One binding per process (each pass parses Paddle's large headers).
pids=()
for source in "$root"/custom_ops/paddle/*.cc; do
  check_one "$source" > "$stubs/$(basename "$source").log" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
cat "$stubs"/*.log
exit $status
