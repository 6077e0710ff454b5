"""How setup.py builds the CUDA half of the operator library.

Paddle's ``CUDAExtension`` passes no ``-gencode`` flags unless ``PADDLE_CUDA_ARCH_LIST`` is
set (nvcc then targets its oldest default architecture, where ``atomicAdd(double*)`` does not
exist), puts only ``$CUDA_HOME/include`` on the include path although Paddle's GPU headers need
cuDNN/cuBLAS/cuFFT/cuRAND/cuSPARSE/cuSOLVER headers (which ``paddlepaddle-gpu`` installs in the
``nvidia-*`` wheels), and reports a failed compile by a print and a later missing-object link
error. This module supplies the architecture flags, the include directories and the header
check; setup.py makes a failed compile fail the install.

Nothing here imports Paddle, so it is unit-tested on a machine without a GPU.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Iterable, Optional, Sequence

ARCH_ENV = "PDCN_CUDA_ARCH_LIST"
PADDLE_ARCH_ENV = "PADDLE_CUDA_ARCH_LIST"
EXTRA_INCLUDE_ENV = "PDCN_CUDA_INCLUDE_DIRS"

# Headers that paddle/extension.h pulls in under -DPADDLE_WITH_CUDA beyond cudart (measured
# with Paddle 3.3.1 against CUDA 13 headers).
REQUIRED_HEADERS = ("cudnn.h", "cublas_v2.h", "cublasLt.h", "cublasXt.h", "cufft.h", "curand.h",
                    "cusparse.h", "cusolverDn.h")

# Our kernels never rely on the implicit __half/__nv_bfloat16 conversions (pdcn::cast in
# custom_ops/kernels), so they build under the macros that Paddle's and PyTorch's builders use.
NVCC_FLAGS = ("-O3", "-std=c++17", "--expt-relaxed-constexpr",
              "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
              "-D__CUDA_NO_HALF2_OPERATORS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
              "-D__CUDA_NO_BFLOAT16_OPERATORS__")


class CudaBuildError(SystemExit):
    """A readable reason why the CUDA build cannot go on (ends setup.py with the message)."""


def find_nvcc(cuda_home: Optional[str] = None) -> Optional[str]:
    """nvcc under CUDA_HOME (or CUDA_PATH), else the one on PATH; None if there is none."""
    home = cuda_home or os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home:
        candidate = os.path.join(home, "bin", "nvcc")
        if os.path.exists(candidate):
            return candidate
    return shutil.which("nvcc")


def nvcc_version(nvcc: str) -> tuple[int, int]:
    """(major, minor) of ``nvcc --version`` ("Cuda compilation tools, release 12.4, ...")."""
    output = subprocess.run([nvcc, "--version"], capture_output=True, text=True,
                            check=True).stdout
    return parse_nvcc_version(output)


def parse_nvcc_version(output: str) -> tuple[int, int]:
    match = re.search(r"release (\d+)\.(\d+)", output)
    if not match:
        raise CudaBuildError(f"paddle_dcn: cannot read the CUDA version from nvcc --version:\n{output}")
    return int(match.group(1)), int(match.group(2))


MIN_ARCH = (6, 0)
"""The oldest compute capability the kernels build for (atomicAdd on double needs sm_60)."""


def default_arch_list(version: tuple[int, int]) -> list[str]:
    """GPU architectures built by default: Volta (sm_70; CUDA 13 dropped it, so from sm_75
    there) to Hopper (sm_90), plus PTX of sm_90 that the driver compiles for newer GPUs."""
    if version < (11, 8):
        raise CudaBuildError(
            f"paddle_dcn needs CUDA 11.8 or newer to build its CUDA ops (nvcc is "
            f"{version[0]}.{version[1]}); set PDCN_CPU_ONLY=1 to build the CPU ops only")
    if version >= (13, 0):
        return ["7.5", "8.0", "8.6", "8.9", "9.0+PTX"]
    return ["7.0", "7.5", "8.0", "8.6", "8.9", "9.0+PTX"]


def requested_arch_list(environ: Optional[dict] = None) -> Optional[list[str]]:
    """The architectures asked for in PDCN_CUDA_ARCH_LIST (else PADDLE_CUDA_ARCH_LIST), as
    entries like "8.0" or "9.0+PTX"; None when neither is set. Separators: ';', ',' or spaces;
    "80" means "8.0"."""
    environ = os.environ if environ is None else environ
    for name in (ARCH_ENV, PADDLE_ARCH_ENV):
        value = environ.get(name, "").strip()
        if value:
            return [_normalise_arch(entry, name) for entry in re.split(r"[;,\s]+", value) if entry]
    return None


def _normalise_arch(entry: str, variable: str) -> str:
    match = re.fullmatch(r"(\d+)(?:\.(\d))?(\+PTX)?", entry.strip(), flags=re.IGNORECASE)
    if not match:
        raise CudaBuildError(
            f"paddle_dcn: bad entry {entry!r} in {variable}: expected compute capabilities such as "
            f"\"7.5;8.0;9.0+PTX\" (or \"75 80 90\")")
    major, minor, ptx = match.group(1), match.group(2), match.group(3)
    if minor is None:
        if len(major) < 2:
            raise CudaBuildError(
                f"paddle_dcn: bad entry {entry!r} in {variable}: write 8.0 or 80, not 8")
        major, minor = major[:-1], major[-1]
    if (int(major), int(minor)) < MIN_ARCH:
        raise CudaBuildError(
            f"paddle_dcn: entry {entry!r} in {variable} is below compute capability "
            f"{MIN_ARCH[0]}.{MIN_ARCH[1]}, the oldest the kernels build for (they use atomicAdd on "
            f"double, sm_60 and newer)")
    return f"{int(major)}.{minor}" + ("+PTX" if ptx else "")


def gencode_flags(arch_list: Sequence[str]) -> list[str]:
    """nvcc flags for entries like "8.0" / "9.0+PTX": SASS for each, PTX where asked."""
    flags: list[str] = []
    for entry in arch_list:
        number = entry.replace("+PTX", "").replace(".", "")
        flags += ["-gencode", f"arch=compute_{number},code=sm_{number}"]
        if entry.endswith("+PTX"):
            flags += ["-gencode", f"arch=compute_{number},code=compute_{number}"]
    return flags


def nvidia_wheel_include_dirs(search_path: Optional[Iterable[str]] = None) -> list[str]:
    """``nvidia/*/include`` directories of the nvidia-* wheels on sys.path (CUDA 12 wheels:
    nvidia/cublas/include, nvidia/cudnn/include, ...; CUDA 13 wheels: nvidia/cu13/include and
    nvidia/cudnn/include), plus the directories named in PDCN_CUDA_INCLUDE_DIRS
    (os.pathsep-separated), which come first."""
    found: list[str] = []
    extra = os.environ.get(EXTRA_INCLUDE_ENV, "")
    found += [d for d in extra.split(os.pathsep) if d and os.path.isdir(d)]
    for entry in (sys.path if search_path is None else search_path):
        root = os.path.join(entry, "nvidia")
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            include = os.path.join(root, name, "include")
            if os.path.isdir(include) and include not in found:
                found.append(include)
    return found


def cuda_include_dirs(cuda_home: str) -> list[str]:
    """The toolkit's include directory and its CCCL / NVTX subdirectories (where present)."""
    base = os.path.join(cuda_home, "include")
    return [d for d in (base, os.path.join(base, "cccl"), os.path.join(base, "nvtx3"))
            if os.path.isdir(d)]


def check_headers(include_dirs: Sequence[str], required: Sequence[str] = REQUIRED_HEADERS) -> None:
    """Raises CudaBuildError naming every required header found in none of include_dirs."""
    missing = [h for h in required
               if not any(os.path.exists(os.path.join(d, h)) for d in include_dirs)]
    if missing:
        raise CudaBuildError(
            "paddle_dcn: the CUDA build needs these headers, which Paddle's GPU headers include, "
            f"and none of them was found: {', '.join(missing)}.\n"
            f"Looked in: {', '.join(include_dirs) or '(nothing)'}.\n"
            "paddlepaddle-gpu normally installs them with its nvidia-* wheels (for CUDA 12: "
            "pip install nvidia-cudnn-cu12 nvidia-cublas-cu12 nvidia-cufft-cu12 "
            "nvidia-curand-cu12 nvidia-cusparse-cu12 nvidia-cusolver-cu12); or point "
            f"{EXTRA_INCLUDE_ENV} at the include directories of a CUDA toolkit with cuDNN; or "
            "set PDCN_CPU_ONLY=1 to build the CPU ops only.")


def find_cuda_home(nvcc: str) -> str:
    """CUDA_HOME (or CUDA_PATH), else the toolkit nvcc reports as its TOP (so that a wrapper
    script on PATH still leads to the real toolkit), else nvcc's grandparent directory."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home:
        return home
    try:
        dry = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True, timeout=60)
        match = re.search(r"^#\$ TOP=(.+)$", dry.stdout + dry.stderr, flags=re.MULTILINE)
        if match:
            return os.path.normpath(match.group(1).strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
