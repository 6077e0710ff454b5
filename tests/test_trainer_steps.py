"""The trainer's build steps are overridable methods (issue 16, detectron2's DefaultTrainer
shape), and "best" belongs to the checkpoint callback: it decides what is best, the
checkpoint stores it and resume restores it into the callback."""
import numpy as np
import paddle

from engine_helpers import tiny_config, write_config
from paddle_dcn.config import load_config
from paddle_dcn.engine.callbacks import Callback, CheckpointSaver
from paddle_dcn.engine.trainer import Trainer

BACKBONE = {"type": "ResNet", "depth": 18, "stem": "small", "base_channels": 4}


def _cfg(tmp_path, epochs=1):
    cfg = tiny_config(str(tmp_path / "cache"), BACKBONE, epochs=epochs, train_samples=32, batch_size=16,
                      eval_samples=16)
    cfg["visualdl"] = {"enabled": False}
    return load_config(write_config(str(tmp_path), "tiny_steps", cfg), [f"output_dir={tmp_path / 'out'}"])


class _Record(Callback):
    def __init__(self):
        self.losses = []

    def on_iter_end(self, trainer, info):
        self.losses.append(info["loss"])


def test_build_steps_are_overridable(tmp_path):
    record = _Record()

    class MyTrainer(Trainer):
        def build_model(self):
            model = super().build_model()
            model.built_by = "MyTrainer"
            return model

        def build_optimizer(self):
            scheduler, _ = super().build_optimizer()
            return scheduler, paddle.optimizer.SGD(learning_rate=0.0, parameters=self.model.parameters())

        def build_loaders(self):
            train, evaluate = super().build_loaders()
            return train, None  # no evaluation

        def build_callbacks(self):
            return [record]  # no progress lines, no checkpoints

    trainer = MyTrainer(_cfg(tmp_path))
    assert trainer.unwrapped_model.built_by == "MyTrainer"
    before = {k: v.numpy().copy() for k, v in trainer.unwrapped_model.named_parameters() if not v.stop_gradient}
    assert trainer.train() == {}  # no eval loader: no metrics
    assert len(record.losses) == trainer.iters_per_epoch == 2
    for k, v in trainer.unwrapped_model.named_parameters():  # learning rate 0: the SGD was used
        if k in before:
            np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)
    assert not (tmp_path / "out" / "latest.pdparams").exists()
    assert trainer.best_metric == float("-inf")  # no checkpoint callback, no best


class _Snapshot(Callback):
    """After each epoch's checkpointing: the bytes of best.pdparams and of the epoch's file."""

    def __init__(self, directory):
        self.directory, self.best, self.epoch_files = directory, [], []

    def on_epoch_end(self, trainer, metrics):
        self.best.append((self.directory / "best.pdparams").read_bytes())
        self.epoch_files.append((self.directory / f"epoch_{trainer.epoch + 1}.pdparams").read_bytes())


def test_the_checkpoint_callback_owns_best_and_resume_restores_it(tmp_path):
    cfg = _cfg(tmp_path, epochs=3)
    cfg["checkpoint"]["keep_last"] = 3
    snap = _Snapshot(tmp_path / "out")
    trainer = Trainer(cfg, callbacks=[snap])
    scripted = iter([{"top1": 50.0, "top2": 70.0}, {"top1": 30.0, "top2": 60.0}, {"top1": 70.0, "top2": 90.0}])
    trainer.evaluate = lambda: next(scripted)
    trainer.train()
    saver = next(cb for cb in trainer.callbacks if isinstance(cb, CheckpointSaver))
    assert saver.best == trainer.best_metric == 70.0
    assert snap.best == [snap.epoch_files[0], snap.epoch_files[0], snap.epoch_files[2]]  # epoch 2 was worse
    state = paddle.load(str(tmp_path / "out" / "epoch_2.pdstate"))
    assert state["best_metric"] == 50.0

    resumed = Trainer(cfg)
    resumed.resume(str(tmp_path / "out" / "epoch_2"))
    assert resumed.best_metric == 50.0
    assert next(cb for cb in resumed.callbacks if isinstance(cb, CheckpointSaver)).best == 50.0
