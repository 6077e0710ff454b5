#!/usr/bin/env bash
# Fresh-machine install: creates .venv in the repository, installs the
# requirements (with --dev also the test tools) and builds the operator library.
#   bash tools/install.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=requirements.txt
[ "${1:-}" = "--dev" ] && requirements=requirements-dev.txt
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip wheel setuptools
.venv/bin/python -m pip install -q -r "$requirements"
# Build the C++ (and, with a CUDA Paddle, CUDA) operators ahead of time.
.venv/bin/python -m pip install -q --no-build-isolation -e .
.venv/bin/python -c "import paddle_dcn, paddle_dcn.ops as o; print('paddle_dcn', paddle_dcn.__version__, 'ops:', o.load_library())"
