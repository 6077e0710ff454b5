// CUDA driver of the deformable RoI pooling kernels: grid-stride kernels over
// the per-element functions of deform_roi_pool.h and deform_psroi_pool.h.
// Only the launch configuration, the atomics and the half-type plumbing live
// here. The half-type AccType specialisations, kThreadsPerBlock, grid_for and
// PDCN_CUDA_LOOP come from deform_conv_cuda.cuh.
#pragma once

#include "deform_conv_cuda.cuh"
#include "deform_psroi_pool.h"
#include "deform_roi_pool.h"

namespace pdcn {
namespace cuda {

// Output index e over (k, c, i, j), j fastest.
struct RoiOutputIndex {
  int64_t k, c, i, j;
  __device__ __forceinline__ RoiOutputIndex(int64_t e, int64_t channels, int64_t ph,
                                            int64_t pw) {
    j = e % pw;
    int64_t t = e / pw;
    i = t % ph;
    t /= ph;
    c = t % channels;
    k = t / channels;
  }
};

template <typename T>
__global__ void deform_roi_pool_forward_kernel(DeformRoiPoolGeometry g, const T* x,
                                               const acc_t<T>* boxes, const int* roi_batch,
                                               const T* offset, T* out) {
  PDCN_CUDA_LOOP(e, g.out_elements()) {
    const RoiOutputIndex ix(e, g.channels, g.pooled_h, g.pooled_w);
    deform_roi_pool_forward_element(g, x, boxes, roi_batch, offset, out, ix.k, ix.c, ix.i, ix.j);
  }
}

// acc: [N, C, H, W] in the accumulation type, zeroed beforehand.
template <typename T, typename Acc>
__global__ void deform_roi_pool_backward_x_kernel(DeformRoiPoolGeometry g, const T* grad_out,
                                                  const Acc* boxes, const int* roi_batch,
                                                  const T* offset, Acc* acc) {
  PDCN_CUDA_LOOP(e, g.out_elements()) {
    const RoiOutputIndex ix(e, g.channels, g.pooled_h, g.pooled_w);
    Acc* plane = acc + (static_cast<int64_t>(roi_batch[ix.k]) * g.channels + ix.c) * g.in_plane();
    deform_roi_pool_backward_x_element(g, grad_out, boxes, roi_batch, offset, ix.k, ix.c, ix.i,
                                       ix.j, [plane](int64_t i, Acc v) { atomicAdd(plane + i, v); });
  }
}

// One thread owns one (image, channel) plane and visits the boxes of that
// image in order: a fixed summation order, bitwise reproducible.
template <typename T, typename Acc>
__global__ void deform_roi_pool_backward_x_deterministic_kernel(DeformRoiPoolGeometry g,
                                                                const T* grad_out,
                                                                const Acc* boxes,
                                                                const int* roi_batch,
                                                                const T* offset, Acc* acc) {
  PDCN_CUDA_LOOP(plane_index, g.batch * g.channels) {
    const int64_t n = plane_index / g.channels, c = plane_index % g.channels;
    Acc* plane = acc + plane_index * g.in_plane();
    auto add = [plane](int64_t i, Acc v) { plane[i] += v; };
    for (int64_t k = 0; k < g.num_rois; ++k) {
      if (roi_batch[k] != n) continue;
      for (int64_t i = 0; i < g.pooled_h; ++i) {
        for (int64_t j = 0; j < g.pooled_w; ++j) {
          deform_roi_pool_backward_x_element(g, grad_out, boxes, roi_batch, offset, k, c, i, j,
                                             add);
        }
      }
    }
  }
}

template <typename T>
__global__ void deform_roi_pool_offset_grad_kernel(DeformRoiPoolGeometry g, const T* grad_out,
                                                   const T* x, const acc_t<T>* boxes,
                                                   const int* roi_batch, const T* offset,
                                                   T* grad_offset) {
  PDCN_CUDA_LOOP(e, g.num_rois * g.bins()) {
    const int64_t j = e % g.pooled_w, i = (e / g.pooled_w) % g.pooled_h, k = e / g.bins();
    deform_roi_pool_offset_grad_element(g, grad_out, x, boxes, roi_batch, offset, grad_offset, k,
                                        i, j);
  }
}

template <typename T>
__global__ void deform_psroi_pool_forward_kernel(DeformPSRoiPoolGeometry g, const T* x,
                                                 const acc_t<T>* boxes, const int* roi_batch,
                                                 const T* offset, T* out) {
  PDCN_CUDA_LOOP(e, g.out_elements()) {
    const RoiOutputIndex ix(e, g.out_channels, g.pooled_h, g.pooled_w);
    deform_psroi_pool_forward_element(g, x, boxes, roi_batch, offset, out, ix.k, ix.c, ix.i,
                                      ix.j);
  }
}

template <typename T, typename Acc>
__global__ void deform_psroi_pool_backward_x_kernel(DeformPSRoiPoolGeometry g, const T* grad_out,
                                                    const Acc* boxes, const int* roi_batch,
                                                    const T* offset, Acc* acc) {
  PDCN_CUDA_LOOP(e, g.out_elements()) {
    const RoiOutputIndex ix(e, g.out_channels, g.pooled_h, g.pooled_w);
    const int64_t cin = psroi_input_channel(g, ix.c, ix.i, ix.j);
    Acc* plane = acc + (static_cast<int64_t>(roi_batch[ix.k]) * g.in_channels + cin) * g.in_plane();
    deform_psroi_pool_backward_x_element(g, grad_out, boxes, roi_batch, offset, ix.k, ix.c, ix.i,
                                         ix.j,
                                         [plane](int64_t i, Acc v) { atomicAdd(plane + i, v); });
  }
}

// One thread owns one (image, input channel) plane; input channel (c, i, j)
// only receives from output bin (c, i, j) of the image's boxes.
template <typename T, typename Acc>
__global__ void deform_psroi_pool_backward_x_deterministic_kernel(DeformPSRoiPoolGeometry g,
                                                                  const T* grad_out,
                                                                  const Acc* boxes,
                                                                  const int* roi_batch,
                                                                  const T* offset, Acc* acc) {
  PDCN_CUDA_LOOP(plane_index, g.batch * g.in_channels) {
    const int64_t n = plane_index / g.in_channels, cin = plane_index % g.in_channels;
    const int64_t j = cin % g.pooled_w, i = (cin / g.pooled_w) % g.pooled_h, c = cin / g.bins();
    Acc* plane = acc + plane_index * g.in_plane();
    auto add = [plane](int64_t idx, Acc v) { plane[idx] += v; };
    for (int64_t k = 0; k < g.num_rois; ++k) {
      if (roi_batch[k] != n) continue;
      deform_psroi_pool_backward_x_element(g, grad_out, boxes, roi_batch, offset, k, c, i, j, add);
    }
  }
}

template <typename T>
__global__ void deform_psroi_pool_offset_grad_kernel(DeformPSRoiPoolGeometry g, const T* grad_out,
                                                     const T* x, const acc_t<T>* boxes,
                                                     const int* roi_batch, const T* offset,
                                                     T* grad_offset) {
  const int64_t parts = g.parts();
  PDCN_CUDA_LOOP(e, g.num_rois * g.offset_groups * parts) {
    const int64_t p = e % parts, t = e / parts;
    const int64_t group = t % g.offset_groups, k = t / g.offset_groups;
    deform_psroi_pool_offset_grad_entry(g, grad_out, x, boxes, roi_batch, offset, grad_offset, k,
                                        group, p / g.part_w, p % g.part_w);
  }
}

}  // namespace cuda
}  // namespace pdcn
