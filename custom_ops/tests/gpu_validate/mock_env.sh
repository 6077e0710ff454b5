#!/usr/bin/env bash
# Makes .venv-gpu-mock/ at the repository root: a Python with the CPU wheel of torch (and numpy),
# apart from the project's .venv (torch and Paddle do not share a venv here). validate.py --cpu-mock
# runs in it (tests/test_gpu_validate_mock.py). Idempotent: a venv whose torch imports is kept.
#   bash custom_ops/tests/gpu_validate/mock_env.sh        (prints the interpreter's path last)
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
venv="$root/.venv-gpu-mock"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${PDCN_MOCK_TORCH:-torch==2.13.0}"
if ! "$venv/bin/python" -c "import torch, numpy" >/dev/null 2>&1; then
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  # The CPU wheel: pip finds it through its find-links (/opt/wheels) where a machine has one;
  # elsewhere PyTorch's CPU index keeps the CUDA libraries out.
  "$venv/bin/python" -m pip install -q "$TORCH_SPEC" numpy \
    || "$venv/bin/python" -m pip install -q --index-url https://download.pytorch.org/whl/cpu "$TORCH_SPEC" numpy
fi
"$venv/bin/python" -c "import torch; print('gpu-mock venv: torch', torch.__version__)" >&2
echo "$venv/bin/python"
