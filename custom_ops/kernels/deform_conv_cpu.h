// Plane-layout CPU driver of the deformable convolution kernels: OpenMP loops
// over the per-element functions of deform_conv.h, in the layout the CUDA
// kernels use. It is the CUDA kernels' CPU reference: the native tests
// (custom_ops/tests) compare CUDA against it, and the channels-last path
// (deform_conv_cpu_cl.h, what the CPU binding runs) against it under ASan.
// The binding does not run it: the channels-last path measured faster at
// every group width, one channel per group included.
//
// A pass gets each sample's stencil from a `source`, StencilOnTheFly, which
// computes it where it is used (as the CUDA kernels do). Every output element
// is owned by exactly one thread: the backward pass is deterministic and
// atomic-free.
#pragma once

#include <algorithm>

#include "deform_conv.h"

namespace pdcn {
namespace cpu {

template <typename T>
using Stencil = DeformSampleStencil<acc_t<T>>;

// Stencils computed where they are used, from the offsets and mask of images
// [n0, n0 + chunk).
template <typename T>
struct StencilOnTheFly {
  const T* offset;
  const T* mask;
  int64_t n0;
  Stencil<T> operator()(const DeformConvGeometry& g, int64_t b, int64_t dg, int64_t k,
                        int64_t p) const {
    return deform_sample_stencil<acc_t<T>>(g, offset, mask, n0 + b, dg, k, p);
  }
};

template <typename T, typename Source>
void deform_im2col(const DeformConvGeometry& g, const Source& source, const T* x, T* columns,
                   int64_t n0, int64_t chunk) {
  const int64_t K = g.kernel_size(), hw = g.out_plane(), cpg = g.channels_per_dgroup();
  cpu_parallel_for(g.in_channels * K * chunk, [&](int64_t row) {
    const int64_t b = row % chunk, ck = row / chunk, k = ck % K, c = ck / K;
    for (int64_t p = 0; p < hw; ++p) {
      deform_im2col_element(g, source(g, b, c / cpg, k, p), x, columns, n0, chunk, c, k, b, p);
    }
  });
}

// Overwrites the grad_x planes of images [n0, n0 + chunk): one thread owns one
// (image, channel) plane and adds every column entry of that channel.
template <typename T, typename Source>
void deform_col2im(const DeformConvGeometry& g, const Source& source, const T* grad_columns,
                   T* grad_x, int64_t n0, int64_t chunk) {
  using Acc = acc_t<T>;
  const int64_t K = g.kernel_size(), hw = g.out_plane(), cpg = g.channels_per_dgroup();
  cpu_parallel_for(chunk * g.in_channels, [&](int64_t plane_index) {
    const int64_t b = plane_index / g.in_channels, c = plane_index % g.in_channels;
    T* plane = grad_x + ((n0 + b) * g.in_channels + c) * g.in_plane();
    std::fill(plane, plane + g.in_plane(), T(0));
    auto add = [plane](int64_t i, Acc v) { plane[i] += static_cast<T>(v); };
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t p = 0; p < hw; ++p) {
        deform_col2im_element(g, source(g, b, c / cpg, k, p), grad_columns, chunk, c, k, b, p,
                              add);
      }
    }
  });
}

// Offset and mask gradients of images [n0, n0 + chunk): one thread owns one
// (image, deformable group, kernel point) row; per pixel it fetches the
// stencil once and sums the group's channels in order (deform_coord_grad_element,
// the CUDA kernel's unit of work). Fetching the stencil once per pixel rather
// than once per channel and pixel halved this pass at 4x256x14x14 and
// 32x16x24x24 (one thread).
template <typename T, typename Source>
void deform_coord_grad(const DeformConvGeometry& g, const Source& source, const T* grad_columns,
                       const T* x, T* grad_offset, T* grad_mask, int64_t n0, int64_t chunk) {
  const int64_t K = g.kernel_size(), hw = g.out_plane();
  cpu_parallel_for(chunk * g.deformable_groups * K, [&](int64_t row) {
    const int64_t k = row % K, t = row / K, dg = t % g.deformable_groups,
                  b = t / g.deformable_groups;
    for (int64_t p = 0; p < hw; ++p) {
      deform_coord_grad_element(g, source(g, b, dg, k, p), grad_columns, x, grad_offset,
                                grad_mask, n0, chunk, dg, k, b, p);
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
