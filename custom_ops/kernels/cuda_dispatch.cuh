// Host-side helpers of the CUDA entry points (.cu files only): dtype dispatch
// and the zero / scatter / convert sequence of an input gradient.
#pragma once

#include "cuda_common.cuh"
#include "deform_conv_cuda.h"  // DType

namespace pdcn {
namespace cuda {

// Calls f(T{}) with T the element type named by dtype.
template <typename F>
void dispatch(DType dtype, const F& f) {
  switch (dtype) {
    case DType::kFloat32: f(float{}); break;
    case DType::kFloat64: f(double{}); break;
    case DType::kFloat16: f(__half{}); break;
    case DType::kBFloat16: f(__nv_bfloat16{}); break;
  }
}

inline bool is_half(DType dtype) {
  return dtype == DType::kFloat16 || dtype == DType::kBFloat16;
}

// Bytes of float32 scratch an input gradient of `count` elements needs (half
// types accumulate in float32; float32/float64 accumulate in place).
inline int64_t grad_scratch_bytes(DType dtype, int64_t count) {
  return is_half(dtype) ? count * static_cast<int64_t>(sizeof(float)) : 0;
}

// Zeroes the accumulator of an input gradient of `count` elements (grad
// itself, or the float32 scratch for half types), runs scatter(acc) and
// converts the scratch back into grad if needed.
template <typename T, typename Scatter>
void accumulate_input_grad(DType dtype, void* grad, void* scratch, int64_t count,
                           cudaStream_t stream, const Scatter& scatter) {
  using Acc = acc_t<T>;
  Acc* acc = is_half(dtype) ? static_cast<Acc*>(scratch) : reinterpret_cast<Acc*>(grad);
  cudaMemsetAsync(acc, 0, count * sizeof(Acc), stream);
  scatter(acc);
  if (is_half(dtype)) {
    convert_kernel<T, Acc><<<grid_for(count), kThreadsPerBlock, 0, stream>>>(
        acc, static_cast<T*>(grad), count);
  }
}

}  // namespace cuda
}  // namespace pdcn
