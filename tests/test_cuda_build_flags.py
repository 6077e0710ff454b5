"""custom_ops/cuda_build.py: what setup.py passes to a CUDA build (no GPU, no CUDA Paddle)."""
from __future__ import annotations

import os
import re
import struct
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "custom_ops"))
import cuda_build  # noqa: E402


@pytest.mark.parametrize("output, version", [
    ("Cuda compilation tools, release 11.8, V11.8.89", (11, 8)),
    ("Cuda compilation tools, release 12.4, V12.4.131", (12, 4)),
    ("Cuda compilation tools, release 13.0, V13.0.48", (13, 0)),
])
def test_nvcc_version_is_parsed(output, version):
    assert cuda_build.parse_nvcc_version(output) == version


def test_default_architectures_by_cuda_version():
    assert cuda_build.default_arch_list((11, 8)) == ["7.0", "7.5", "8.0", "8.6", "8.9", "9.0+PTX"]
    assert cuda_build.default_arch_list((12, 4)) == ["7.0", "7.5", "8.0", "8.6", "8.9", "9.0+PTX"]
    # CUDA 13 cannot build sm_70 any more
    assert cuda_build.default_arch_list((13, 0)) == ["7.5", "8.0", "8.6", "8.9", "9.0+PTX"]
    with pytest.raises(SystemExit, match="CUDA 11.8 or newer"):
        cuda_build.default_arch_list((11, 2))


def test_gencode_flags_give_sass_per_arch_and_ptx_where_asked():
    assert cuda_build.gencode_flags(["8.0", "9.0+PTX"]) == [
        "-gencode", "arch=compute_80,code=sm_80",
        "-gencode", "arch=compute_90,code=sm_90",
        "-gencode", "arch=compute_90,code=compute_90",
    ]


@pytest.mark.parametrize("value, expected", [
    ("8.0;9.0+PTX", ["8.0", "9.0+PTX"]),
    ("80 90", ["8.0", "9.0"]),
    ("7.5, 8.6,8.9", ["7.5", "8.6", "8.9"]),
    ("90+ptx", ["9.0+PTX"]),
])
def test_arch_override_formats(value, expected):
    assert cuda_build.requested_arch_list({cuda_build.ARCH_ENV: value}) == expected


def test_paddle_arch_variable_is_the_fallback_and_ours_wins():
    both = {cuda_build.ARCH_ENV: "9.0", cuda_build.PADDLE_ARCH_ENV: "8.0"}
    assert cuda_build.requested_arch_list(both) == ["9.0"]
    assert cuda_build.requested_arch_list({cuda_build.PADDLE_ARCH_ENV: "8.0"}) == ["8.0"]
    assert cuda_build.requested_arch_list({}) is None


@pytest.mark.parametrize("bad", ["sm_90", "8", "9.0+SASS", "x"])
def test_bad_arch_entry_names_the_variable_and_the_entry(bad):
    with pytest.raises(SystemExit, match=re.escape(f"bad entry {bad!r} in {cuda_build.ARCH_ENV}")):
        cuda_build.requested_arch_list({cuda_build.ARCH_ENV: f"8.0;{bad}"})


@pytest.mark.parametrize("old", ["5.2", "35", "5.0+PTX"])
def test_an_architecture_below_sm60_is_refused_by_name(old):
    with pytest.raises(SystemExit, match=re.escape(f"entry {old!r} in {cuda_build.ARCH_ENV} is below compute "
                                                   "capability 6.0")):
        cuda_build.requested_arch_list({cuda_build.ARCH_ENV: f"8.0;{old}"})
    assert cuda_build.requested_arch_list({cuda_build.ARCH_ENV: "6.0;6.1"}) == ["6.0", "6.1"]


def test_nvidia_wheel_include_dirs_cuda12_and_cuda13_layouts(tmp_path, monkeypatch):
    site = tmp_path / "site-packages"
    for lib in ("cublas", "cudnn", "cu13"):
        (site / "nvidia" / lib / "include").mkdir(parents=True)
    (site / "nvidia" / "no_headers").mkdir()
    extra = tmp_path / "extra"
    extra.mkdir()
    monkeypatch.setenv(cuda_build.EXTRA_INCLUDE_ENV, str(extra))
    found = cuda_build.nvidia_wheel_include_dirs([str(tmp_path / "missing"), str(site)])
    assert found == [str(extra)] + [str(site / "nvidia" / lib / "include")
                                    for lib in ("cu13", "cublas", "cudnn")]


def test_missing_headers_are_named_with_the_way_to_get_them(tmp_path):
    (tmp_path / "cublas_v2.h").write_text("")
    with pytest.raises(SystemExit) as info:
        cuda_build.check_headers([str(tmp_path)], ["cublas_v2.h", "cudnn.h", "cufft.h"])
    message = str(info.value)
    assert "cudnn.h, cufft.h" in message and "cublas_v2.h," not in message
    assert "nvidia-cudnn-cu12" in message and "PDCN_CPU_ONLY=1" in message
    cuda_build.check_headers([str(tmp_path)], ["cublas_v2.h"])  # all there: no error


def test_kernels_are_built_without_implicit_half_conversions():
    assert "-D__CUDA_NO_HALF_CONVERSIONS__" in cuda_build.NVCC_FLAGS
    assert "-D__CUDA_NO_BFLOAT16_CONVERSIONS__" in cuda_build.NVCC_FLAGS


def _load_fatbin_reader():
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "custom_ops", "tests", "fatbin_archs.py")
    spec = importlib.util.spec_from_file_location("pdcn_fatbin_archs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fatbin(magic, entries):
    body = b""
    for kind, sm, payload in entries:
        header = struct.pack("<HHIQ", kind, 0x101, 64, len(payload)) + b"\0" * 12
        header += struct.pack("<I", sm) + b"\0" * (64 - 32)
        body += header + payload
    return struct.pack("<IHHQ", magic, 1, 16, len(body)) + body


def test_fatbin_reader_lists_sass_and_ptx_per_binary():
    """The reader behind check_gpu_build.sh's architecture check (no cuobjdump here); the
    real library's fat binaries are read by that check in the suite."""
    reader = _load_fatbin_reader()
    data = (_fatbin(reader.MAGIC, [(2, 80, b"x" * 24), (1, 90, b"ptx!" * 2), (2, 90, b"y" * 8)])
            + b"\0" * 8 + _fatbin(reader.MAGIC, [(2, 90, b"z" * 16)]))
    assert reader.parse_fatbin_section(data) == [({80, 90}, {90}), ({90}, set())]
