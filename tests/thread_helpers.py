"""The CPU kernels' thread-count rule, checked the one way: a script run with 1 and 2 OpenMP
threads must save bitwise equal arrays (or, where a math library's sums follow the thread
count, arrays equal to a stated relative tolerance)."""
import os
import subprocess
import sys

import numpy as np


def assert_same_results_with_1_and_2_threads(tmp_path, script: str, rtol: float | None = None) -> None:
    """Runs ``script`` (Python that ``np.savez``-es its results to ``sys.argv[1]``) in a fresh
    process with ``OMP_NUM_THREADS`` 1 and 2 and asserts every saved array is bitwise equal
    (``rtol=None``) or equal to ``rtol`` relative to the array's largest magnitude."""
    path = tmp_path / "run.py"
    path.write_text(script)
    results = []
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}.npz"
        subprocess.run([sys.executable, str(path), str(out)], check=True,
                       env=dict(os.environ, OMP_NUM_THREADS=threads), capture_output=True, timeout=300)
        results.append(np.load(out))
    assert results[0].files  # the script saved something to compare
    for key in results[0].files:
        one, two = results[0][key], results[1][key]
        if rtol is None:
            np.testing.assert_array_equal(one, two, err_msg=key)
        else:
            np.testing.assert_allclose(one, two, rtol=0, atol=rtol * max(1.0, float(np.abs(one).max())),
                                       err_msg=key)
