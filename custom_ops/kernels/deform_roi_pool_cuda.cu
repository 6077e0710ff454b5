// Entry points of deform_roi_pool_cuda.h: dtype dispatch and launches.
#include "deform_roi_pool_cuda.cuh"
#include "deform_roi_pool_cuda.h"

namespace pdcn {
namespace cuda {
namespace {

template <typename F>
void dispatch(DType dtype, const F& f) {
  switch (dtype) {
    case DType::kFloat32: f(float{}); break;
    case DType::kFloat64: f(double{}); break;
    case DType::kFloat16: f(__half{}); break;
    case DType::kBFloat16: f(__nv_bfloat16{}); break;
  }
}

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

bool is_half(DType dtype) { return dtype == DType::kFloat16 || dtype == DType::kBFloat16; }

// Zeroes the input-gradient accumulator (grad_x itself, or the float32
// scratch for half types), runs `scatter(acc)` and converts back if needed.
template <typename T, typename Scatter>
void accumulate_grad_x(DType dtype, void* grad_x, void* scratch, int64_t count,
                       cudaStream_t stream, const Scatter& scatter) {
  using Acc = acc_t<T>;
  Acc* acc = is_half(dtype) ? static_cast<Acc*>(scratch) : reinterpret_cast<Acc*>(grad_x);
  cudaMemsetAsync(acc, 0, count * sizeof(Acc), stream);
  scatter(acc);
  if (is_half(dtype)) {
    convert_kernel<T, Acc><<<grid_for(count), kThreadsPerBlock, 0, stream>>>(
        acc, static_cast<T*>(grad_x), count);
  }
}

}  // namespace

// ---- RoIAlign-based ---------------------------------------------------------

void deform_roi_pool_forward(DType dtype, const DeformRoiPoolGeometry& g, const void* x,
                             const void* boxes, const int* roi_batch, const void* offset,
                             void* out, void* stream) {
  if (g.out_elements() == 0) return;
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    deform_roi_pool_forward_kernel<T>
        <<<grid_for(g.out_elements()), kThreadsPerBlock, 0, as_stream(stream)>>>(
            g, static_cast<const T*>(x), static_cast<const acc_t<T>*>(boxes), roi_batch,
            static_cast<const T*>(offset), static_cast<T*>(out));
  });
}

int64_t deform_roi_pool_backward_scratch_bytes(DType dtype, const DeformRoiPoolGeometry& g) {
  return is_half(dtype) ? g.batch * g.channels * g.in_plane() * static_cast<int64_t>(sizeof(float))
                        : 0;
}

void deform_roi_pool_backward(DType dtype, const DeformRoiPoolGeometry& g, const void* grad_out,
                              const void* x, const void* boxes, const int* roi_batch,
                              const void* offset, void* grad_x, void* grad_offset, void* scratch,
                              bool deterministic, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using Acc = acc_t<T>;
    const cudaStream_t s = as_stream(stream);
    const T* gout = static_cast<const T*>(grad_out);
    const Acc* bx = static_cast<const Acc*>(boxes);
    const T* off = static_cast<const T*>(offset);
    const int64_t count = g.batch * g.channels * g.in_plane();
    if (count > 0) {
      accumulate_grad_x<T>(dtype, grad_x, scratch, count, s, [&](Acc* acc) {
        if (g.out_elements() == 0) return;
        if (deterministic) {
          deform_roi_pool_backward_x_deterministic_kernel<T, Acc>
              <<<grid_for(g.batch * g.channels), kThreadsPerBlock, 0, s>>>(g, gout, bx, roi_batch,
                                                                       off, acc);
        } else {
          deform_roi_pool_backward_x_kernel<T, Acc>
              <<<grid_for(g.out_elements()), kThreadsPerBlock, 0, s>>>(g, gout, bx, roi_batch,
                                                                      off, acc);
        }
      });
    }
    if (grad_offset != nullptr && g.num_rois * g.bins() > 0) {
      deform_roi_pool_offset_grad_kernel<T>
          <<<grid_for(g.num_rois * g.bins()), kThreadsPerBlock, 0, s>>>(
              g, gout, static_cast<const T*>(x), bx, roi_batch, off, static_cast<T*>(grad_offset));
    }
  });
}

// ---- position-sensitive ------------------------------------------------------

void deform_psroi_pool_forward(DType dtype, const DeformPSRoiPoolGeometry& g, const void* x,
                               const void* boxes, const int* roi_batch, const void* offset,
                               void* out, void* stream) {
  if (g.out_elements() == 0) return;
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    deform_psroi_pool_forward_kernel<T>
        <<<grid_for(g.out_elements()), kThreadsPerBlock, 0, as_stream(stream)>>>(
            g, static_cast<const T*>(x), static_cast<const acc_t<T>*>(boxes), roi_batch,
            static_cast<const T*>(offset), static_cast<T*>(out));
  });
}

int64_t deform_psroi_pool_backward_scratch_bytes(DType dtype, const DeformPSRoiPoolGeometry& g) {
  return is_half(dtype)
             ? g.batch * g.in_channels * g.in_plane() * static_cast<int64_t>(sizeof(float))
             : 0;
}

void deform_psroi_pool_backward(DType dtype, const DeformPSRoiPoolGeometry& g,
                                const void* grad_out, const void* x, const void* boxes,
                                const int* roi_batch, const void* offset, void* grad_x,
                                void* grad_offset, void* scratch, bool deterministic, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using Acc = acc_t<T>;
    const cudaStream_t s = as_stream(stream);
    const T* gout = static_cast<const T*>(grad_out);
    const Acc* bx = static_cast<const Acc*>(boxes);
    const T* off = static_cast<const T*>(offset);
    const int64_t count = g.batch * g.in_channels * g.in_plane();
    if (count > 0) {
      accumulate_grad_x<T>(dtype, grad_x, scratch, count, s, [&](Acc* acc) {
        if (g.out_elements() == 0) return;
        if (deterministic) {
          deform_psroi_pool_backward_x_deterministic_kernel<T, Acc>
              <<<grid_for(g.batch * g.in_channels), kThreadsPerBlock, 0, s>>>(g, gout, bx, roi_batch,
                                                                       off, acc);
        } else {
          deform_psroi_pool_backward_x_kernel<T, Acc>
              <<<grid_for(g.out_elements()), kThreadsPerBlock, 0, s>>>(g, gout, bx, roi_batch,
                                                                      off, acc);
        }
      });
    }
    const int64_t entries = g.num_rois * g.offset_groups * g.parts();
    if (grad_offset != nullptr && entries > 0) {
      deform_psroi_pool_offset_grad_kernel<T><<<grid_for(entries), kThreadsPerBlock, 0, s>>>(
          g, gout, static_cast<const T*>(x), bx, roi_batch, off, static_cast<T*>(grad_offset));
    }
  });
}

}  // namespace cuda
}  // namespace pdcn
