#!/usr/bin/env bash
# Compiles the GPU build of the operator library for real, as a GPU user's
# `pip install --no-build-isolation -e .` does: setup.py's CUDAExtension with the
# arch flags it passes (PDCN_FORCE_CUDA=1, since Paddle here may be the CPU
# wheel), Paddle's headers under -DPADDLE_WITH_CUDA, the CUDA toolkit, and the
# real cuBLAS/cuDNN/cuFFT/cuRAND/cuSPARSE/cuSOLVER headers of the nvidia-* wheels
# that paddlepaddle-gpu depends on (CUDA 13 variants, matching nvcc 13; only
# their include/ folders are kept, cached under ~/.cache/paddle_dcn/cuda_headers-*).
# No stub headers. Fails on any compile or link error, and checks that the
# library holds our CUDA entry points and machine code for every requested
# architecture (fatbin_archs.py; no cuobjdump needed). Builds into a temporary folder: the
# installed paddle_dcn/_pdcn_ops*.so is not touched.
#   bash custom_ops/tests/check_gpu_build.sh [PYTHON]
# PDCN_CUDA_ARCH_LIST overrides the architectures as for setup.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PY="${1:-python3}"
# absolute (the venv's own name kept: no symlink resolution), as the script changes directory
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
# versioned: a cache of another layout or wheel set is never reused
cache="${XDG_CACHE_HOME:-$HOME/.cache}/paddle_dcn/cuda_headers-cu13-v1"
headers="$cache/include"
if [ ! -f "$cache/complete" ]; then
  rm -rf "$cache"; mkdir -p "$cache/wheels"
  start=$(date +%s)
  "$PY" -m pip download -q --no-deps -d "$cache/wheels" \
    nvidia-cublas nvidia-cudnn-cu13 nvidia-cufft nvidia-curand nvidia-cusparse nvidia-cusolver
  "$PY" - "$cache/wheels" "$headers" <<'PYEOF'
import glob, os, sys, zipfile
wheels, out = sys.argv[1], sys.argv[2]
count = 0
for wheel in sorted(glob.glob(os.path.join(wheels, "*.whl"))):
    with zipfile.ZipFile(wheel) as z:
        for member in z.namelist():
            parts = member.split("/")
            # nvidia/<lib>/include/... -> <out>/<lib>/...
            if len(parts) > 3 and parts[0] == "nvidia" and parts[2] == "include" and parts[-1]:
                target = os.path.join(out, parts[1], *parts[3:])
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with z.open(member) as src, open(target, "wb") as dst:
                    dst.write(src.read())
                count += 1
print(f"extracted {count} headers")
PYEOF
  rm -rf "$cache/wheels"
  touch "$cache/complete"
  echo "headers fetched in $(( $(date +%s) - start )) s"
fi
include_dirs=$(find "$headers" -mindepth 1 -maxdepth 1 -type d | sort | paste -sd: -)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
cd "$root"
PDCN_FORCE_CUDA=1 PDCN_CUDA_INCLUDE_DIRS="$include_dirs" \
  "$PY" setup.py -q build_ext --build-temp "$work/tmp" --build-lib "$work/lib" 2>&1 \
  | grep -v -E "^\s*$|warnings.warn|No ccache found" || true
library="$work/lib/paddle_dcn/_pdcn_ops.so"
[ -f "$library" ] || { echo "FAILED: the GPU build produced no library" >&2; exit 1; }
entry_points=$(nm -DC "$library" | grep -c " T pdcn::cuda::" || true)
[ "$entry_points" -ge 10 ] || { echo "FAILED: only $entry_points pdcn::cuda entry points in the library" >&2; exit 1; }
# The library holds machine code for every architecture setup.py was asked for (and PTX
# where the list says +PTX): an H100 gets sm_90 code, not JIT-compiled PTX.
archs=$(cd "$root/custom_ops" && "$PY" -c "
import cuda_build as c
archs = c.requested_arch_list() or c.default_arch_list(c.nvcc_version(c.find_nvcc()))
print(' '.join(a.replace('.', '') for a in archs))")
"$PY" "$here/fatbin_archs.py" "$library" --expect "$archs"
echo "ok  GPU build compiled and linked in $(( $(date +%s) - start )) s ($entry_points CUDA entry points; code for $archs)"
