// CPU driver of the deformable convolution kernels: OpenMP loops over the
// per-element functions of deform_conv.h.
//
// The sample stencils of a chunk (one per image, deformable group, kernel point
// and output pixel) are built once and reused for every channel of the group
// and by every pass (im2col, coordinate gradients, col2im). Every output
// element is owned by exactly one thread: the backward pass is deterministic
// and atomic-free. Thread count: OpenMP's (Paddle sets OMP_NUM_THREADS=1
// unless the user chose otherwise).
#pragma once

#include <algorithm>
#include <vector>

#include "deform_conv.h"

namespace pdcn {
namespace cpu {

template <typename T>
using Stencil = DeformSampleStencil<acc_t<T>>;

// Number of stencils of a chunk of `chunk` images.
inline int64_t deform_stencil_count(const DeformConvGeometry& g, int64_t chunk) {
  return chunk * g.deformable_groups * g.kernel_size() * g.out_plane();
}

template <typename T>
void deform_build_stencils(const DeformConvGeometry& g, const T* offset, const T* mask,
                           int64_t n0, int64_t chunk, Stencil<T>* stencils) {
  using Acc = acc_t<T>;
  const int64_t K = g.kernel_size(), hw = g.out_plane();
  cpu_parallel_for(chunk * g.deformable_groups * K, [&](int64_t row) {
    const int64_t k = row % K, t = row / K, dg = t % g.deformable_groups,
                  b = t / g.deformable_groups;
    Stencil<T>* out = stencils + row * hw;
    for (int64_t p = 0; p < hw; ++p) {
      out[p] = deform_sample_stencil<Acc>(g, offset, mask, n0 + b, dg, k, p);
    }
  });
}

template <typename T>
void deform_im2col(const DeformConvGeometry& g, const Stencil<T>* stencils, const T* x,
                   T* columns, int64_t n0, int64_t chunk) {
  const int64_t K = g.kernel_size(), hw = g.out_plane(), cpg = g.channels_per_dgroup();
  cpu_parallel_for(g.in_channels * K * chunk, [&](int64_t row) {
    const int64_t b = row % chunk, ck = row / chunk, k = ck % K, c = ck / K;
    const Stencil<T>* st = stencils + deform_stencil_index(g, b, c / cpg, k, 0);
    for (int64_t p = 0; p < hw; ++p) {
      deform_im2col_element(g, st[p], x, columns, n0, chunk, c, k, b, p);
    }
  });
}

// Overwrites the grad_x planes of images [n0, n0 + chunk): one thread owns one
// (image, channel) plane and adds every column entry of that channel.
template <typename T>
void deform_col2im(const DeformConvGeometry& g, const Stencil<T>* stencils,
                   const T* grad_columns, T* grad_x, int64_t n0, int64_t chunk) {
  using Acc = acc_t<T>;
  const int64_t K = g.kernel_size(), hw = g.out_plane(), cpg = g.channels_per_dgroup();
  cpu_parallel_for(chunk * g.in_channels, [&](int64_t plane_index) {
    const int64_t b = plane_index / g.in_channels, c = plane_index % g.in_channels;
    T* plane = grad_x + ((n0 + b) * g.in_channels + c) * g.in_plane();
    std::fill(plane, plane + g.in_plane(), T(0));
    auto add = [plane](int64_t i, Acc v) { plane[i] += static_cast<T>(v); };
    for (int64_t k = 0; k < K; ++k) {
      const Stencil<T>* st = stencils + deform_stencil_index(g, b, c / cpg, k, 0);
      for (int64_t p = 0; p < hw; ++p) {
        deform_col2im_element(g, st[p], grad_columns, chunk, c, k, b, p, add);
      }
    }
  });
}

// Offset and mask gradients of images [n0, n0 + chunk): one thread owns one
// (image, deformable group, kernel point) row and sums its channels in order.
template <typename T>
void deform_coord_grad(const DeformConvGeometry& g, const Stencil<T>* stencils,
                       const T* grad_columns, const T* x, T* grad_offset, T* grad_mask,
                       int64_t n0, int64_t chunk) {
  using Acc = acc_t<T>;
  const int64_t K = g.kernel_size(), hw = g.out_plane(), cpg = g.channels_per_dgroup();
  cpu_parallel_for(chunk * g.deformable_groups * K, [&](int64_t row) {
    const int64_t k = row % K, t = row / K, dg = t % g.deformable_groups,
                  b = t / g.deformable_groups;
    const Stencil<T>* st = stencils + row * hw;
    std::vector<Acc> acc(3 * hw, Acc(0));
    Acc *gy = acc.data(), *gx = gy + hw, *gm = gx + hw;
    for (int64_t ci = 0; ci < cpg; ++ci) {
      const int64_t c = dg * cpg + ci;
      const T* plane = x + ((n0 + b) * g.in_channels + c) * g.in_plane();
      const T* gcol = grad_columns + ((c * K + k) * chunk + b) * hw;
      for (int64_t p = 0; p < hw; ++p) {
        deform_coord_grad_accumulate(st[p], plane, static_cast<Acc>(gcol[p]), gy + p, gx + p,
                                     gm + p);
      }
    }
    for (int64_t p = 0; p < hw; ++p) {
      deform_coord_grad_store(g, st[p], gy[p], gx[p], gm[p], grad_offset, grad_mask, n0 + b, dg,
                              k, p);
    }
  });
}

template <typename T>
void deform_columns_to_output(const DeformConvGeometry& g, const T* result, T* out, int64_t n0,
                              int64_t chunk) {
  const int64_t hw = g.out_plane();
  cpu_parallel_for(g.out_channels * chunk, [&](int64_t row) {
    const int64_t co = row / chunk, b = row % chunk;
    for (int64_t p = 0; p < hw; ++p) {
      deform_columns_to_output_element(g, result, out, n0, chunk, co, b, p);
    }
  });
}

template <typename T>
void deform_output_to_columns(const DeformConvGeometry& g, const T* grad_out, T* gathered,
                              int64_t n0, int64_t chunk) {
  const int64_t hw = g.out_plane();
  cpu_parallel_for(g.out_channels * chunk, [&](int64_t row) {
    const int64_t co = row / chunk, b = row % chunk;
    for (int64_t p = 0; p < hw; ++p) {
      deform_output_to_columns_element(g, grad_out, gathered, n0, chunk, co, b, p);
    }
  });
}

template <typename T>
void accumulate(T* dst, const T* src, int64_t n) {
  cpu_parallel_for(n, [&](int64_t i) { dst[i] += src[i]; });
}

}  // namespace cpu
}  // namespace pdcn
