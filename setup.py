"""Builds the paddle_dcn operator library and installs the paddle_dcn package.

    pip install --no-build-isolation -e .     # needs paddlepaddle installed first

The C++ ops are always built (OpenMP); the CUDA kernels join them when the
installed Paddle is compiled with CUDA (set PDCN_CPU_ONLY=1 to skip them).
The library lands in paddle_dcn/ as _pdcn_ops.so and is loaded by
paddle_dcn.ops; importing paddle_dcn never compiles anything.
"""
import glob
import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
OP_LIBRARY = "paddle_dcn._pdcn_ops"


def _sources(pattern: str) -> list:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def op_extension_and_cmdclass():
    try:
        import paddle
        from paddle.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
    except ImportError as exc:  # pragma: no cover - message for users
        raise SystemExit(
            "paddle_dcn builds its operators against the installed Paddle: install "
            "paddlepaddle (or paddlepaddle-gpu) first, then run "
            "`pip install --no-build-isolation -e .`"
        ) from exc
    cxx_flags = ["-O3", "-fopenmp", "-Wno-unused-parameter"]
    link_flags = ["-fopenmp"]
    sources = _sources("custom_ops/paddle/*.cc")
    with_cuda = paddle.is_compiled_with_cuda() and not os.environ.get("PDCN_CPU_ONLY")
    if with_cuda:
        extension = CUDAExtension(
            sources=sources + _sources("custom_ops/kernels/*.cu"),
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-std=c++17"]},
            extra_link_args=link_flags,
        )
    else:
        extension = CppExtension(
            sources=sources,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    extension.name = OP_LIBRARY
    return extension, {"build_ext": BuildExtension.with_options(no_python_abi_suffix=True)}


extension, cmdclass = op_extension_and_cmdclass()

setup(
    name="paddle_dcn",
    version="0.1.0",
    description="Deformable convolution and deformable RoI pooling operators for PaddlePaddle",
    packages=find_packages(include=["paddle_dcn", "paddle_dcn.*"]),
    ext_modules=[extension],
    cmdclass=cmdclass,
    python_requires=">=3.9",
    install_requires=["numpy", "pyyaml"],
    zip_safe=False,
)
