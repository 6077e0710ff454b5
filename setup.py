"""Builds the paddle_dcn operator library and installs the paddle_dcn package.

    pip install --no-build-isolation -e .     # needs paddlepaddle (or paddlepaddle-gpu) first

The C++ ops are always built (OpenMP); the CUDA kernels join them when the installed Paddle is
compiled with CUDA (set PDCN_CPU_ONLY=1 to skip them). CUDA builds target the architectures
of custom_ops/cuda_build.py (sm_70/75-sm_90 plus PTX; PDCN_CUDA_ARCH_LIST="8.0;9.0+PTX"
overrides) and fail the install with a readable message if any source does not compile.
PDCN_FORCE_CUDA=1 compiles the CUDA build against a CPU Paddle too (CI uses it to check that the
GPU build compiles; that library cannot load there).
The library lands in paddle_dcn/ as _pdcn_ops.so and is loaded by paddle_dcn.ops; importing
paddle_dcn never compiles anything.
"""
import glob
import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
OP_LIBRARY = "paddle_dcn._pdcn_ops"


def _load_cuda_build():
    """custom_ops/cuda_build.py, loaded by path (putting custom_ops/ on sys.path would let
    custom_ops/paddle/ pass for the paddle package where Paddle is not installed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "pdcn_cuda_build", os.path.join(ROOT, "custom_ops", "cuda_build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cuda_build = _load_cuda_build()


def _sources(pattern: str) -> list:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _cuda_settings() -> dict:
    """nvcc flags and include directories of the CUDA build; exits with a reason if the
    toolkit, its version or the headers Paddle's GPU headers need are not there."""
    nvcc = cuda_build.find_nvcc()
    if nvcc is None:
        raise cuda_build.CudaBuildError(
            "paddle_dcn: Paddle is compiled with CUDA but nvcc was not found: set CUDA_HOME to "
            "your CUDA toolkit (11.8 or newer), or PDCN_CPU_ONLY=1 to build the CPU ops only")
    cuda_home = cuda_build.find_cuda_home(nvcc)
    os.environ.setdefault("CUDA_HOME", cuda_home)  # Paddle's cpp_extension reads it at import
    version = cuda_build.nvcc_version(nvcc)
    archs = cuda_build.requested_arch_list() or cuda_build.default_arch_list(version)
    include_dirs = cuda_build.nvidia_wheel_include_dirs() + cuda_build.cuda_include_dirs(cuda_home)
    cuda_build.check_headers(include_dirs)
    print(f"paddle_dcn: building the CUDA ops with nvcc {version[0]}.{version[1]} "
          f"({cuda_home}) for {' '.join(archs)} "
          f"(set {cuda_build.ARCH_ENV} to change)", flush=True)
    library_dirs = [d for d in (os.path.join(cuda_home, "lib64"), os.path.join(cuda_home, "lib"))
                    if os.path.isdir(d)]
    return {"archs": archs, "include_dirs": include_dirs, "library_dirs": library_dirs,
            "nvcc": list(cuda_build.NVCC_FLAGS) + cuda_build.gencode_flags(archs)}


def _strict(build_ext_class, archs):
    """build_ext that fails the install when a source does not compile: Paddle's compiler
    wrapper prints "compile failed" and carries on, which ends in a missing-object link error."""

    class StrictBuildExtension(build_ext_class):
        def build_extension(self, ext):
            # Paddle compiles each source on a copy of the compiler through the class's
            # _compile (in worker threads) and swallows an Exception; SystemExit passes.
            compiler_class = type(self.compiler)
            paddle_compile = compiler_class._compile

            def compile_or_fail(compiler, obj, src, *args, **kwargs):
                if os.path.exists(obj):
                    os.remove(obj)  # a stale object must not hide a failure
                try:
                    paddle_compile(compiler, obj, src, *args, **kwargs)
                except Exception as exc:
                    where = f" for {' '.join(archs)}" if archs else ""
                    raise SystemExit(
                        f"\npaddle_dcn: compiling {os.path.relpath(src, ROOT)}{where} failed "
                        "(the compiler's messages are above). The CUDA architectures "
                        f"can be chosen with {cuda_build.ARCH_ENV} (e.g. \"8.0;9.0+PTX\"); "
                        "PDCN_CPU_ONLY=1 builds the CPU ops only.") from exc

            compiler_class._compile = compile_or_fail
            try:
                super().build_extension(ext)
            finally:
                compiler_class._compile = paddle_compile

    return StrictBuildExtension


def op_extension_and_cmdclass():
    try:
        import paddle
    except ImportError as exc:  # pragma: no cover - message for users
        raise SystemExit(
            "paddle_dcn builds its operators against the installed Paddle: install "
            "paddlepaddle (or paddlepaddle-gpu) first, then run "
            "`pip install --no-build-isolation -e .`"
        ) from exc
    with_cuda = ((paddle.is_compiled_with_cuda() or os.environ.get("PDCN_FORCE_CUDA") == "1")
                 and not os.environ.get("PDCN_CPU_ONLY"))
    cuda = _cuda_settings() if with_cuda else None
    from paddle.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    cxx_flags = ["-O3", "-fopenmp", "-Wno-unused-parameter"]
    link_flags = ["-fopenmp"]
    sources = _sources("custom_ops/paddle/*.cc")
    if cuda:
        extension = CUDAExtension(
            sources=sources + _sources("custom_ops/kernels/*.cu"),
            include_dirs=cuda["include_dirs"],
            library_dirs=cuda["library_dirs"],
            extra_compile_args={"cxx": cxx_flags, "nvcc": cuda["nvcc"]},
            extra_link_args=link_flags + ["-lcudart"],
        )
    else:
        extension = CppExtension(
            sources=sources,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    extension.name = OP_LIBRARY
    build_ext = BuildExtension.with_options(no_python_abi_suffix=True)
    return extension, {"build_ext": _strict(build_ext, cuda["archs"] if cuda else None)}


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
    # ONNX export (paddle_dcn.onnx_export, tools/export.py --format onnx): pip install -e .[export]
    extras_require={"export": ["onnx>=1.16", "onnxruntime>=1.20"]},
    zip_safe=False,
)
