// CPU driver of the deformable convolution kernels: OpenMP loops over the
// per-element functions of deform_conv.h.
//
// A pass gets each sample's stencil from a `source`: StencilTable, built once
// per chunk (one stencil per image, deformable group, kernel point and output
// pixel) and reused by every channel of the group and by every pass, or
// StencilOnTheFly, which computes it where it is used (as the CUDA kernels do;
// the better choice when a group has few channels, since a table entry is
// several times the size of a column element). Every output element is owned
// by exactly one thread: the backward pass is deterministic and atomic-free. Thread count: OpenMP's (Paddle sets OMP_NUM_THREADS=1
// unless the user chose otherwise).
#pragma once

#include <algorithm>

#include "deform_conv.h"

namespace pdcn {
namespace cpu {

template <typename T>
using Stencil = DeformSampleStencil<acc_t<T>>;

// Number of stencils of a chunk of `chunk` images.
inline int64_t deform_stencil_count(const DeformConvGeometry& g, int64_t chunk) {
  return chunk * g.deformable_groups * g.kernel_size() * g.out_plane();
}

// Whether a chunk's stencils are worth a table: an entry serves every channel
// of its deformable group, and is ~17 column elements in size, so the table
// pays off only when a group has several channels (per-channel sampling, with
// one channel per group, computes stencils on the fly).
template <typename T>
inline bool deform_use_stencil_table(const DeformConvGeometry& g) {
  return g.channels_per_dgroup() >= 4;
}

// CPU workspace per image beyond the columns: the stencil table, if used.
template <typename T>
inline int64_t deform_stencil_bytes_per_image(const DeformConvGeometry& g) {
  return deform_use_stencil_table<T>(g)
             ? deform_stencil_count(g, 1) * static_cast<int64_t>(sizeof(Stencil<T>))
             : 0;
}

// A chunk's stencils, built once (deform_build_stencils).
template <typename T>
struct StencilTable {
  const Stencil<T>* table;
  const Stencil<T>& operator()(const DeformConvGeometry& g, int64_t b, int64_t dg, int64_t k,
                               int64_t p) const {
    return table[deform_stencil_index(g, b, dg, k, p)];
  }
};

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

// Both backward passes in one sweep when every deformable group has a single
// channel (per-channel sampling): the coordinate gradients of (image, group)
// and the input-gradient plane of that channel belong to the same thread, so
// each stencil is fetched once for both.
template <typename T, typename Source>
void deform_backward_one_channel_groups(const DeformConvGeometry& g, const Source& source,
                                        const T* grad_columns, const T* x, T* grad_x,
                                        T* grad_offset, T* grad_mask, int64_t n0, int64_t chunk) {
  using Acc = acc_t<T>;
  const int64_t K = g.kernel_size(), hw = g.out_plane();
  cpu_parallel_for(chunk * g.in_channels, [&](int64_t plane_index) {
    const int64_t b = plane_index / g.in_channels, c = plane_index % g.in_channels;
    const T* x_plane = x + ((n0 + b) * g.in_channels + c) * g.in_plane();
    T* plane = grad_x + ((n0 + b) * g.in_channels + c) * g.in_plane();
    std::fill(plane, plane + g.in_plane(), T(0));
    auto add = [plane](int64_t i, Acc v) { plane[i] += static_cast<T>(v); };
    for (int64_t k = 0; k < K; ++k) {
      const T* gcol = grad_columns + ((c * K + k) * chunk + b) * hw;
      for (int64_t p = 0; p < hw; ++p) {
        const Stencil<T> st = source(g, b, c, k, p);
        Acc gy = 0, gx = 0, gm = 0;
        deform_coord_grad_accumulate(st, x_plane, static_cast<Acc>(gcol[p]), &gy, &gx, &gm);
        deform_coord_grad_store(g, st, gy, gx, gm, grad_offset, grad_mask, n0 + b, c, k, p);
        deform_col2im_element(g, st, grad_columns, chunk, c, k, b, p, add);
      }
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
