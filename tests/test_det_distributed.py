"""Detection under ``paddle.distributed.launch`` with 2 CPU processes: trains, and the COCO
metric gathered from both processes equals a one-process evaluation of the same weights."""
import json
import os
import re
import subprocess

import pytest

from engine_helpers import PYTHON, REPO, TOOLS, tool_env
from det_helpers import tiny_overrides


def test_two_process_detection_training_and_gathered_eval(tmp_path):
    cfg = os.path.join(REPO, "configs", "faster_rcnn_r50_fpn.yml")
    o = tiny_overrides(str(tmp_path / "cache"), epochs=1) + ["loader.batch_size=2", "model.bbox_head.hidden=32",
                                                            "model.roi_extractor.fc_channels=32"]
    env = tool_env()
    two = subprocess.run([PYTHON, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                          "--log_dir", str(tmp_path / "log"), os.path.join(TOOLS, "train.py"), "-c", cfg,
                          "--output", str(tmp_path / "two"), "-o", *o],
                         env=env, capture_output=True, text=True, timeout=600)
    logs = "".join(open(os.path.join(tmp_path, "log", f)).read()[-3000:]
                   for f in os.listdir(tmp_path / "log") if f.startswith("workerlog"))
    assert two.returncode == 0, two.stdout[-2000:] + logs
    line = [ln for ln in open(tmp_path / "two" / "train.log") if "eval epoch 1:" in ln][-1]
    gathered = {k: float(v) for k, v in re.findall(r"(AP\w*) ([\d.]+|nan)", line)}
    one = subprocess.run([PYTHON, os.path.join(TOOLS, "eval.py"), "-c", cfg, "-w", str(tmp_path / "two" / "latest"),
                          "--json", "-o", *o], env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    single = json.loads(one.stdout.strip().splitlines()[-1])
    # both processes' detections were gathered: the same images and detections as one process
    counts = re.findall(r"COCO bbox evaluation \((\d+ images, \d+ detections)\)", open(tmp_path / "two" / "train.log").read())
    assert counts and counts[-1] == re.findall(r"\((\d+ images, \d+ detections)\)", one.stdout)[-1]
    assert counts[-1].startswith("6 images")
    assert set(gathered) == set(single)
    for k in single:  # the log prints 2 decimals
        assert gathered[k] == pytest.approx(single[k], abs=0.006, nan_ok=True), k
