// Entry points of deform_aggregate_cuda.h.
#include "cuda_dispatch.cuh"
#include "deform_aggregate_cuda.cuh"
#include "deform_aggregate_cuda.h"

namespace pdcn {
namespace cuda {

int deform_aggregate_forward(DType dtype, const AggregateGeometry& g, const void* value,
                             const void* offset, const void* weight, void* out, void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = g.batch * g.out_plane() * g.groups * aggregate_channel_blocks(g);
    if (total == 0) return 0;
    if (g.in_plane() == 0) {  // nothing to sample (deform_aggregate.h)
      PDCN_CUDA_TRY(cudaMemsetAsync(out, 0, g.out_elements() * sizeof(T), as_stream(stream)));
      return 0;
    }
    deform_aggregate_forward_kernel<T><<<grid_for(total), kThreadsPerBlock, 0, as_stream(stream)>>>(
        g, static_cast<const T*>(value), static_cast<const T*>(offset), static_cast<const T*>(weight),
        static_cast<T*>(out));
    PDCN_CUDA_LAUNCHED();
    return 0;
  });
}

int64_t deform_aggregate_backward_scratch_bytes(DType dtype, const AggregateGeometry& g,
                                                bool deterministic) {
  return grad_scratch_bytes(dtype, g.value_elements(), deterministic);
}

int deform_aggregate_backward(DType dtype, const AggregateGeometry& g, const void* value,
                              const void* offset, const void* weight, const void* grad_out,
                              void* grad_value, void* grad_offset, void* grad_weight,
                              void* scratch, bool deterministic, void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using Acc = acc_t<T>;
    const cudaStream_t s = as_stream(stream);
    const T* off = static_cast<const T*>(offset);
    const T* w = static_cast<const T*>(weight);
    const T* go = static_cast<const T*>(grad_out);
    if (g.in_plane() == 0) {  // every sample zero (deform_aggregate.h); no value gradient
      PDCN_CUDA_TRY(cudaMemsetAsync(grad_offset, 0, g.offset_elements() * sizeof(T), s));
      PDCN_CUDA_TRY(cudaMemsetAsync(grad_weight, 0, g.weight_elements() * sizeof(T), s));
      return 0;
    }
    const int64_t points = g.batch * g.out_plane() * g.groups * g.kernel_size();
    if (points > 0) {
      deform_aggregate_coord_grad_kernel<T><<<grid_for(points), kThreadsPerBlock, 0, s>>>(
          g, static_cast<const T*>(value), off, w, go, static_cast<T*>(grad_offset),
          static_cast<T*>(grad_weight));
      PDCN_CUDA_LAUNCHED();
    }
    const int64_t count = g.value_elements();
    if (count == 0) return 0;
    const int64_t items = g.batch * g.out_plane() * g.groups * aggregate_channel_blocks(g);
    if (items == 0) {  // no outputs: a zero value gradient
      PDCN_CUDA_TRY(cudaMemsetAsync(grad_value, 0, count * sizeof(T), s));
      return 0;
    }
    const unsigned int grid = grid_for(items);
    if (deterministic) {
      // A value element receives at most one contribution per (output pixel, kernel point).
      const double count_bound = static_cast<double>(g.out_plane() * g.kernel_size());
      return deterministic_input_grad<T>(
          static_cast<T*>(grad_value), scratch, count, count_bound, s,
          [&](unsigned long long* max_bits) {
            deform_aggregate_value_grad_max_kernel<T>
                <<<grid_for(g.batch * g.out_plane() * g.groups), kThreadsPerBlock, 0, s>>>(g, w, go,
                                                                                      max_bits);
            PDCN_CUDA_LAUNCHED();
            return 0;
          },
          [&](const FixedPointSink& sink) {
            deform_aggregate_value_grad_fixed_point_kernel<T><<<grid, kThreadsPerBlock, 0, s>>>(
                g, off, w, go, sink);
            PDCN_CUDA_LAUNCHED();
            return 0;
          });
    }
    return accumulate_input_grad<T>(dtype, grad_value, scratch, count, s, [&](Acc* acc) {
      deform_aggregate_value_grad_atomic_kernel<T, Acc><<<grid, kThreadsPerBlock, 0, s>>>(g, off, w,
                                                                                       go, acc);
      PDCN_CUDA_LAUNCHED();
      return 0;
    });
  });
}

}  // namespace cuda
}  // namespace pdcn
