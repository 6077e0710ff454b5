// float32 GEMM on the CPU through oneDNN's dnnl_sgemm, the oneDNN library that
// ships inside the Paddle wheel (paddle/libs/libdnnl.so.3), when Paddle has
// loaded it.
//
// Why not Paddle's matmul: on CPU it calls MKL, and MKL takes its slow generic
// path on non-Intel x86 CPUs. Measured on the project's AMD EPYC (AVX-512),
// one thread, [256 x 2304] x [2304 x 784]: paddle.matmul 25-39 GFLOP/s,
// dnnl_sgemm 107 GFLOP/s. The deformable conv op spends most of its time in
// these GEMMs, so it uses oneDNN's when it can and Paddle's matmul otherwise.
//
// PADDLE_DCN_CPU_GEMM selects the backend, read on every call:
//   unset or "auto"  oneDNN when Paddle loaded it, else Paddle's matmul;
//   "paddle"         always Paddle's matmul (for comparisons);
//   "onednn"         oneDNN, and an error when it is not there.
// The symbol is looked up with dlopen(RTLD_NOLOAD), so nothing is linked at
// build time and a Paddle built without oneDNN simply falls back.
#pragma once

#include <dlfcn.h>
#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "../kernels/common.h"

namespace pdcn {

enum class HostGemmBackend { kPaddle, kOneDnn };

namespace detail {

// dnnl_status_t dnnl_sgemm(char transa, char transb, dnnl_dim_t M, dnnl_dim_t N,
//     dnnl_dim_t K, float alpha, const float *A, dnnl_dim_t lda, const float *B,
//     dnnl_dim_t ldb, float beta, float *C, dnnl_dim_t ldc);   (row-major)
using DnnlSgemm = int (*)(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);

inline DnnlSgemm find_dnnl_sgemm() {
  static const DnnlSgemm fn = []() -> DnnlSgemm {
    void* lib = dlopen("libdnnl.so.3", RTLD_LAZY | RTLD_NOLOAD);
    if (lib == nullptr) return nullptr;
    return reinterpret_cast<DnnlSgemm>(dlsym(lib, "dnnl_sgemm"));
  }();
  return fn;
}

}  // namespace detail

// The backend a float32 CPU GEMM uses now (see the file comment). `error` is
// set, and the caller raises it, when the variable holds an unknown value or
// asks for oneDNN while Paddle has not loaded it.
inline HostGemmBackend host_gemm_backend(const char** error) {
  const char* choice = std::getenv("PADDLE_DCN_CPU_GEMM");
  *error = nullptr;
  const bool have = detail::find_dnnl_sgemm() != nullptr;
  if (choice == nullptr || std::strcmp(choice, "auto") == 0) {
    return have ? HostGemmBackend::kOneDnn : HostGemmBackend::kPaddle;
  }
  if (std::strcmp(choice, "paddle") == 0) return HostGemmBackend::kPaddle;
  if (std::strcmp(choice, "onednn") == 0) {
    if (!have) {
      *error = "PADDLE_DCN_CPU_GEMM=onednn, but Paddle has not loaded oneDNN (libdnnl.so.3); "
               "unset it or set it to 'paddle'";
    }
    return HostGemmBackend::kOneDnn;
  }
  *error = "PADDLE_DCN_CPU_GEMM must be 'auto', 'paddle' or 'onednn' (or unset)";
  return HostGemmBackend::kPaddle;
}

// Row-major C = alpha * op(A) * op(B) + beta * C for `batch` independent
// problems laid out back to back (strides in elements), on cpu_thread_count()
// threads. op(A) is [M, K], op(B) is [K, N], C is [M, N]; lda/ldb/ldc are the
// row strides of A, B and C as stored. Returns false if oneDNN reports an error.
inline bool onednn_sgemm_batched(bool trans_a, bool trans_b, int64_t batch, int64_t M, int64_t N,
                                 int64_t K, const float* A, int64_t lda, int64_t stride_a,
                                 const float* B, int64_t ldb, int64_t stride_b, float beta,
                                 float* C, int64_t ldc, int64_t stride_c) {
  const detail::DnnlSgemm sgemm = detail::find_dnnl_sgemm();
  if (sgemm == nullptr) return false;
  // oneDNN sizes its team from omp_get_max_threads() of this thread, which
  // can still report every core after Paddle set OMP_NUM_THREADS=1 (see
  // cpu_thread_count); set it for the call and put it back.
  const int previous = omp_get_max_threads();
  const int threads = cpu_thread_count();
  if (threads != previous) omp_set_num_threads(threads);
  bool ok = true;
  for (int64_t i = 0; i < batch && ok; ++i) {
    ok = sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, 1.0f, A + i * stride_a, lda,
               B + i * stride_b, ldb, beta, C + i * stride_c, ldc) == 0;
  }
  if (threads != previous) omp_set_num_threads(previous);
  return ok;
}

}  // namespace pdcn
