// Plain (integer-tap) convolution on the CPU's channels-last path: the offset
// and mask branch of a DeformConv2D layer.
//
// Why: on the CPU that branch is a small-channel 3x3 conv (C_in -> 3*dg*kh*kw
// outputs) whose cost in Paddle's own conv2d (per-image im2col, per-image
// GEMMs, a broadcast bias add and its reduction) measured about 1.7x the
// layer's main conv at dcn_r50's stage 2 (docs/benchmarks.md). Here it runs
// through the deformable op's chunk loop (deform_conv_op.cc): the chunk's
// input copied channels-last, pixel-major columns written by contiguous copies
// of each tap's channels (no bilinear sampling: the taps are integer), one
// oneDNN GEMM per chunk. CPU only: on GPU the layer keeps Paddle's (cuDNN)
// conv2d, so there is no CUDA twin of these loops.
//
// Layouts as in deform_conv_cpu_cl.h (x_cl [B, 1 + H*W, C], columns
// [G, B*Ho*Wo, K*Cg]); the geometry has deformable_groups = 1.
//
// Ownership: im2col writes disjoint column runs; the backward gives one
// thread one image (its input gradient) and adds in a fixed order, so results
// are bitwise equal for every thread count.
#pragma once

#include <cstring>

#include "deform_conv_cpu_cl.h"

namespace pdcn {
namespace cpu {

// The input pixel of tap (a, kb) for output pixel (i, j), or -1 when it lies
// in the zero padding.
inline int64_t conv_tap_pixel(const DeformConvGeometry& g, int64_t i, int64_t j, int64_t a,
                              int64_t kb) {
  const int64_t y = i * g.stride_h - g.pad_h + a * g.dilation_h;
  const int64_t x = j * g.stride_w - g.pad_w + kb * g.dilation_w;
  if (y < 0 || y >= g.in_h || x < 0 || x >= g.in_w) return -1;
  return y * g.in_w + x;
}

// Columns of output row i of image b: per tap and conv group, a copy of the
// group's Cg channels of the tap's input pixel (zeros in the padding).
template <typename T>
PDCN_CPU_INLINE void conv_im2col_row(const DeformConvGeometry& g, const T* x_cl, T* columns,
                                     int64_t chunk, int64_t b, int64_t i) {
  const int64_t C = g.in_channels, Cg = C / g.groups, hw = g.out_plane();
  const T* image = channels_last_image(g, x_cl, b);
  for (int64_t j = 0; j < g.out_w; ++j) {
    const int64_t q = b * hw + i * g.out_w + j;
    for (int64_t k = 0, a = 0; a < g.kernel_h; ++a) {
      for (int64_t kb = 0; kb < g.kernel_w; ++kb, ++k) {
        const int64_t pixel = conv_tap_pixel(g, i, j, a, kb);
        for (int64_t gi = 0; gi < g.groups; ++gi) {
          T* __restrict__ dst = columns + channels_last_column_index(g, chunk, gi, q, k, gi * Cg);
          if (pixel < 0) {
            for (int64_t c = 0; c < Cg; ++c) dst[c] = T(0);
          } else {
            const T* __restrict__ src = image + pixel * C + gi * Cg;
            for (int64_t c = 0; c < Cg; ++c) dst[c] = src[c];
          }
        }
      }
    }
  }
}

// Image b's input gradient (added to, channels last) from its column
// gradients, pixels and taps in a fixed order.
template <typename T>
PDCN_CPU_INLINE void conv_col2im_image(const DeformConvGeometry& g, const T* grad_columns,
                                       T* grad_x_cl, int64_t chunk, int64_t b) {
  const int64_t C = g.in_channels, Cg = C / g.groups, hw = g.out_plane();
  T* grad_image = channels_last_image(g, grad_x_cl, b);
  for (int64_t i = 0; i < g.out_h; ++i) {
    for (int64_t j = 0; j < g.out_w; ++j) {
      const int64_t q = b * hw + i * g.out_w + j;
      for (int64_t k = 0, a = 0; a < g.kernel_h; ++a) {
        for (int64_t kb = 0; kb < g.kernel_w; ++kb, ++k) {
          const int64_t pixel = conv_tap_pixel(g, i, j, a, kb);
          if (pixel < 0) continue;
          for (int64_t gi = 0; gi < g.groups; ++gi) {
            const T* __restrict__ src =
                grad_columns + channels_last_column_index(g, chunk, gi, q, k, gi * Cg);
            T* __restrict__ dst = grad_image + pixel * C + gi * Cg;
            for (int64_t c = 0; c < Cg; ++c) dst[c] += src[c];
          }
        }
      }
    }
  }
}

#if PDCN_CPU_AVX2
template <typename T>
PDCN_TARGET_AVX2 void conv_im2col_row_avx2(const DeformConvGeometry& g, const T* x_cl, T* columns,
                                           int64_t chunk, int64_t b, int64_t i) {
  conv_im2col_row(g, x_cl, columns, chunk, b, i);
}
template <typename T>
PDCN_TARGET_AVX2 void conv_col2im_image_avx2(const DeformConvGeometry& g, const T* grad_columns,
                                             T* grad_x_cl, int64_t chunk, int64_t b) {
  conv_col2im_image(g, grad_columns, grad_x_cl, chunk, b);
}
#endif

// Pixel-major columns of the chunk from its channels-last input.
template <typename T>
void conv_im2col_cl(const DeformConvGeometry& g, const T* x_cl, T* columns, int64_t chunk) {
  cpu_parallel_for(chunk * g.out_h, [&](int64_t t) {
    const int64_t b = t / g.out_h, i = t % g.out_h;
#if PDCN_CPU_AVX2
    if (cpu_has_avx2_fma()) return conv_im2col_row_avx2(g, x_cl, columns, chunk, b, i);
#endif
    conv_im2col_row(g, x_cl, columns, chunk, b, i);
  });
}

// The chunk's channels-last input gradient (overwritten) from its column
// gradients. One task per image.
template <typename T>
void conv_col2im_cl(const DeformConvGeometry& g, const T* grad_columns, T* grad_x_cl,
                    int64_t chunk) {
  const int64_t image_elements = channels_last_image_elements(g);
  cpu_parallel_for(chunk, [&](int64_t b) {
    std::memset(grad_x_cl + b * image_elements, 0, sizeof(T) * image_elements);
#if PDCN_CPU_AVX2
    if (cpu_has_avx2_fma()) return conv_col2im_image_avx2(g, grad_columns, grad_x_cl, chunk, b);
#endif
    conv_col2im_image(g, grad_columns, grad_x_cl, chunk, b);
  });
}

}  // namespace cpu
}  // namespace pdcn
