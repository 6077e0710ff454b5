#!/usr/bin/env bash
# Compiles every CUDA kernel file with nvcc for sm_80 and sm_90 (no Paddle
# needed) and links the native CUDA-vs-CPU tests. With --run, also runs them
# (needs a GPU). Used by CI (compile only) and on GPU machines.
#   bash custom_ops/tests/build.sh [--run] [--out DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kernels="$here/../kernels"
out="${TMPDIR:-/tmp}/pdcn_cuda_tests"
run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --run) run=1 ;;
    --out) out="$2"; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
NVCC="${NVCC:-nvcc}"
arch="-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90"
# The no-half-conversion macros as Paddle's and PyTorch's builders may pass them (and setup.py does).
half="-D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_OPERATORS__"
flags="-std=c++17 -O3 $arch -I$kernels --expt-relaxed-constexpr $half"
objects=()
for cu in "$kernels"/*.cu; do
  obj="$out/$(basename "${cu%.cu}").o"
  echo "nvcc $(basename "$cu")"
  $NVCC $flags -c "$cu" -o "$obj"
  objects+=("$obj")
done
tests=()
for test in "$here"/test_*_cuda.cu; do
  [ -e "$test" ] || continue
  bin="$out/$(basename "${test%.cu}")"
  echo "nvcc $(basename "$test")"
  $NVCC $flags "$test" "${objects[@]}" -o "$bin"
  tests+=("$bin")
done
echo "compiled ${#objects[@]} kernel file(s) and ${#tests[@]} native test(s) for sm_80 and sm_90"
if [ "$run" = 1 ]; then
  for bin in "${tests[@]}"; do
    echo "== $(basename "$bin")"
    "$bin"
  done
fi
