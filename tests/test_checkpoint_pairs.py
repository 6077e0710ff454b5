"""Checkpoints as pairs: a kill between writing ``<tag>.pdparams`` and ``<tag>.pdstate`` never
resumes one save's weights with another's optimizer and epoch; ``best`` follows the metric
whatever ``checkpoint.interval``; damaged files and stale temp files."""
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest

import paddle_dcn.models  # noqa: F401 - registration
from paddle_dcn.config import load_config
from paddle_dcn.engine.checkpoint import CheckpointManager
from paddle_dcn.engine.trainer import Trainer
from paddle_dcn.weights import read_checkpoint, read_resumable

from engine_helpers import tiny_config, write_config


def _cfg(tmp_path, epochs=2, base_lr=0.05, **checkpoint):
    cfg = tiny_config(str(tmp_path / "cache"), {"type": "SimpleConvNet", "channels": 4}, epochs=epochs,
                      train_samples=32, eval_samples=16)
    cfg["checkpoint"] = dict({"interval": 1, "keep_last": 2}, **checkpoint)
    cfg["lr_scheduler"]["base_lr"] = base_lr
    cfg["visualdl"] = {"enabled": False}
    cfg["output_dir"] = str(tmp_path / "out")
    return load_config(write_config(str(tmp_path), "tiny", cfg))


def _params(prefix):
    return {k: v.numpy() for k, v in paddle.load(prefix + ".pdparams").items()}


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """A finished 2-epoch run: epoch_1, epoch_2, latest (= epoch_2)."""
    tmp = tmp_path_factory.mktemp("pairs")
    cfg = _cfg(tmp)
    Trainer(cfg).train()
    return cfg, tmp / "out"


def _copy_run(two_epochs, tmp_path):
    cfg, out = two_epochs
    shutil.copytree(out, tmp_path / "out")
    cfg = dict(cfg, output_dir=str(tmp_path / "out"))
    return cfg, tmp_path / "out"


def test_a_kill_between_the_two_renames_of_latest_resumes_from_the_whole_epoch(two_epochs, tmp_path, caplog):
    cfg, out = _copy_run(two_epochs, tmp_path)
    # killed while copying epoch_2 to latest: the weights are replaced, the state is epoch 1's
    shutil.copyfile(out / "epoch_1.pdstate", out / "latest.pdstate")
    with pytest.raises(ValueError, match="latest.pdparams and .*latest.pdstate are from different saves"):
        read_resumable(str(out / "latest"))
    with caplog.at_level(logging.WARNING, logger="paddle_dcn"):
        prefix, model_state, state = read_resumable(str(out))
    assert prefix == str(out / "epoch_2") and state["epoch"] == 2
    assert "not resuming from it" in caplog.text and "latest" in caplog.text
    for k, v in _params(str(out / "epoch_2")).items():
        np.testing.assert_array_equal(model_state[k].numpy(), v)
    trainer = Trainer(cfg)
    trainer.resume(str(out))
    assert trainer.start_epoch == 2 and trainer.global_step == state["global_step"]


def test_latest_weights_without_their_state_resume_from_the_epoch(two_epochs, tmp_path):
    _, out = _copy_run(two_epochs, tmp_path)
    os.remove(out / "latest.pdstate")  # killed right after the first rename of the first copy
    prefix, _, state = read_resumable(str(out))
    assert prefix == str(out / "epoch_2") and state["epoch"] == 2
    with pytest.raises(FileNotFoundError, match="latest.pdstate is missing"):
        read_resumable(str(out / "latest"))


def test_no_whole_pair_left_is_an_error_naming_each_problem(two_epochs, tmp_path):
    _, out = _copy_run(two_epochs, tmp_path)
    for tag in ("latest", "epoch_2", "epoch_1"):
        os.remove(out / f"{tag}.pdstate")
    with pytest.raises(ValueError, match="no checkpoint in .* can be resumed: .*latest.pdstate is missing.*"
                                         "epoch_2.pdstate is missing.*epoch_1.pdstate is missing"):
        read_resumable(str(out))


def test_a_damaged_weights_file_is_an_error_naming_it(two_epochs, tmp_path):
    _, out = _copy_run(two_epochs, tmp_path)
    open(out / "epoch_1.pdparams", "wb").close()
    with pytest.raises(ValueError, match=r"cannot read .*epoch_1\.pdparams .*damaged"):
        read_checkpoint(str(out / "epoch_1"), with_state=False)
    with open(out / "epoch_2.pdstate", "r+b") as f:
        f.truncate(10)
    with pytest.raises(ValueError, match=r"cannot read .*epoch_2\.pdstate"):
        read_resumable(str(out / "epoch_2"))


def test_prune_removes_temp_files_of_dead_processes_only(tmp_path):
    manager = CheckpointManager(str(tmp_path), keep_last=1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f"latest.pdparams.tmp{dead}"
    live = tmp_path / f"epoch_3.pdstate.tmp{os.getpid()}"
    other = tmp_path / "notes.tmp1"
    for path in (stale, live, other):
        path.write_bytes(b"x")
    manager.prune()
    assert not stale.exists() and live.exists() and other.exists()


def test_best_is_saved_on_an_epoch_the_interval_skips(tmp_path):
    # lr 1e-12: the metric stays put, so only the first evaluation improves it; the interval
    # saves no epoch but the last
    cfg = _cfg(tmp_path, epochs=3, base_lr=1e-12, interval=5, keep_last=1)
    trainer = Trainer(cfg)
    trainer.train()
    out = tmp_path / "out"
    assert sorted(f for f in os.listdir(out) if f.startswith("epoch_")) == ["epoch_3.pdparams", "epoch_3.pdstate"]
    prefix, _, state = read_resumable(str(out / "best"))
    assert state["epoch"] == 1 and state["best_metric"] == trainer.best_metric
