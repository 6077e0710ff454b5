// CUDA driver of the deformable RoI pooling kernels: grid-stride kernels over
// the per-element functions of deform_roi_pool.h and deform_psroi_pool.h.
// Only the launch configuration, the atomics and the half-type plumbing live
// here; the shared launch plumbing is in cuda_common.cuh.
#pragma once

#include "cuda_common.cuh"
#include "deform_psroi_pool.h"
#include "deform_roi_pool.h"

namespace pdcn {
namespace cuda {

// roi_batch[k] from boxes_num (see roi_batch_from_counts); batch is small, so
// each box walks the running counts.
template <typename Count>
__global__ void roi_batch_kernel(const Count* counts, int64_t batch, int64_t num_rois,
                                 int* roi_batch) {
  PDCN_CUDA_LOOP(k, num_rois) {
    int image = -1;
    int64_t end = 0;
    for (int64_t n = 0; n < batch; ++n) {
      const int64_t c = static_cast<int64_t>(counts[n]);
      end += c > 0 ? c : 0;
      if (k < end) {
        image = static_cast<int>(n);
        break;
      }
    }
    roi_batch[k] = image;
  }
}

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
    if (roi_batch[ix.k] < 0) continue;
    Acc* plane = acc + (static_cast<int64_t>(roi_batch[ix.k]) * g.channels + ix.c) * g.in_plane();
    deform_roi_pool_backward_x_element(g, grad_out, boxes, roi_batch, offset, ix.k, ix.c, ix.i,
                                       ix.j, [plane](int64_t i, Acc v) { atomicAdd(plane + i, v); });
  }
}

// Deterministic backward, pass 1 (both RoI ops): the largest |grad_out| of the
// boxes that an image covers (each contribution is at most that).
template <typename T>
__global__ void roi_grad_out_max_kernel(const T* grad_out, const int* roi_batch,
                                        int64_t per_box, int64_t total,
                                        unsigned long long* max_bits) {
  using Acc = acc_t<T>;
  unsigned long long local = 0;
  PDCN_CUDA_LOOP(e, total) {
    if (roi_batch[e / per_box] < 0) continue;
    const Acc v = cast<Acc>(grad_out[e]);
    const unsigned long long bits = fixed_point::ordered_bits(v < Acc(0) ? -v : v);
    local = bits > local ? bits : local;
  }
  fold_max(max_bits, local);
}

// Deterministic backward, pass 2: the atomic kernel's scatter with fixed-point
// integer adds into sink (elements [N, C, H, W]).
template <typename T>
__global__ void deform_roi_pool_backward_x_fixed_point_kernel(DeformRoiPoolGeometry g,
                                                              const T* grad_out,
                                                              const acc_t<T>* boxes,
                                                              const int* roi_batch,
                                                              const T* offset,
                                                              FixedPointSink sink) {
  using Acc = acc_t<T>;
  const int exponent = sink.exponent();
  PDCN_CUDA_LOOP(e, g.out_elements()) {
    const RoiOutputIndex ix(e, g.channels, g.pooled_h, g.pooled_w);
    const int image = roi_batch[ix.k];
    if (image < 0) continue;
    const int64_t plane = (static_cast<int64_t>(image) * g.channels + ix.c) * g.in_plane();
    deform_roi_pool_backward_x_element(
        g, grad_out, boxes, roi_batch, offset, ix.k, ix.c, ix.i, ix.j,
        [&](int64_t i, Acc v) { sink.add(plane + i, v, exponent); });
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
    if (roi_batch[ix.k] < 0) continue;
    const int64_t cin = psroi_input_channel(g, ix.c, ix.i, ix.j);
    Acc* plane = acc + (static_cast<int64_t>(roi_batch[ix.k]) * g.in_channels + cin) * g.in_plane();
    deform_psroi_pool_backward_x_element(g, grad_out, boxes, roi_batch, offset, ix.k, ix.c, ix.i,
                                         ix.j,
                                         [plane](int64_t i, Acc v) { atomicAdd(plane + i, v); });
  }
}

template <typename T>
__global__ void deform_psroi_pool_backward_x_fixed_point_kernel(DeformPSRoiPoolGeometry g,
                                                                const T* grad_out,
                                                                const acc_t<T>* boxes,
                                                                const int* roi_batch,
                                                                const T* offset,
                                                                FixedPointSink sink) {
  using Acc = acc_t<T>;
  const int exponent = sink.exponent();
  PDCN_CUDA_LOOP(e, g.out_elements()) {
    const RoiOutputIndex ix(e, g.out_channels, g.pooled_h, g.pooled_w);
    const int image = roi_batch[ix.k];
    if (image < 0) continue;
    const int64_t cin = psroi_input_channel(g, ix.c, ix.i, ix.j);
    const int64_t plane = (static_cast<int64_t>(image) * g.in_channels + cin) * g.in_plane();
    deform_psroi_pool_backward_x_element(
        g, grad_out, boxes, roi_batch, offset, ix.k, ix.c, ix.i, ix.j,
        [&](int64_t i, Acc v) { sink.add(plane + i, v, exponent); });
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
