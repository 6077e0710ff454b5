#!/usr/bin/env bash
# The DCNv3/v4 CPU kernels (custom_ops/kernels/deform_aggregate_cpu.h) of this
# checkout against those of another revision, side by side in one process,
# kernels alone, one thread: forward and backward medians per shape and the
# largest difference of the results. The shared headers are this checkout's.
#   bash tools/ab_aggregate_kernels.sh [REV]   (default HEAD)
set -euo pipefail
cd "$(dirname "$0")/.."
rev="${1:-HEAD}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git show "$rev:custom_ops/kernels/deform_aggregate_cpu.h" |
  sed 's/^namespace cpu {/namespace cpu_base {\nusing namespace ::pdcn::cpu;/; s/^#pragma once//' \
    > "$work/base_aggregate_cpu.h"
"${CXX:-g++}" -std=c++17 -O3 -fopenmp -Icustom_ops/kernels -I"$work" tools/ab_aggregate_kernels.cc \
  -o "$work/ab"
echo "base: $rev ($(git rev-parse --short "$rev")), this: the working tree; ms, one thread"
OMP_NUM_THREADS=1 "$work/ab"
