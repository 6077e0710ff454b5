// Host-side helpers of the CUDA entry points (.cu files only): dtype dispatch
// and the two ways of accumulating an input gradient (float atomics, or the
// deterministic fixed-point scatter).
#pragma once

#include "cuda_common.cuh"
#include "deform_conv_cuda.h"  // DType

namespace pdcn {
namespace cuda {

// Returns f(T{}) with T the element type named by dtype (f returns a status).
template <typename F>
int dispatch(DType dtype, const F& f) {
  switch (dtype) {
    case DType::kFloat32: return f(float{});
    case DType::kFloat64: return f(double{});
    case DType::kFloat16: return f(__half{});
    case DType::kBFloat16: return f(__nv_bfloat16{});
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

inline bool is_half(DType dtype) {
  return dtype == DType::kFloat16 || dtype == DType::kBFloat16;
}

// Bytes of scratch an input gradient of `count` elements needs: the fixed
// point state when deterministic, else float32 for the half types (float32 and
// float64 accumulate in place).
inline int64_t grad_scratch_bytes(DType dtype, int64_t count, bool deterministic) {
  if (count <= 0) return 0;
  if (deterministic) return fixed_point_scratch_bytes(count);
  return is_half(dtype) ? count * static_cast<int64_t>(sizeof(float)) : 0;
}

// Atomic path: zeroes the accumulator of an input gradient of `count`
// elements (grad itself, or the float32 scratch for half types), runs
// scatter(acc) (which launches and returns a status) and converts the scratch
// back into grad if needed.
template <typename T, typename Scatter>
int accumulate_input_grad(DType dtype, void* grad, void* scratch, int64_t count,
                          cudaStream_t stream, const Scatter& scatter) {
  using Acc = acc_t<T>;
  Acc* acc = is_half(dtype) ? static_cast<Acc*>(scratch) : reinterpret_cast<Acc*>(grad);
  PDCN_CUDA_TRY(cudaMemsetAsync(acc, 0, count * sizeof(Acc), stream));
  const int status = scatter(acc);
  if (status != 0) return status;
  if (is_half(dtype)) {
    convert_kernel<T, Acc><<<grid_for(count), kThreadsPerBlock, 0, stream>>>(
        acc, static_cast<T*>(grad), count);
    PDCN_CUDA_LAUNCHED();
  }
  return 0;
}

// Deterministic path: zeroes the fixed-point state in scratch, runs
// find_max(max_bits) (largest |contribution|) and scatter(sink) (each returns
// a status), and decodes the totals into grad. count_bound: contributions per
// element are at most count_bound times the largest (their sum is bounded).
template <typename T, typename FindMax, typename Scatter>
int deterministic_input_grad(T* grad, void* scratch, int64_t count, double count_bound,
                             cudaStream_t stream, const FindMax& find_max,
                             const Scatter& scatter) {
  const FixedPointSink sink = carve_fixed_point(scratch, count, count_bound);
  PDCN_CUDA_TRY(cudaMemsetAsync(scratch, 0, fixed_point_scratch_bytes(count), stream));
  int status = find_max(sink.max_bits);
  if (status != 0) return status;
  status = scatter(sink);
  if (status != 0) return status;
  fixed_point_decode_kernel<T><<<grid_for(count), kThreadsPerBlock, 0, stream>>>(sink, grad, count);
  PDCN_CUDA_LAUNCHED();
  return 0;
}

}  // namespace cuda
}  // namespace pdcn
