"""The GPU harness (custom_ops/tests/gpu_validate) in its CPU mock: the same checks over the
CPU kernels behind the same C API, against the pure-PyTorch references, so that the harness
that runs once on a lent GPU never rots. Needs a Python with PyTorch (mock_env.sh makes it;
CI sets PDCN_MOCK_PYTHON)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(ROOT, "custom_ops", "tests", "gpu_validate")


def _mock_python() -> str:
    candidates = [os.environ.get("PDCN_MOCK_PYTHON", ""),
                  os.path.join(ROOT, ".venv-gpu-mock", "bin", "python")]
    for python in candidates:
        if python and os.path.exists(python):
            return python
    message = "no Python with PyTorch for the mock (bash custom_ops/tests/gpu_validate/mock_env.sh)"
    if os.environ.get("PDCN_REQUIRE_NVCC"):  # CI: every native check must run
        pytest.fail(message)
    pytest.skip(message)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_gpu_harness_passes_in_cpu_mock(tmp_path):
    python = _mock_python()
    library = tmp_path / "libpdcn_cpu_shim.so"
    subprocess.run(["g++", "-O2", "-std=c++17", "-fopenmp", "-shared", "-fPIC",
                    "-I" + os.path.join(ROOT, "custom_ops", "kernels"),
                    os.path.join(HARNESS, "cpu_shim.cc"), "-o", str(library)], check=True)
    result = subprocess.run(
        [python, os.path.join(HARNESS, "validate.py"), "--cpu-mock", "--lib", str(library),
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    tail = result.stdout[-4000:] + result.stderr[-4000:]
    assert result.returncode == 0, tail
    summary = re.search(r"^(\d+) passed, (\d+) failed$", result.stdout, flags=re.MULTILINE)
    assert summary, tail
    assert int(summary.group(2)) == 0 and int(summary.group(1)) >= 140, summary.group(0)
    assert (tmp_path / "gpu_validate.json").exists()
