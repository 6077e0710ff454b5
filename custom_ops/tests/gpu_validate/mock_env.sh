#!/usr/bin/env bash
# The Python of the harness's CPU mock (validate.py --cpu-mock): a venv with a CPU PyTorch
# and numpy, apart from the project's .venv (PyTorch is no dependency of paddle_dcn).
#   bash custom_ops/tests/gpu_validate/mock_env.sh [VENV_DIR]    (default .venv-gpu-mock)
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
venv="${1:-$root/.venv-gpu-mock}"
PYTHON="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
"$venv/bin/python" -c "import torch" 2>/dev/null || "$venv/bin/python" -m pip install -q torch==2.13.0 numpy
"$venv/bin/python" -c "import torch; print('gpu_validate mock env: torch', torch.__version__)"
