"""Trainer reliability: a non-finite loss stops the run (or is skipped and counted), the end
callbacks run when training fails, and a float16-AMP run resumes with its loss scale."""
import logging
import os
import re
import time

import numpy as np
import paddle
import pytest

from engine_helpers import tiny_config, write_config
from paddle_dcn.config import load_config
from paddle_dcn.engine.callbacks import Callback
from paddle_dcn.engine.trainer import Trainer

BACKBONE = {"type": "ResNet", "depth": 18, "stem": "small", "base_channels": 4}


def _trainer(tmp_path, callbacks=None, **top):
    cfg = tiny_config(str(tmp_path / "cache"), BACKBONE, epochs=1, train_samples=64, batch_size=16)
    cfg.update(top)
    cfg["visualdl"] = {"enabled": False}
    path = write_config(str(tmp_path), "tiny_rel", cfg)
    return Trainer(load_config(path, [f"output_dir={tmp_path / 'out'}"]), callbacks=callbacks)


def _poison(trainer, at_iters):
    """The model's loss becomes NaN at the given iterations (0-based, first epoch)."""
    model = trainer.unwrapped_model
    forward = model.forward

    def poisoned(batch):
        out = forward(batch)
        if model.training and trainer.iter in at_iters:
            out = dict(out, loss=out["loss"] * float("nan"))
        return out

    model.forward = poisoned


class _Ends(Callback):
    def __init__(self):
        self.ended = 0

    def on_train_end(self, trainer):
        self.ended += 1


def test_nonfinite_loss_stops_naming_epoch_iteration_and_value_and_end_callbacks_run(tmp_path):
    ends = _Ends()
    trainer = _trainer(tmp_path, callbacks=[ends])
    _poison(trainer, {2})
    before = {k: v.numpy().copy() for k, v in trainer.unwrapped_model.state_dict().items()}
    with pytest.raises(FloatingPointError, match=r"non-finite training loss nan at epoch 1/1, iteration 3/4 "
                                                 r"\(global step 3\).*nonfinite_loss: skip"):
        trainer.train()
    assert ends.ended == 1  # on_train_end ran although training failed
    after = trainer.unwrapped_model.state_dict()
    assert all(np.isfinite(after[k].numpy()).all() for k in before)  # the NaN step updated nothing


def test_nonfinite_loss_skip_drops_the_step_and_counts_it(tmp_path):
    trainer = _trainer(tmp_path, nonfinite_loss="skip")
    _poison(trainer, {1, 3})
    trainer.train()
    assert trainer.skipped_steps == 2 and trainer.global_step == 4
    assert all(np.isfinite(v.numpy()).all() for v in trainer.unwrapped_model.state_dict().values())
    with pytest.raises(ValueError, match="nonfinite_loss must be 'raise' or 'skip'"):
        _trainer(tmp_path, nonfinite_loss="ignore")


class _Scaler:
    """A stand-in for paddle.amp.GradScaler: CPU Paddle disables float16 AMP (its scaler's
    state_dict is {}), so the trainer's save/restore path is checked with a scaler whose state
    moves like the real one's (scale, counters)."""

    def __init__(self, scale):
        self.state = {"scale": np.array([scale], dtype=np.float32), "incr_count": 0, "decr_count": 0}

    def scale(self, loss):
        return loss

    def step(self, optimizer):
        optimizer.step()

    def update(self):
        self.state["incr_count"] += 1
        self.state["scale"] = self.state["scale"] * 2

    def state_dict(self):
        return dict(self.state)

    def load_state_dict(self, state):
        self.state = dict(state)


def test_amp_loss_scale_is_checkpointed_and_resumed(tmp_path):
    amp = {"enabled": True, "dtype": "float16", "init_loss_scaling": 256.0}
    trainer = _trainer(tmp_path, amp=amp)
    assert trainer.scaler is not None  # float16 AMP makes a scaler (disabled by Paddle on CPU)
    trainer.scaler = _Scaler(256.0)
    trainer.train()
    state = paddle.load(os.path.join(str(tmp_path / "out"), "latest.pdstate"))
    saved = state["grad_scaler"]
    assert float(np.asarray(saved["scale"]).reshape(-1)[0]) == 256.0 * 2 ** 4 and int(saved["incr_count"]) == 4
    resumed = _trainer(tmp_path, amp={**amp, "init_loss_scaling": 8.0})
    resumed.scaler = _Scaler(8.0)
    resumed.resume(str(tmp_path / "out" / "latest"))
    got = resumed.scaler.state_dict()
    assert float(np.asarray(got["scale"]).reshape(-1)[0]) == 256.0 * 2 ** 4 and int(got["incr_count"]) == 4


class _Infos(Callback):
    def __init__(self):
        self.infos = []

    def on_iter_end(self, trainer, info):
        self.infos.append(info)


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_progress_line_reports_data_loading_time_apart(tmp_path):
    infos = _Infos()
    trainer = _trainer(tmp_path, callbacks=[infos])
    cls = type(trainer.train_dataset)
    real = cls.__getitem__

    def slow(self, i):
        time.sleep(0.02)
        return real(self, i)

    handler = _Lines()
    logging.getLogger("paddle_dcn").addHandler(handler)
    cls.__getitem__ = slow
    try:
        trainer.train()
    finally:
        cls.__getitem__ = real
        logging.getLogger("paddle_dcn").removeHandler(handler)
    data = [info["data_time"] for info in infos.infos]
    assert len(data) == 4 and min(data) >= 0.16  # 16 samples x 20 ms of loading per batch
    assert all(info["iter_time"] >= info["data_time"] for info in infos.infos)
    shown = [float(re.search(r" data (\d+\.\d+)s eta ", line).group(1)) for line in handler.lines
             if re.search(r" data \d+\.\d+s eta ", line)]
    assert len(shown) == 4 and min(shown) >= 0.16


_FAILING_ITEM = r"""
import sys
sys.path.insert(0, {tests!r})
from test_engine_reliability import _trainer
import pathlib
trainer = _trainer(pathlib.Path({tmp!r}), loader={{"batch_size": 16, "eval_batch_size": 16, "num_workers": {workers}}})
cls = type(trainer.train_dataset)
real = cls.__getitem__
def broken(self, i):
    if i == {bad}:
        raise FileNotFoundError(f"/data/img_{{i}}.png")
    return real(self, i)
cls.__getitem__ = broken
try:
    trainer.{step}()
except Exception as e:
    print("RAISED", type(e).__name__, e)
"""


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("step", ["train", "evaluate"])
def test_a_failing_dataset_item_stops_the_run_naming_it_never_hangs(tmp_path, workers, step):
    import subprocess
    import sys

    script = _FAILING_ITEM.format(tests=os.path.dirname(os.path.abspath(__file__)), tmp=str(tmp_path),
                                  workers=workers, bad=7, step=step)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    out = run.stdout
    assert "RAISED DataLoadError loading item 7 of GeometricShapes failed: FileNotFoundError: /data/img_7.png" in out, \
        (out + run.stderr)[-3000:]


@pytest.mark.parametrize("epochs, message", [(2.7, "epochs must be a whole number, got 2.7"),
                                             ("3", "epochs must be a whole number, got '3'"),
                                             (0, "epochs must be >= 1, got 0")])
def test_a_fractional_or_non_positive_epoch_count_is_refused(tmp_path, epochs, message):
    # epochs: 2.7 ran 2 epochs without a word; "3" (quoted) was taken too
    with pytest.raises(ValueError, match=re.escape(message)):
        _trainer(tmp_path, epochs=epochs)
