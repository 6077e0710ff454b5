#!/usr/bin/env bash
# Builds and runs the native CPU kernel tests with AddressSanitizer and
# UndefinedBehaviorSanitizer (any out-of-bounds access or overflow aborts).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${TMPDIR:-/tmp}/pdcn_cpu_tests"
mkdir -p "$out"
CXX="${CXX:-g++}"
for test in "$here"/test_*_cpu_*.cc; do
  [ -e "$test" ] || continue
  bin="$out/$(basename "${test%.cc}")"
  echo "$CXX $(basename "$test") (ASan + UBSan)"
  $CXX -std=c++17 -O1 -g -fopenmp -fsanitize=address,undefined -fno-sanitize-recover=all \
    -I"$here/../kernels" "$test" -o "$bin"
  "$bin"
done
