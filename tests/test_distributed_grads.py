"""Under ``paddle.DataParallel`` (2 CPU processes, gloo) every parameter gradient of every
paddle_dcn layer is the mean of the processes' own gradients (DeformConv2D's weight gradient
was a strided view that the reducer left alone: each process trained its own weights)."""
import os
import subprocess

import numpy as np

from engine_helpers import PYTHON, tool_env

SCRIPT = os.path.join(os.path.dirname(__file__), "dist_grad_script.py")


def test_data_parallel_gradients_are_the_mean_over_processes(tmp_path):
    out = tmp_path / "grads.npz"
    run = subprocess.run([PYTHON, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                          "--log_dir", str(tmp_path / "log"), SCRIPT, str(out)],
                         env=tool_env(), capture_output=True, text=True, timeout=300)
    logs = "".join(open(os.path.join(tmp_path, "log", f)).read()[-3000:]
                   for f in os.listdir(tmp_path / "log") if f.startswith("workerlog"))
    assert run.returncode == 0, run.stdout[-2000:] + logs
    result = np.load(out)
    layers = {name.split(".")[0] for name in result.files}
    assert layers == {"dcn_v2", "dcn_v1", "dcn_v3", "dcn_v4", "coord_conv", "sampling", "roi_pack", "roi_mpack"}
    for name in result.files:
        from_parallel, own, scale = result[name]
        # the processes' own gradients differ, so the all-reduce is observable ...
        assert own > 1e-2 * scale, name
        # ... and DataParallel's gradient is their mean
        assert from_parallel <= 1e-6 * max(scale, 1e-3), (name, from_parallel, own, scale)
