// Entry points of deform_roi_pool_cuda.h: dtype dispatch, launches, and a
// status check after every call and launch.
#include "cuda_dispatch.cuh"
#include "deform_roi_pool_cuda.cuh"
#include "deform_roi_pool_cuda.h"

namespace pdcn {
namespace cuda {

int roi_batch_from_counts(const void* boxes_num, bool counts_int64, int64_t batch,
                          int64_t num_rois, int* roi_batch, void* stream) {
  if (num_rois == 0) return 0;
  const cudaStream_t s = as_stream(stream);
  if (counts_int64) {
    roi_batch_kernel<int64_t><<<grid_for(num_rois), kThreadsPerBlock, 0, s>>>(
        static_cast<const int64_t*>(boxes_num), batch, num_rois, roi_batch);
  } else {
    roi_batch_kernel<int32_t><<<grid_for(num_rois), kThreadsPerBlock, 0, s>>>(
        static_cast<const int32_t*>(boxes_num), batch, num_rois, roi_batch);
  }
  PDCN_CUDA_LAUNCHED();
  return 0;
}

namespace {

// grad_x of either RoI op: the atomic or the deterministic scatter of
// scatter_kernel_atomic / scatter_kernel_fixed over the output elements.
// per_box: output elements per box; count_bound: every input element receives
// at most count_bound times the largest |grad_out| in total (each box bin
// spreads weights summing to at most 1).
template <typename T, typename Atomic, typename Fixed>
int roi_input_grad(DType dtype, const T* grad_out, const int* roi_batch, int64_t out_elements,
                   int64_t per_box, int64_t count, double count_bound, void* grad_x,
                   void* scratch, bool deterministic, cudaStream_t s, const Atomic& atomic,
                   const Fixed& fixed) {
  using Acc = acc_t<T>;
  if (count == 0) return 0;
  const unsigned int grid = grid_for(out_elements);
  if (deterministic) {
    return deterministic_input_grad<T>(
        static_cast<T*>(grad_x), scratch, count, count_bound, s,
        [&](unsigned long long* max_bits) {
          if (out_elements == 0) return 0;
          roi_grad_out_max_kernel<T><<<grid, kThreadsPerBlock, 0, s>>>(grad_out, roi_batch,
                                                                       per_box, out_elements,
                                                                       max_bits);
          PDCN_CUDA_LAUNCHED();
          return 0;
        },
        [&](const FixedPointSink& sink) {
          if (out_elements == 0) return 0;
          fixed(grid, sink);
          PDCN_CUDA_LAUNCHED();
          return 0;
        });
  }
  return accumulate_input_grad<T>(dtype, grad_x, scratch, count, s, [&](Acc* acc) {
    if (out_elements == 0) return 0;
    atomic(grid, acc);
    PDCN_CUDA_LAUNCHED();
    return 0;
  });
}

}  // namespace

// ---- RoIAlign-based ---------------------------------------------------------

int deform_roi_pool_forward(DType dtype, const DeformRoiPoolGeometry& g, const void* x,
                            const void* boxes, const int* roi_batch, const void* offset,
                            void* out, void* stream) {
  if (g.out_elements() == 0) return 0;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    deform_roi_pool_forward_kernel<T>
        <<<grid_for(g.out_elements()), kThreadsPerBlock, 0, as_stream(stream)>>>(
            g, static_cast<const T*>(x), static_cast<const acc_t<T>*>(boxes), roi_batch,
            static_cast<const T*>(offset), static_cast<T*>(out));
    PDCN_CUDA_LAUNCHED();
    return 0;
  });
}

int64_t deform_roi_pool_backward_scratch_bytes(DType dtype, const DeformRoiPoolGeometry& g,
                                               bool deterministic) {
  return grad_scratch_bytes(dtype, g.batch * g.channels * g.in_plane(), deterministic);
}

int deform_roi_pool_backward(DType dtype, const DeformRoiPoolGeometry& g, const void* grad_out,
                             const void* x, const void* boxes, const int* roi_batch,
                             const void* offset, void* grad_x, void* grad_offset, void* scratch,
                             bool deterministic, void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using Acc = acc_t<T>;
    const cudaStream_t s = as_stream(stream);
    const T* gout = static_cast<const T*>(grad_out);
    const Acc* bx = static_cast<const Acc*>(boxes);
    const T* off = static_cast<const T*>(offset);
    const int status = roi_input_grad<T>(
        dtype, gout, roi_batch, g.out_elements(), g.channels * g.bins(),
        g.batch * g.channels * g.in_plane(), static_cast<double>(g.num_rois * g.bins()), grad_x,
        scratch, deterministic, s,
        [&](unsigned int grid, Acc* acc) {
          deform_roi_pool_backward_x_kernel<T, Acc><<<grid, kThreadsPerBlock, 0, s>>>(
              g, gout, bx, roi_batch, off, acc);
        },
        [&](unsigned int grid, const FixedPointSink& sink) {
          deform_roi_pool_backward_x_fixed_point_kernel<T><<<grid, kThreadsPerBlock, 0, s>>>(
              g, gout, bx, roi_batch, off, sink);
        });
    if (status != 0) return status;
    if (grad_offset != nullptr && g.num_rois * g.bins() > 0) {
      deform_roi_pool_offset_grad_kernel<T>
          <<<grid_for(g.num_rois * g.bins()), kThreadsPerBlock, 0, s>>>(
              g, gout, static_cast<const T*>(x), bx, roi_batch, off, static_cast<T*>(grad_offset));
      PDCN_CUDA_LAUNCHED();
    }
    return 0;
  });
}

// ---- position-sensitive ------------------------------------------------------

int deform_psroi_pool_forward(DType dtype, const DeformPSRoiPoolGeometry& g, const void* x,
                              const void* boxes, const int* roi_batch, const void* offset,
                              void* out, void* stream) {
  if (g.out_elements() == 0) return 0;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    deform_psroi_pool_forward_kernel<T>
        <<<grid_for(g.out_elements()), kThreadsPerBlock, 0, as_stream(stream)>>>(
            g, static_cast<const T*>(x), static_cast<const acc_t<T>*>(boxes), roi_batch,
            static_cast<const T*>(offset), static_cast<T*>(out));
    PDCN_CUDA_LAUNCHED();
    return 0;
  });
}

int64_t deform_psroi_pool_backward_scratch_bytes(DType dtype, const DeformPSRoiPoolGeometry& g,
                                                 bool deterministic) {
  return grad_scratch_bytes(dtype, g.batch * g.in_channels * g.in_plane(), deterministic);
}

int deform_psroi_pool_backward(DType dtype, const DeformPSRoiPoolGeometry& g,
                               const void* grad_out, const void* x, const void* boxes,
                               const int* roi_batch, const void* offset, void* grad_x,
                               void* grad_offset, void* scratch, bool deterministic,
                               void* stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using Acc = acc_t<T>;
    const cudaStream_t s = as_stream(stream);
    const T* gout = static_cast<const T*>(grad_out);
    const Acc* bx = static_cast<const Acc*>(boxes);
    const T* off = static_cast<const T*>(offset);
    // An input channel feeds one bin of one output channel per box.
    const int status = roi_input_grad<T>(
        dtype, gout, roi_batch, g.out_elements(), g.out_channels * g.bins(),
        g.batch * g.in_channels * g.in_plane(), static_cast<double>(g.num_rois), grad_x, scratch,
        deterministic, s,
        [&](unsigned int grid, Acc* acc) {
          deform_psroi_pool_backward_x_kernel<T, Acc><<<grid, kThreadsPerBlock, 0, s>>>(
              g, gout, bx, roi_batch, off, acc);
        },
        [&](unsigned int grid, const FixedPointSink& sink) {
          deform_psroi_pool_backward_x_fixed_point_kernel<T><<<grid, kThreadsPerBlock, 0, s>>>(
              g, gout, bx, roi_batch, off, sink);
        });
    if (status != 0) return status;
    const int64_t entries = g.num_rois * g.offset_groups * g.parts();
    if (grad_offset != nullptr && entries > 0) {
      deform_psroi_pool_offset_grad_kernel<T><<<grid_for(entries), kThreadsPerBlock, 0, s>>>(
          g, gout, static_cast<const T*>(x), bx, roi_batch, off, static_cast<T*>(grad_offset));
      PDCN_CUDA_LAUNCHED();
    }
    return 0;
  });
}

}  // namespace cuda
}  // namespace pdcn
