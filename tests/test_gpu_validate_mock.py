"""The GPU validation harness (custom_ops/tests/gpu_validate) kept from rotting: its --cpu-mock
mode runs every check kind over the CPU drivers (cpu_shim.cc, the same C API as the CUDA shim)
with the pure-torch references of reference.py, and summarize.py turns its JSON into the
docs/benchmarks.md text.

Needs a Python with torch, apart from the project's .venv: PDCN_MOCK_PYTHON, or
.venv-gpu-mock/bin/python made by custom_ops/tests/gpu_validate/mock_env.sh (.ci/run does both).
"""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(ROOT, "custom_ops", "tests", "gpu_validate")
MIN_CHECKS = 140  # 157 when written; fewer means checks were lost
CHECK_KINDS = ("conv ", "deterministic grad_x bitwise repeat", "weight gradient over", "empty batch",
               "chunk=0 launches", "roi_batch_from_counts", "beyond the counts' sum", "vs torchvision",
               "random offset", "gradcheck", "large:", "bench produced timings", "aggregate G",
               "aggregate gradcheck", "aggregate bench produced timings")


def _mock_python():
    for candidate in (os.environ.get("PDCN_MOCK_PYTHON"),
                      os.path.join(ROOT, ".venv-gpu-mock", "bin", "python")):
        if candidate and os.path.exists(candidate):
            return candidate
    if os.environ.get("PDCN_REQUIRE_NVCC"):
        pytest.fail("no torch Python for the GPU harness mock (PDCN_MOCK_PYTHON or .venv-gpu-mock) "
                    "but PDCN_REQUIRE_NVCC is set: run custom_ops/tests/gpu_validate/mock_env.sh")
    pytest.skip("no torch Python: run custom_ops/tests/gpu_validate/mock_env.sh")


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_gpu_harness_cpu_mock(tmp_path):
    python = _mock_python()
    lib = tmp_path / "libpdcn_cpu_shim.so"
    build = subprocess.run(
        ["g++", "-O2", "-std=c++17", "-fopenmp", "-shared", "-fPIC",
         "-I", os.path.join(ROOT, "custom_ops", "kernels"), os.path.join(HARNESS, "cpu_shim.cc"),
         "-o", str(lib)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    run = subprocess.run([python, os.path.join(HARNESS, "validate.py"), "--cpu-mock", "--lib", str(lib),
                          "--out", str(out)], capture_output=True, text=True, timeout=600, env=env)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-6000:]
    m = re.search(r"^(\d+) passed, (\d+) failed$", run.stdout, re.M)
    assert m, log[-3000:]
    assert int(m.group(2)) == 0 and int(m.group(1)) >= MIN_CHECKS, m.group(0)
    passed = [line for line in log.splitlines() if line.startswith("PASS")]
    for kind in CHECK_KINDS:
        assert any(kind in line for line in passed), f"no passing check of kind {kind!r}"
    summary = subprocess.run([python, os.path.join(HARNESS, "summarize.py"), str(out / "gpu_validate.json")],
                             capture_output=True, text=True, timeout=60)
    assert summary.returncode == 0, summary.stderr
    assert f"{m.group(1)} passed, 0 failed" in summary.stdout
    assert "| shape (NxCxHxW) | dtype | ours fwd |" in summary.stdout
    assert "deterministic <= 2.0x atomic" in summary.stdout
    assert "| shape (NxHxWxC, G) | dtype | DCNv3 core |" in summary.stdout
