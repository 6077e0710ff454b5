// CUDA driver of the deformable convolution kernels: grid-stride kernels over
// the per-element functions of deform_conv.h (launch plumbing in
// cuda_common.cuh). Only the loop structure and the atomics live here.
#pragma once

#include "cuda_common.cuh"
#include "deform_conv.h"

namespace pdcn {
namespace cuda {

// Flat index e over (c, k, b, p), p fastest: neighbouring threads read
// neighbouring offsets and write neighbouring columns.
struct ColumnIndex {
  int64_t c, k, b, p;
  __device__ __forceinline__ ColumnIndex(int64_t e, int64_t K, int64_t chunk, int64_t hw) {
    p = e % hw;
    int64_t t = e / hw;
    b = t % chunk;
    t /= chunk;
    k = t % K;
    c = t / K;
  }
};

template <typename T>
__global__ void deform_im2col_kernel(DeformConvGeometry g, const T* x, const T* offset,
                                     const T* mask, T* columns, int64_t n0, int64_t chunk) {
  const int64_t K = g.kernel_size(), hw = g.out_plane();
  const int64_t total = g.in_channels * K * chunk * hw;
  PDCN_CUDA_LOOP(e, total) {
    const ColumnIndex ix(e, K, chunk, hw);
    const auto st = deform_sample_stencil<acc_t<T>>(g, offset, mask, n0 + ix.b,
                                                    ix.c / g.channels_per_dgroup(), ix.k, ix.p);
    deform_im2col_element(g, st, x, columns, n0, chunk, ix.c, ix.k, ix.b, ix.p);
  }
}

// acc: the input-gradient planes of the chunk, [chunk, C, H, W] in Acc type,
// zeroed beforehand.
template <typename T, typename Acc>
__global__ void deform_col2im_atomic_kernel(DeformConvGeometry g, const T* grad_columns,
                                            const T* offset, const T* mask, Acc* acc,
                                            int64_t n0, int64_t chunk) {
  const int64_t K = g.kernel_size(), hw = g.out_plane();
  const int64_t total = g.in_channels * K * chunk * hw;
  PDCN_CUDA_LOOP(e, total) {
    const ColumnIndex ix(e, K, chunk, hw);
    Acc* plane = acc + (ix.b * g.in_channels + ix.c) * g.in_plane();
    const auto st = deform_sample_stencil<Acc>(g, offset, mask, n0 + ix.b,
                                               ix.c / g.channels_per_dgroup(), ix.k, ix.p);
    deform_col2im_element(g, st, grad_columns, chunk, ix.c, ix.k, ix.b, ix.p,
                          [plane](int64_t i, Acc v) { atomicAdd(plane + i, v); });
  }
}

// Deterministic col2im, pass 1: the largest |grad_column * mask| of the chunk
// (every contribution is that times a bilinear weight <= 1).
template <typename T>
__global__ void deform_col2im_max_kernel(DeformConvGeometry g, const T* grad_columns,
                                         const T* mask, unsigned long long* max_bits, int64_t n0,
                                         int64_t chunk) {
  using Acc = acc_t<T>;
  const int64_t K = g.kernel_size(), hw = g.out_plane();
  const int64_t total = g.in_channels * K * chunk * hw;
  unsigned long long local = 0;
  PDCN_CUDA_LOOP(e, total) {
    const ColumnIndex ix(e, K, chunk, hw);
    const Acc v = cast<Acc>(grad_columns[e]) *
                  deform_mask_value<Acc>(g, mask, n0 + ix.b, ix.c / g.channels_per_dgroup(),
                                         ix.k, ix.p);
    const unsigned long long bits = fixed_point::ordered_bits(v < Acc(0) ? -v : v);
    local = bits > local ? bits : local;
  }
  fold_max(max_bits, local);
}

// Deterministic col2im, pass 2: the atomic kernel's scatter with fixed-point
// integer adds into sink (elements [chunk, C, H, W]).
template <typename T>
__global__ void deform_col2im_fixed_point_kernel(DeformConvGeometry g, const T* grad_columns,
                                                 const T* offset, const T* mask,
                                                 FixedPointSink sink, int64_t n0, int64_t chunk) {
  using Acc = acc_t<T>;
  const int exponent = sink.exponent();
  const int64_t K = g.kernel_size(), hw = g.out_plane();
  const int64_t total = g.in_channels * K * chunk * hw;
  PDCN_CUDA_LOOP(e, total) {
    const ColumnIndex ix(e, K, chunk, hw);
    const int64_t plane = (ix.b * g.in_channels + ix.c) * g.in_plane();
    const auto st = deform_sample_stencil<Acc>(g, offset, mask, n0 + ix.b,
                                               ix.c / g.channels_per_dgroup(), ix.k, ix.p);
    deform_col2im_element(g, st, grad_columns, chunk, ix.c, ix.k, ix.b, ix.p,
                          [&](int64_t i, Acc v) { sink.add(plane + i, v, exponent); });
  }
}

template <typename T>
__global__ void deform_coord_grad_kernel(DeformConvGeometry g, const T* grad_columns, const T* x,
                                         const T* offset, const T* mask, T* grad_offset,
                                         T* grad_mask, int64_t n0, int64_t chunk) {
  const int64_t K = g.kernel_size(), hw = g.out_plane();
  const int64_t total = chunk * g.deformable_groups * K * hw;
  PDCN_CUDA_LOOP(e, total) {
    const int64_t p = e % hw;
    int64_t t = e / hw;
    const int64_t k = t % K;
    t /= K;
    const int64_t dg = t % g.deformable_groups, b = t / g.deformable_groups;
    const auto st = deform_sample_stencil<acc_t<T>>(g, offset, mask, n0 + b, dg, k, p);
    deform_coord_grad_element(g, st, grad_columns, x, grad_offset, grad_mask, n0, chunk, dg, k, b,
                              p);
  }
}

template <typename T>
__global__ void deform_columns_to_output_kernel(DeformConvGeometry g, const T* result, T* out,
                                                int64_t n0, int64_t chunk) {
  const int64_t hw = g.out_plane();
  PDCN_CUDA_LOOP(e, g.out_channels * chunk * hw) {
    const int64_t p = e % hw, b = (e / hw) % chunk, co = e / (hw * chunk);
    deform_columns_to_output_element(g, result, out, n0, chunk, co, b, p);
  }
}

template <typename T>
__global__ void deform_output_to_columns_kernel(DeformConvGeometry g, const T* grad_out,
                                                T* gathered, int64_t n0, int64_t chunk) {
  const int64_t hw = g.out_plane();
  PDCN_CUDA_LOOP(e, g.out_channels * chunk * hw) {
    const int64_t p = e % hw, b = (e / hw) % chunk, co = e / (hw * chunk);
    deform_output_to_columns_element(g, grad_out, gathered, n0, chunk, co, b, p);
  }
}

// acc[i] += Acc(src[i]): the weight gradient of a chunk added in the
// accumulation type (float32 for the half types).
template <typename T>
__global__ void accumulate_kernel(acc_t<T>* acc, const T* src, int64_t n) {
  PDCN_CUDA_LOOP(i, n) { acc[i] += cast<acc_t<T>>(src[i]); }
}

}  // namespace cuda
}  // namespace pdcn
