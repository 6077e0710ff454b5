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

namespace pdcn {

template <>
struct AccType<__half> {
  using type = float;
};
template <>
struct AccType<__nv_bfloat16> {
  using type = float;
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

template <typename T, typename Acc>
__global__ void convert_kernel(const Acc* src, T* dst, int64_t n) {
  PDCN_CUDA_LOOP(i, n) { dst[i] = static_cast<T>(src[i]); }
}

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

}  // namespace cuda
}  // namespace pdcn
