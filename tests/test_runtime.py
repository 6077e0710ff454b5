"""paddle_dcn.runtime: the MKL code-path switch the tools set on AMD CPUs."""
from __future__ import annotations

import pytest

from paddle_dcn import runtime


@pytest.mark.parametrize("vendor, preset, expect_set, expect_value", [
    ("AuthenticAMD", None, True, "5"),
    ("GenuineIntel", None, False, None),
    ("", None, False, None),
    ("AuthenticAMD", "", False, ""),       # the user's choice (even empty) is kept
    ("AuthenticAMD", "4", False, "4"),
])
def test_prefer_fast_mkl_path(monkeypatch, vendor, preset, expect_set, expect_value):
    monkeypatch.setattr(runtime, "cpu_vendor", lambda: vendor)
    if preset is None:
        monkeypatch.delenv(runtime.MKL_CPU_TYPE_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(runtime.MKL_CPU_TYPE_VARIABLE, preset)
    assert runtime.prefer_fast_mkl_path() is expect_set
    import os
    assert os.environ.get(runtime.MKL_CPU_TYPE_VARIABLE) == expect_value


def test_cpu_vendor_reads_proc_cpuinfo():
    vendor = runtime.cpu_vendor()
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        assert vendor == ""
        return
    lines = [l for l in text.splitlines() if l.startswith("vendor_id")]
    assert vendor == (lines[0].split(":", 1)[1].strip() if lines else "")
