"""Two CPU processes (paddle.distributed.launch, gloo) == one process on the same global batch."""
import os
import subprocess

import numpy as np
import paddle

from paddle_dcn.engine.trainer import seed_everything
from paddle_dcn.registry import MODELS, build
from engine_helpers import PYTHON, TOOLS, tiny_config, tool_env, write_config


def test_two_processes_match_one_process(tmp_path):
    # SimpleConvNet has no batch statistics, so the per-process split cannot change the maths;
    # weight decay, momentum and the schedule are on.
    cfg = tiny_config(str(tmp_path / "cache"), {"type": "SimpleConvNet", "channels": 4}, epochs=2,
                      batch_size=16, train_samples=48, eval_samples=16)
    path = write_config(str(tmp_path), "tiny", cfg)
    train = os.path.join(TOOLS, "train.py")
    env = tool_env()
    one = subprocess.run([PYTHON, train, "-c", path, "--output", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    two = subprocess.run([PYTHON, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                          "--log_dir", str(tmp_path / "log"), train, "-c", path,
                          "-o", "loader.batch_size=8", "--output", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    logs = "".join(open(os.path.join(tmp_path, "log", f)).read()[-2000:]
                   for f in os.listdir(tmp_path / "log") if f.startswith("workerlog"))
    assert two.returncode == 0, two.stdout[-2000:] + logs
    a = paddle.load(str(tmp_path / "one" / "latest.pdparams"))
    b = paddle.load(str(tmp_path / "two" / "latest.pdparams"))
    assert sorted(a) == sorted(b)
    init = paddle.load(str(tmp_path / "one" / "epoch_2.pdparams"))
    for key in a:
        np.testing.assert_allclose(b[key].numpy(), a[key].numpy(), rtol=1e-5, atol=1e-6, err_msg=key)
        np.testing.assert_array_equal(init[key].numpy(), a[key].numpy())
    # the parameters did move (2 epochs x 3 steps), so the comparison is not trivial
    seed_everything(cfg["seed"])
    initial = build(MODELS, cfg["model"]).state_dict()
    moved = max(float(np.abs(initial[k].numpy() - a[k].numpy()).max()) for k in a)
    assert moved > 1e-3
    state = paddle.load(str(tmp_path / "two" / "latest.pdstate"))
    assert state["epoch"] == 2 and state["global_step"] == 6
    assert os.path.isdir(tmp_path / "two" / "vdl") and not os.path.exists(tmp_path / "one" / "log")
