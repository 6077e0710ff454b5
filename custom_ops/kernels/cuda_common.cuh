// CUDA plumbing shared by every op's CUDA driver: half-type accumulation,
// launch configuration, the grid-stride loop, dtype dispatch, and the
// zero / scatter / convert sequence of input gradients. Only .cu files include
// it (no Paddle headers anywhere below custom_ops/kernels).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "common.h"
#include "fixed_point.h"

namespace pdcn {

template <>
struct AccType<__half> {
  using type = float;
};
template <>
struct AccType<__nv_bfloat16> {
  using type = float;
};

template <>
struct Cast<float, __half> {
  static __host__ __device__ __forceinline__ float apply(__half v) { return __half2float(v); }
};
template <>
struct Cast<__half, float> {
  static __host__ __device__ __forceinline__ __half apply(float v) { return __float2half_rn(v); }
};
template <>
struct Cast<float, __nv_bfloat16> {
  static __host__ __device__ __forceinline__ float apply(__nv_bfloat16 v) {
    return __bfloat162float(v);
  }
};
template <>
struct Cast<__nv_bfloat16, float> {
  static __host__ __device__ __forceinline__ __nv_bfloat16 apply(float v) {
    return __float2bfloat16_rn(v);
  }
};

namespace cuda {

constexpr int kThreadsPerBlock = 256;

inline unsigned int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 1 << 20)));
}

#define PDCN_CUDA_LOOP(i, n)                                                      \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; \
       i < (n); i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// Error handling of the entry points: each returns 0 or the cudaError_t of
// the first failed call or launch, checked right after it.
#define PDCN_CUDA_TRY(expr)                                 \
  do {                                                      \
    const cudaError_t pdcn_status_ = (expr);                \
    if (pdcn_status_ != cudaSuccess) return static_cast<int>(pdcn_status_); \
  } while (0)
// After a kernel launch: a bad configuration or a missing kernel image for
// this GPU ("no kernel image is available") shows here, not in a later op.
#define PDCN_CUDA_LAUNCHED() PDCN_CUDA_TRY(cudaGetLastError())

template <typename T, typename Acc>
__global__ void convert_kernel(const Acc* src, T* dst, int64_t n) {
  PDCN_CUDA_LOOP(i, n) { dst[i] = cast<T>(src[i]); }
}

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// Scratch of a deterministic (fixed-point, see fixed_point.h) scatter into
// `elements` outputs: the largest contribution, the integer totals and the
// non-finite flags, each 256-byte aligned.
inline int64_t align256(int64_t bytes) { return (bytes + 255) / 256 * 256; }
inline int64_t fixed_point_scratch_bytes(int64_t elements) {
  return align256(sizeof(unsigned long long)) + align256(elements * sizeof(long long)) +
         align256(fixed_point::flag_words(elements) * sizeof(unsigned));
}

// The device side of a deterministic scatter: kernels read the exponent once,
// then add(element, value). count: the bound on contributions per element
// (fixed_point::scale_exponent), set by the driver.
struct FixedPointSink {
  unsigned long long* max_bits;
  long long* totals;
  unsigned* flags;
  double count;

  __device__ __forceinline__ int exponent() const {
    return fixed_point::scale_exponent(fixed_point::from_ordered_bits(*max_bits), count);
  }
  __device__ __forceinline__ void add(int64_t element, double v, int e) const {
    const unsigned f = fixed_point::flags_of(v);
    if (f != 0u) {
      atomicOr(flags + element / fixed_point::kFlagsPerWord, f << fixed_point::flag_shift(element));
    } else if (v != 0.0) {
      atomicAdd(reinterpret_cast<unsigned long long*>(totals + element),
                static_cast<unsigned long long>(fixed_point::encode(v, e)));
    }
  }
  __device__ __forceinline__ double total(int64_t element, int e) const {
    const unsigned f = (flags[element / fixed_point::kFlagsPerWord] >>
                        fixed_point::flag_shift(element)) & 3u;
    return fixed_point::decode(totals[element], f, e);
  }
};

inline FixedPointSink carve_fixed_point(void* scratch, int64_t elements, double count) {
  unsigned char* p = static_cast<unsigned char*>(scratch);
  FixedPointSink s;
  s.max_bits = reinterpret_cast<unsigned long long*>(p);
  p += align256(sizeof(unsigned long long));
  s.totals = reinterpret_cast<long long*>(p);
  p += align256(elements * sizeof(long long));
  s.flags = reinterpret_cast<unsigned*>(p);
  s.count = count;
  return s;
}

// Largest |value| of a thread's share, folded into *max_bits (an atomic max of
// ordered bits: the same result in any order). A whole warp first takes its
// maximum by shuffles and sends one atomic (millions of threads' atomics on one
// address serialise); a partial warp (some lanes already gone) sends one per
// thread. Kernels run 1-D blocks of a multiple of 32 threads.
__device__ __forceinline__ void fold_max(unsigned long long* max_bits, unsigned long long local) {
  const unsigned active = __activemask();
  if (active == 0xffffffffu) {
    for (int lane_step = 16; lane_step > 0; lane_step >>= 1) {
      const unsigned long long other = __shfl_xor_sync(active, local, lane_step);
      local = other > local ? other : local;
    }
    if ((threadIdx.x & 31u) != 0u) return;
  }
  if (local != 0ull) atomicMax(max_bits, local);
}

template <typename T>
__global__ void fixed_point_decode_kernel(FixedPointSink sink, T* out, int64_t n) {
  const int e = sink.exponent();
  PDCN_CUDA_LOOP(i, n) { out[i] = cast<T>(static_cast<acc_t<T>>(sink.total(i, e))); }
}

}  // namespace cuda
}  // namespace pdcn
