// Entry points of deform_conv_cuda.h: dtype dispatch, launches, and a status
// check after every call and launch.
#include "cuda_dispatch.cuh"
#include "deform_conv_cuda.cuh"
#include "deform_conv_cuda.h"

namespace pdcn {
namespace cuda {

const char* error_string(int status) {
  return cudaGetErrorString(static_cast<cudaError_t>(status));
}

DeviceGuard::DeviceGuard(int device) {
  int current = -1;
  status_ = static_cast<int>(cudaGetDevice(&current));
  if (status_ == 0 && current != device) {
    status_ = static_cast<int>(cudaSetDevice(device));
    if (status_ == 0) previous_ = current;
  }
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) cudaSetDevice(previous_);
}

int64_t col2im_scratch_bytes(DType dtype, const DeformConvGeometry& g, int64_t chunk,
                             bool deterministic) {
  return grad_scratch_bytes(dtype, chunk * g.in_channels * g.in_plane(), deterministic);
}

int deform_im2col(DType dtype, const DeformConvGeometry& g, const void* x, const void* offset,
                  const void* mask, void* columns, int64_t n0, int64_t chunk, void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = g.column_elements(chunk);
    deform_im2col_kernel<T><<<grid_for(total), kThreadsPerBlock, 0, as_stream(stream)>>>(
        g, static_cast<const T*>(x), static_cast<const T*>(offset), static_cast<const T*>(mask),
        static_cast<T*>(columns), n0, chunk);
    PDCN_CUDA_LAUNCHED();
    return 0;
  });
}

int deform_col2im(DType dtype, const DeformConvGeometry& g, const void* grad_columns,
                  const void* offset, const void* mask, void* grad_x, void* scratch, int64_t n0,
                  int64_t chunk, bool deterministic, void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using Acc = acc_t<T>;
    const int64_t count = chunk * g.in_channels * g.in_plane();
    if (count == 0) return 0;
    T* grad_x_chunk = static_cast<T*>(grad_x) + n0 * g.in_channels * g.in_plane();
    const T* gc = static_cast<const T*>(grad_columns);
    const T* off = static_cast<const T*>(offset);
    const T* m = static_cast<const T*>(mask);
    const cudaStream_t s = as_stream(stream);
    const unsigned int grid = grid_for(g.column_elements(chunk));
    if (deterministic) {
      // An input pixel receives at most one contribution per (kernel point,
      // output pixel), each at most the largest |grad_column * mask|.
      const double count_bound = static_cast<double>(g.kernel_size() * g.out_plane());
      return deterministic_input_grad<T>(
          grad_x_chunk, scratch, count, count_bound, s,
          [&](unsigned long long* max_bits) {
            deform_col2im_max_kernel<T><<<grid, kThreadsPerBlock, 0, s>>>(g, gc, m, max_bits, n0,
                                                                         chunk);
            PDCN_CUDA_LAUNCHED();
            return 0;
          },
          [&](const FixedPointSink& sink) {
            deform_col2im_fixed_point_kernel<T><<<grid, kThreadsPerBlock, 0, s>>>(g, gc, off, m,
                                                                                 sink, n0, chunk);
            PDCN_CUDA_LAUNCHED();
            return 0;
          });
    }
    return accumulate_input_grad<T>(dtype, grad_x_chunk, scratch, count, s, [&](Acc* acc) {
      deform_col2im_atomic_kernel<T, Acc><<<grid, kThreadsPerBlock, 0, s>>>(g, gc, off, m, acc, n0,
                                                                          chunk);
      PDCN_CUDA_LAUNCHED();
      return 0;
    });
  });
}

int deform_coord_grad(DType dtype, const DeformConvGeometry& g, const void* grad_columns,
                      const void* x, const void* offset, const void* mask, void* grad_offset,
                      void* grad_mask, int64_t n0, int64_t chunk, void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = chunk * g.deformable_groups * g.kernel_size() * g.out_plane();
    deform_coord_grad_kernel<T><<<grid_for(total), kThreadsPerBlock, 0, as_stream(stream)>>>(
        g, static_cast<const T*>(grad_columns), static_cast<const T*>(x),
        static_cast<const T*>(offset), static_cast<const T*>(mask), static_cast<T*>(grad_offset),
        static_cast<T*>(grad_mask), n0, chunk);
    PDCN_CUDA_LAUNCHED();
    return 0;
  });
}

int deform_columns_to_output(DType dtype, const DeformConvGeometry& g, const void* result,
                             void* out, int64_t n0, int64_t chunk, void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = g.out_channels * chunk * g.out_plane();
    deform_columns_to_output_kernel<T><<<grid_for(total), kThreadsPerBlock, 0, as_stream(stream)>>>(
        g, static_cast<const T*>(result), static_cast<T*>(out), n0, chunk);
    PDCN_CUDA_LAUNCHED();
    return 0;
  });
}

int deform_output_to_columns(DType dtype, const DeformConvGeometry& g, const void* grad_out,
                             void* gathered, int64_t n0, int64_t chunk, void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = g.out_channels * chunk * g.out_plane();
    deform_output_to_columns_kernel<T><<<grid_for(total), kThreadsPerBlock, 0, as_stream(stream)>>>(
        g, static_cast<const T*>(grad_out), static_cast<T*>(gathered), n0, chunk);
    PDCN_CUDA_LAUNCHED();
    return 0;
  });
}

int accumulate(DType dtype, void* acc, const void* src, int64_t n, void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    accumulate_kernel<T><<<grid_for(n), kThreadsPerBlock, 0, as_stream(stream)>>>(
        static_cast<acc_t<T>*>(acc), static_cast<const T*>(src), n);
    PDCN_CUDA_LAUNCHED();
    return 0;
  });
}

int convert_from_acc(DType dtype, const void* acc, void* dst, int64_t n, void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    convert_kernel<T, acc_t<T>><<<grid_for(n), kThreadsPerBlock, 0, as_stream(stream)>>>(
        static_cast<const acc_t<T>*>(acc), static_cast<T*>(dst), n);
    PDCN_CUDA_LAUNCHED();
    return 0;
  });
}

}  // namespace cuda
}  // namespace pdcn
