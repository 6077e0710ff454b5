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
local_memory=0
for cu in "$kernels"/*.cu; do
  obj="$out/$(basename "${cu%.cu}").o"
  report="$out/$(basename "${cu%.cu}").ptxas"
  echo "nvcc $(basename "$cu")"
  if ! $NVCC $flags -Xptxas -v -c "$cu" -o "$obj" 2> "$report"; then
    cat "$report" >&2
    exit 1
  fi
  # Every kernel keeps its arrays in registers: ptxas reports no stack frame and
  # no spills (an array indexed by a run-time loop bound lands in local memory;
  # see PDCN_CHANNEL_LOOP in kernels/common.h).
  if ! awk '/Function properties for/ { name = $NF }
            /bytes stack frame/ && !/ 0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads/ {
              print "  local memory: " name ": " $0; bad = 1 }
            END { exit bad }' "$report"; then
    local_memory=1
  fi
  objects+=("$obj")
done
if [ "$local_memory" = 1 ]; then
  echo "kernels above use a stack frame or spill registers (ptxas -v)" >&2
  exit 1
fi
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
