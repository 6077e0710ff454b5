// CUDA driver of the deformable convolution kernels: grid-stride kernels over
// the per-element functions of deform_conv.h. Only the launch configuration,
// the atomics and the half-type plumbing live here.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "deform_conv.h"

namespace pdcn {

template <>
struct AccType<__half> {
  using type = float;
};
template <>
struct AccType<__nv_bfloat16> {
  using type = float;
};

namespace cuda {

constexpr int kThreadsPerBlock = 256;

inline unsigned int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 1 << 20)));
}

#define PDCN_CUDA_LOOP(i, n)                                                      \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; \
       i < (n); i += static_cast<int64_t>(blockDim.x) * gridDim.x)

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

// One thread owns one (image, channel) plane: a fixed summation order.
template <typename T, typename Acc>
__global__ void deform_col2im_deterministic_kernel(DeformConvGeometry g, const T* grad_columns,
                                                   const T* offset, const T* mask, Acc* acc,
                                                   int64_t n0, int64_t chunk) {
  const int64_t K = g.kernel_size(), hw = g.out_plane();
  PDCN_CUDA_LOOP(plane_index, chunk * g.in_channels) {
    const int64_t b = plane_index / g.in_channels, c = plane_index % g.in_channels;
    Acc* plane = acc + plane_index * g.in_plane();
    auto add = [plane](int64_t i, Acc v) { plane[i] += v; };
    const int64_t dg = c / g.channels_per_dgroup();
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t p = 0; p < hw; ++p) {
        const auto st = deform_sample_stencil<Acc>(g, offset, mask, n0 + b, dg, k, p);
        deform_col2im_element(g, st, grad_columns, chunk, c, k, b, p, add);
      }
    }
  }
}

template <typename T, typename Acc>
__global__ void convert_kernel(const Acc* src, T* dst, int64_t n) {
  PDCN_CUDA_LOOP(i, n) { dst[i] = static_cast<T>(src[i]); }
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

template <typename T>
__global__ void accumulate_kernel(T* dst, const T* src, int64_t n) {
  using Acc = acc_t<T>;
  PDCN_CUDA_LOOP(i, n) {
    dst[i] = static_cast<T>(static_cast<Acc>(dst[i]) + static_cast<Acc>(src[i]));
  }
}

}  // namespace cuda
}  // namespace pdcn
