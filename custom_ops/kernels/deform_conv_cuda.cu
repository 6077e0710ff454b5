// Entry points of deform_conv_cuda.h: dtype dispatch and launches.
#include "cuda_dispatch.cuh"
#include "deform_conv_cuda.cuh"
#include "deform_conv_cuda.h"

namespace pdcn {
namespace cuda {

int64_t col2im_scratch_bytes(DType dtype, const DeformConvGeometry& g, int64_t chunk) {
  return grad_scratch_bytes(dtype, chunk * g.in_channels * g.in_plane());
}

void deform_im2col(DType dtype, const DeformConvGeometry& g, const void* x, const void* offset,
                   const void* mask, void* columns, int64_t n0, int64_t chunk, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = g.column_elements(chunk);
    deform_im2col_kernel<T><<<grid_for(total), kThreadsPerBlock, 0, as_stream(stream)>>>(
        g, static_cast<const T*>(x), static_cast<const T*>(offset), static_cast<const T*>(mask),
        static_cast<T*>(columns), n0, chunk);
  });
}

void deform_col2im(DType dtype, const DeformConvGeometry& g, const void* grad_columns,
                   const void* offset, const void* mask, void* grad_x, void* scratch, int64_t n0,
                   int64_t chunk, bool deterministic, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using Acc = acc_t<T>;
    const int64_t planes = chunk * g.in_channels, count = planes * g.in_plane();
    T* grad_x_chunk = static_cast<T*>(grad_x) + n0 * g.in_channels * g.in_plane();
    const T* gc = static_cast<const T*>(grad_columns);
    const T* off = static_cast<const T*>(offset);
    const T* m = static_cast<const T*>(mask);
    const cudaStream_t s = as_stream(stream);
    accumulate_input_grad<T>(dtype, grad_x_chunk, scratch, count, s, [&](Acc* acc) {
      if (deterministic) {
        deform_col2im_deterministic_kernel<T, Acc>
            <<<grid_for(planes), kThreadsPerBlock, 0, s>>>(g, gc, off, m, acc, n0, chunk);
      } else {
        deform_col2im_atomic_kernel<T, Acc><<<grid_for(g.column_elements(chunk)),
                                              kThreadsPerBlock, 0, s>>>(g, gc, off, m, acc, n0,
                                                                        chunk);
      }
    });
  });
}

void deform_coord_grad(DType dtype, const DeformConvGeometry& g, const void* grad_columns,
                       const void* x, const void* offset, const void* mask, void* grad_offset,
                       void* grad_mask, int64_t n0, int64_t chunk, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = chunk * g.deformable_groups * g.kernel_size() * g.out_plane();
    deform_coord_grad_kernel<T><<<grid_for(total), kThreadsPerBlock, 0, as_stream(stream)>>>(
        g, static_cast<const T*>(grad_columns), static_cast<const T*>(x),
        static_cast<const T*>(offset), static_cast<const T*>(mask), static_cast<T*>(grad_offset),
        static_cast<T*>(grad_mask), n0, chunk);
  });
}

void deform_columns_to_output(DType dtype, const DeformConvGeometry& g, const void* result,
                              void* out, int64_t n0, int64_t chunk, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = g.out_channels * chunk * g.out_plane();
    deform_columns_to_output_kernel<T><<<grid_for(total), kThreadsPerBlock, 0, as_stream(stream)>>>(
        g, static_cast<const T*>(result), static_cast<T*>(out), n0, chunk);
  });
}

void deform_output_to_columns(DType dtype, const DeformConvGeometry& g, const void* grad_out,
                              void* gathered, int64_t n0, int64_t chunk, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = g.out_channels * chunk * g.out_plane();
    deform_output_to_columns_kernel<T><<<grid_for(total), kThreadsPerBlock, 0, as_stream(stream)>>>(
        g, static_cast<const T*>(grad_out), static_cast<T*>(gathered), n0, chunk);
  });
}

void accumulate(DType dtype, void* dst, const void* src, int64_t n, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    accumulate_kernel<T><<<grid_for(n), kThreadsPerBlock, 0, as_stream(stream)>>>(
        static_cast<T*>(dst), static_cast<const T*>(src), n);
  });
}

}  // namespace cuda
}  // namespace pdcn
