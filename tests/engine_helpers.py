"""Tiny configs shared by the engine/pipeline tests (not a test module)."""
from __future__ import annotations

import os
import sys

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TOOLS = os.path.join(REPO, "tools")

NORMALIZE = [{"type": "Normalize", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}, {"type": "ToCHW"}]


def tiny_config(cache_dir: str, backbone: dict, epochs: int = 2, batch_size: int = 16, train_samples: int = 64,
                eval_samples: int = 32, size: int = 16, num_classes: int = 4) -> dict:
    """A config (file contents) training on a few tiny built-in images in seconds."""
    def dataset(split: str, n: int) -> dict:
        return {"type": "GeometricShapes", "split": split, "num_samples": n, "image_size": size,
                "num_classes": num_classes, "cache_dir": cache_dir, "transforms": NORMALIZE}

    return {
        "epochs": epochs, "seed": 3, "log_interval": 1,
        "train_dataset": dataset("train", train_samples), "eval_dataset": dataset("val", eval_samples),
        "loader": {"batch_size": batch_size, "eval_batch_size": 16},
        "model": {"type": "Classifier", "num_classes": num_classes, "backbone": backbone},
        "optimizer": {"type": "Momentum", "momentum": 0.9, "weight_decay": 1e-4},
        "lr_scheduler": {"type": "WarmupCosine", "base_lr": 0.05, "warmup_epochs": 0.5},
        "checkpoint": {"interval": 1, "keep_last": 1},
        "visualdl": {"enabled": True, "num_images": 2},
        "metric": {"type": "TopKAccuracy", "topk": [1, 2]},
        "export": {"image_shape": [3, size, size]},
    }


def write_config(directory: str, name: str, cfg: dict) -> str:
    path = os.path.join(directory, f"{name}.yml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f)
    return path


def tool_main(name: str):
    """``tools/<name>.py``'s ``main``, loaded from the file (tools/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"pdcn_tool_{name}", os.path.join(TOOLS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def tool_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


PYTHON = sys.executable
