// CPU driver of deformable position-sensitive RoI pooling: OpenMP loops over
// the per-element functions of deform_psroi_pool.h. Every output element is
// owned by one thread, so the backward pass is deterministic and atomic-free:
//   forward      parallel over (box, output channel)
//   grad x       parallel over input channels: input channel (c, i, j) only
//                feeds output bin (c, i, j) of each box, so the thread owning
//                that channel's planes visits the boxes in order
//   grad offset  parallel over offset entries
#pragma once

#include <cstring>

#include "deform_psroi_pool.h"

namespace pdcn {
namespace cpu {

template <typename T>
void deform_psroi_pool_forward(const DeformPSRoiPoolGeometry& g, const T* x,
                               const acc_t<T>* boxes, const int* roi_batch, const T* offset,
                               T* out) {
  cpu_parallel_for(g.num_rois * g.out_channels, [&](int64_t kc) {
    const int64_t k = kc / g.out_channels, c = kc % g.out_channels;
    for (int64_t i = 0; i < g.pooled_h; ++i) {
      for (int64_t j = 0; j < g.pooled_w; ++j) {
        deform_psroi_pool_forward_element(g, x, boxes, roi_batch, offset, out, k, c, i, j);
      }
    }
  });
}

// grad_x [N, OC * PH * PW, H, W] is overwritten.
template <typename T>
void deform_psroi_pool_backward_x(const DeformPSRoiPoolGeometry& g, const T* grad_out,
                                  const acc_t<T>* boxes, const int* roi_batch, const T* offset,
                                  T* grad_x) {
  using Acc = acc_t<T>;
  const int64_t hw = g.in_plane();
  cpu_parallel_for(g.in_channels, [&](int64_t cin) {
    for (int64_t n = 0; n < g.batch; ++n) {
      T* plane = grad_x + (n * g.in_channels + cin) * hw;
      std::memset(plane, 0, sizeof(T) * hw);
    }
    const int64_t j = cin % g.pooled_w, i = (cin / g.pooled_w) % g.pooled_h;
    const int64_t c = cin / g.bins();
    for (int64_t k = 0; k < g.num_rois; ++k) {
      T* plane = grad_x + (static_cast<int64_t>(roi_batch[k]) * g.in_channels + cin) * hw;
      deform_psroi_pool_backward_x_element(
          g, grad_out, boxes, roi_batch, offset, k, c, i, j,
          [plane](int64_t idx, Acc v) { plane[idx] = static_cast<T>(static_cast<Acc>(plane[idx]) + v); });
    }
  });
}

// grad_offset [K, 2 * G, PART_H, PART_W] is overwritten.
template <typename T>
void deform_psroi_pool_backward_offset(const DeformPSRoiPoolGeometry& g, const T* grad_out,
                                       const T* x, const acc_t<T>* boxes, const int* roi_batch,
                                       const T* offset, T* grad_offset) {
  const int64_t parts = g.parts();
  cpu_parallel_for(g.num_rois * g.offset_groups * parts, [&](int64_t e) {
    const int64_t p = e % parts, t = e / parts;
    const int64_t group = t % g.offset_groups, k = t / g.offset_groups;
    deform_psroi_pool_offset_grad_entry(g, grad_out, x, boxes, roi_batch, offset, grad_offset, k,
                                        group, p / g.part_w, p % g.part_w);
  });
}

}  // namespace cpu
}  // namespace pdcn
