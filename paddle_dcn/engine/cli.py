"""Command-line conventions shared by tools/*.py (PaddleClas / PaddleDetection habits).

``-c cfg.yml`` and ``-o a.b=1 c=2`` (several pairs after one ``-o``, ``-o`` repeatable,
values parsed as YAML).
"""
from __future__ import annotations

import argparse
from typing import Any, Dict

from ..config import load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, help="YAML config file")
    parser.add_argument("-o", "--opt", nargs="+", action="append", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. -o epochs=2 model.backbone.depth=18")


def config_from_args(args: argparse.Namespace) -> Dict[str, Any]:
    return load_config(args.config, args.opt)
