// CPU driver of the deformable convolution kernels: OpenMP loops over the
// per-element functions of deform_conv.h. Every output element is owned by
// exactly one thread, so the backward pass is deterministic and atomic-free.
#pragma once

#include <algorithm>

#include "deform_conv.h"

namespace pdcn {
namespace cpu {

template <typename T>
void deform_im2col(const DeformConvGeometry& g, const T* x, const T* offset, const T* mask,
                   T* columns, int64_t n0, int64_t chunk) {
  const int64_t K = g.kernel_size(), hw = g.out_plane();
  cpu_parallel_for(g.in_channels * K * chunk, [&](int64_t row) {
    const int64_t b = row % chunk, ck = row / chunk, k = ck % K, c = ck / K;
    for (int64_t p = 0; p < hw; ++p) {
      deform_im2col_element(g, x, offset, mask, columns, n0, chunk, c, k, b, p);
    }
  });
}

// grad_x planes of images [n0, n0 + chunk) are overwritten: one thread owns
// one (image, channel) plane and adds every column entry of that channel.
template <typename T>
void deform_col2im(const DeformConvGeometry& g, const T* grad_columns, const T* offset,
                   const T* mask, T* grad_x, int64_t n0, int64_t chunk) {
  using Acc = acc_t<T>;
  const int64_t K = g.kernel_size(), hw = g.out_plane();
  cpu_parallel_for(chunk * g.in_channels, [&](int64_t plane_index) {
    const int64_t b = plane_index / g.in_channels, c = plane_index % g.in_channels;
    T* plane = grad_x + ((n0 + b) * g.in_channels + c) * g.in_plane();
    std::fill(plane, plane + g.in_plane(), T(0));
    auto add = [plane](int64_t i, Acc v) { plane[i] += static_cast<T>(v); };
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t p = 0; p < hw; ++p) {
        deform_col2im_element(g, grad_columns, offset, mask, n0, chunk, c, k, b, p, add);
      }
    }
  });
}

template <typename T>
void deform_coord_grad(const DeformConvGeometry& g, const T* grad_columns, const T* x,
                       const T* offset, const T* mask, T* grad_offset, T* grad_mask, int64_t n0,
                       int64_t chunk) {
  const int64_t K = g.kernel_size(), hw = g.out_plane();
  cpu_parallel_for(chunk * g.deformable_groups * K, [&](int64_t row) {
    const int64_t k = row % K, t = row / K, dg = t % g.deformable_groups,
                  b = t / g.deformable_groups;
    for (int64_t p = 0; p < hw; ++p) {
      deform_coord_grad_element(g, grad_columns, x, offset, mask, grad_offset, grad_mask, n0,
                                chunk, dg, k, b, p);
    }
  });
}

template <typename T>
void deform_columns_to_output(const DeformConvGeometry& g, const T* result, T* out, int64_t n0,
                              int64_t chunk) {
  const int64_t hw = g.out_plane();
  cpu_parallel_for(g.out_channels * chunk, [&](int64_t row) {
    const int64_t co = row / chunk, b = row % chunk;
    for (int64_t p = 0; p < hw; ++p) deform_columns_to_output_element(g, result, out, n0, chunk, co, b, p);
  });
}

template <typename T>
void deform_output_to_columns(const DeformConvGeometry& g, const T* grad_out, T* gathered,
                              int64_t n0, int64_t chunk) {
  const int64_t hw = g.out_plane();
  cpu_parallel_for(g.out_channels * chunk, [&](int64_t row) {
    const int64_t co = row / chunk, b = row % chunk;
    for (int64_t p = 0; p < hw; ++p) deform_output_to_columns_element(g, grad_out, gathered, n0, chunk, co, b, p);
  });
}

template <typename T>
void accumulate(T* dst, const T* src, int64_t n) {
  cpu_parallel_for(n, [&](int64_t i) { dst[i] += src[i]; });
}

}  // namespace cpu
}  // namespace pdcn
