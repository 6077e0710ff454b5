// Shared building blocks of the framework-neutral kernels: the host/device
// qualifier, the accumulation type and the CPU loop driver.
//
// Every per-element function of an op is written once with PDCN_HD so that the
// CPU driver (OpenMP loop) and the CUDA driver (grid-stride kernel) run the very
// same indexing and math. Nothing in this directory includes Paddle headers.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(__CUDACC__)
#define PDCN_HD __host__ __device__ __forceinline__
#else
#define PDCN_HD inline
#endif

// Placed before a PDCN_HD template that calls a caller-supplied functor: the
// CPU drivers pass host lambdas, the CUDA drivers device lambdas, and nvcc
// must not check the host/device pairing of the instantiations it never emits.
#if defined(__CUDACC__)
#define PDCN_HD_CALLS_FUNCTOR _Pragma("nv_exec_check_disable")
#else
#define PDCN_HD_CALLS_FUNCTOR
#endif

namespace pdcn {

// Accumulation type: float for float and the half types, double for double.
// The CUDA header specialises it for __half and __nv_bfloat16.
template <typename T>
struct AccType {
  using type = T;
};
template <typename T>
using acc_t = typename AccType<T>::type;

// Conversion between a storage type and its accumulation type, written
// pdcn::cast<To>(v) in every per-element function. The generic form is a
// static_cast; cuda_common.cuh specialises it for __half and __nv_bfloat16
// with the explicit intrinsics, so that the kernels compile under
// -D__CUDA_NO_HALF_CONVERSIONS__ / -D__CUDA_NO_BFLOAT16_CONVERSIONS__ (which
// Paddle's and PyTorch's extension builders may pass).
template <typename To, typename From>
struct Cast {
  static PDCN_HD To apply(From v) { return static_cast<To>(v); }
};
template <typename To, typename From>
PDCN_HD To cast(From v) {
  return Cast<To, From>::apply(v);
}

// A loop over the channels [0, nc) of a block of at most CB (a constant):
// on CUDA it runs to CB with a guard, so that an array indexed by c stays in
// registers (indexed by a loop to the run-time nc, nvcc puts it in local
// memory: ptxas reported 32-byte stack frames for the DCNv3/v4 forward and
// coordinate-gradient kernels); on the CPU it runs to nc, which is a constant
// in the drivers' compiled widths. The same iterations either way.
#if defined(__CUDA_ARCH__)
#define PDCN_CHANNEL_LOOP(c, CB, nc) \
  for (int c = 0; c < (CB); ++c)     \
    if (c < (nc))
#else
#define PDCN_CHANNEL_LOOP(c, CB, nc) for (int c = 0; c < (nc); ++c)
#endif

// sum_c a[c] * b[c] over n channels, in kLanes interleaved partial sums added
// at the end: a fixed order (the same on every driver and thread count) that
// the CPU compiler can vectorise.
template <typename Acc, typename T>
PDCN_HD Acc lane_dot(const T* a, const T* b, int64_t n) {
  constexpr int kLanes = 8;
  Acc lanes[kLanes];
  for (int l = 0; l < kLanes; ++l) lanes[l] = Acc(0);
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += cast<Acc>(a[c + l]) * cast<Acc>(b[c + l]);
  }
  // the last n % kLanes channels into lanes 0, 1, ...
  PDCN_CHANNEL_LOOP(l, kLanes, static_cast<int>(n - c)) {
    lanes[l] += cast<Acc>(a[c + l]) * cast<Acc>(b[c + l]);
  }
  Acc total = Acc(0);
  for (int l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

PDCN_HD float floor_acc(float v) { return floorf(v); }
PDCN_HD double floor_acc(double v) { return ::floor(v); }

// Threads of the CPU drivers: OMP_NUM_THREADS as the process sees it now.
// Paddle sets that variable at import (to 1 unless the user chose a number)
// after the OpenMP runtime may already have read its environment, so
// omp_get_max_threads() can report every core; following the variable keeps
// our kernels at Paddle's setting (no oversubscription of data-parallel
// workers, no spinning threads on a busy machine). Unset: OpenMP's default.
inline int cpu_thread_count() {
  const char* value = std::getenv("OMP_NUM_THREADS");
  const int requested = value ? std::atoi(value) : 0;
  if (requested > 0) return requested;
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Runs f(i) for i in [0, n) on cpu_thread_count() threads (OpenMP, static
// schedule, so each index is owned by exactly one thread: drivers rely on this
// for race-free, deterministic accumulation). One thread: a plain loop.
template <typename F>
void cpu_parallel_for(int64_t n, const F& f) {
  const int threads = cpu_thread_count();
  if (threads <= 1 || n <= 1) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
  for (int64_t i = 0; i < n; ++i) f(i);
}

// Fixed chunks of rows for sums that must not depend on the thread count:
// min(max_chunks, rows) of them (at least one), decided by the shape alone.
inline int64_t fixed_row_chunk_count(int64_t rows, int64_t max_chunks) {
  return rows < max_chunks ? (rows > 1 ? rows : 1) : max_chunks;
}

// Runs f(k, r0, r1) for chunk k = [rows*k/chunks, rows*(k+1)/chunks) of
// [0, rows), k in [0, chunks), spread over the threads as cpu_parallel_for's
// indices: the callers sum chunk k into its own partial and then add the
// partials in k order.
template <typename F>
void cpu_parallel_row_chunks(int64_t rows, int64_t chunks, const F& f) {
  cpu_parallel_for(chunks, [&](int64_t k) { f(k, rows * k / chunks, rows * (k + 1) / chunks); });
}

// Runs f(r0, r1) over [0, rows) in ranges of rows_per_task rows (the last one
// shorter), the ranges spread over the threads as cpu_parallel_for's indices.
template <typename F>
void cpu_parallel_row_ranges(int64_t rows, int64_t rows_per_task, const F& f) {
  const int64_t tasks = (rows + rows_per_task - 1) / rows_per_task;
  cpu_parallel_for(tasks, [&](int64_t t) {
    const int64_t r0 = t * rows_per_task;
    f(r0, r0 + rows_per_task < rows ? r0 + rows_per_task : rows);
  });
}

}  // namespace pdcn
