"""Imports Paddle without its import-time "No ccache found" warning.

``import paddle`` imports ``paddle.utils.cpp_extension`` (from ``paddle/utils/__init__.py``),
whose module body looks for ccache and warns when there is none. The warning concerns
compiling extensions; importing paddle_dcn compiles nothing (the op library is built ahead
of time), so the warning is only noise in every tool's output. This module is imported first
by ``paddle_dcn/__init__.py``: it imports Paddle once with that one warning filtered (by its
message; every other warning still shows). A process that imported Paddle before paddle_dcn
has already printed it; nothing can be done about that here.
"""
from __future__ import annotations

import warnings

CCACHE_WARNING = r"No ccache found"

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=CCACHE_WARNING, category=UserWarning)
    import paddle  # noqa: F401
    import paddle.utils.cpp_extension  # noqa: F401 - the module that warns, if paddle did not import it
