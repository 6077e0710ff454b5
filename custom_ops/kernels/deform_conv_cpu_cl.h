// Channels-last CPU driver of deformable convolution: the path the CPU binding
// takes when a deformable group has several channels (deform_conv_cpu.h keeps
// the plane-layout passes, the CUDA kernels' layout, for the others).
//
// Why: all channels of a deformable group share a sample's stencil (the
// observation behind DCNv4's speed). With the chunk's input copied
// channels-last, the four neighbours of a sample are four contiguous runs over
// channels, and the columns are laid out pixel-major so that the run a sample
// writes is contiguous too: im2col, col2im and the coordinate gradient become
// vector loops over channels, with one stencil computed per (image, group,
// pixel, kernel point) and used for every channel at once.
//
// Layouts for a chunk of B images starting at image n0 (Cg = C / groups,
// K = kh * kw, q = b * Ho*Wo + p):
//   x_cl       [B, 1 + H*W, C]     the chunk's input, channels last, each
//                                  image led by a pixel of zeros
//   columns    [G, B*Ho*Wo, K*Cg]  entry (gi, q, k*Cg + c - gi*Cg)
//   grad_x_cl  [B, 1 + H*W, C]     (the zero pixel's gradient stays zero)
// channels_last_image() points at an image's pixel 0, so the zero pixel is
// stencil index -1 (kOutsidePixel).
//
// A neighbour outside the map points at the zero pixel: it reads zeros, so it
// adds nothing to the sample and to the dot products of the offset and mask
// gradients whatever x holds (a non-finite x[n, c, 0, 0], where the plane
// layout points such neighbours, would otherwise reach every border sample),
// and no per-neighbour select is needed (one measured +25% on the forward at
// dcn_r50 res2). Its weight is zero, so nothing scatters into it.
//
// Timing note: the run-time-width loops (W = 0, e.g. one channel per
// deformable group) are sensitive to where the compiler places them. The
// im2col at 16 one-channel groups, 24 x 24, 8 images, one thread, measured
// 6.1 or 9.4 ms for the same source depending only on -falign-loops=32; an
// A/B of these loops needs both builds checked against such swings.
// The binding multiplies the columns with the weight permuted to
// [C_out, K, Cg] (see deform_conv_op.cc).
//
// Ownership: im2col writes disjoint column runs; the backward sweep gives one
// thread one (image, deformable group): it owns that group's channels of the
// image's input gradient and the group's offset/mask gradients, and adds in a
// fixed order, so results are bitwise equal for every thread count.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "cpu_group_width.h"
#include "cpu_simd.h"
#include "cpu_stencil_lanes.h"
#include "deform_conv.h"

namespace pdcn {
namespace cpu {

// Elements of one image's channels-last input copy (and of its gradient): the
// zero pixel and its H*W pixels.
inline int64_t channels_last_image_elements(const DeformConvGeometry& g) {
  return g.in_channels * (1 + g.in_plane());
}

// Pixel 0 of image b of a channels-last chunk (x_cl or grad_x_cl).
template <typename T>
inline T* channels_last_image(const DeformConvGeometry& g, T* x_cl, int64_t b) {
  return x_cl + b * channels_last_image_elements(g) + g.in_channels;
}

// The stencil index of the zero pixel, relative to channels_last_image().
constexpr int32_t kOutsidePixel = -1;

// One 32 x 32 tile of a transpose, element by element: to[c * rows + r] =
// from[r * cols + c] for r in [r0, r1), c in [c0, c1).
template <typename T>
PDCN_CPU_INLINE void transpose_tile(const T* from, T* to, int64_t rows, int64_t cols, int64_t r0,
                                    int64_t r1, int64_t c0, int64_t c1) {
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t c = c0; c < c1; ++c) to[c * rows + r] = from[r * cols + c];
  }
}

#if PDCN_CPU_AVX2
// The same tile for float in 8 x 8 register blocks (eight row loads, the
// unpack/shuffle/permute transpose, eight row stores); the ragged edges go
// element by element. A pure data movement, so equal to transpose_tile bit
// for bit. Measured one thread at dcn_r50 res2 (32 images of [16, 576]): about
// 4x faster than the element loop, which compiles to strided scalar stores.
PDCN_TARGET_AVX2 inline void transpose_tile_avx2(const float* from, float* to, int64_t rows,
                                                 int64_t cols, int64_t r0, int64_t r1,
                                                 int64_t c0, int64_t c1) {
  const int64_t r8 = r0 + (r1 - r0) / 8 * 8, c8 = c0 + (c1 - c0) / 8 * 8;
  for (int64_t r = r0; r < r8; r += 8) {
    for (int64_t c = c0; c < c8; c += 8) {
      const float* s = from + r * cols + c;
      __m256 v0 = _mm256_loadu_ps(s), v1 = _mm256_loadu_ps(s + cols);
      __m256 v2 = _mm256_loadu_ps(s + 2 * cols), v3 = _mm256_loadu_ps(s + 3 * cols);
      __m256 v4 = _mm256_loadu_ps(s + 4 * cols), v5 = _mm256_loadu_ps(s + 5 * cols);
      __m256 v6 = _mm256_loadu_ps(s + 6 * cols), v7 = _mm256_loadu_ps(s + 7 * cols);
      const __m256 t0 = _mm256_unpacklo_ps(v0, v1), t1 = _mm256_unpackhi_ps(v0, v1);
      const __m256 t2 = _mm256_unpacklo_ps(v2, v3), t3 = _mm256_unpackhi_ps(v2, v3);
      const __m256 t4 = _mm256_unpacklo_ps(v4, v5), t5 = _mm256_unpackhi_ps(v4, v5);
      const __m256 t6 = _mm256_unpacklo_ps(v6, v7), t7 = _mm256_unpackhi_ps(v6, v7);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      v0 = _mm256_permute2f128_ps(u0, u4, 0x20), v1 = _mm256_permute2f128_ps(u1, u5, 0x20);
      v2 = _mm256_permute2f128_ps(u2, u6, 0x20), v3 = _mm256_permute2f128_ps(u3, u7, 0x20);
      v4 = _mm256_permute2f128_ps(u0, u4, 0x31), v5 = _mm256_permute2f128_ps(u1, u5, 0x31);
      v6 = _mm256_permute2f128_ps(u2, u6, 0x31), v7 = _mm256_permute2f128_ps(u3, u7, 0x31);
      float* d = to + c * rows + r;
      _mm256_storeu_ps(d, v0), _mm256_storeu_ps(d + rows, v1);
      _mm256_storeu_ps(d + 2 * rows, v2), _mm256_storeu_ps(d + 3 * rows, v3);
      _mm256_storeu_ps(d + 4 * rows, v4), _mm256_storeu_ps(d + 5 * rows, v5);
      _mm256_storeu_ps(d + 6 * rows, v6), _mm256_storeu_ps(d + 7 * rows, v7);
    }
  }
  transpose_tile(from, to, rows, cols, r0, r8, c8, c1);  // right edge of the full rows
  transpose_tile(from, to, rows, cols, r8, r1, c0, c1);  // bottom rows
}
#endif

// dst[b] = transpose(src[b]) for `count` row-major [rows, cols] matrices, in
// 32 x 32 tiles (the channels-last copies below); matrix b starts at
// src + b * src_stride, dst + b * dst_stride.
template <typename T>
void transpose_matrices(const T* src, T* dst, int64_t count, int64_t rows, int64_t cols,
                        int64_t src_stride, int64_t dst_stride) {
  constexpr int64_t kTile = 32;
  const int64_t row_tiles = (rows + kTile - 1) / kTile;
  cpu_parallel_for(count * row_tiles, [&](int64_t t) {
    const int64_t b = t / row_tiles, r0 = (t % row_tiles) * kTile;
    const int64_t r1 = std::min(rows, r0 + kTile);
    const T* from = src + b * src_stride;
    T* to = dst + b * dst_stride;
    for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
      const int64_t c1 = std::min(cols, c0 + kTile);
#if PDCN_CPU_AVX2
      if constexpr (std::is_same<T, float>::value) {
        if (cpu_has_avx2_fma()) {
          transpose_tile_avx2(from, to, rows, cols, r0, r1, c0, c1);
          continue;
        }
      }
#endif
      transpose_tile(from, to, rows, cols, r0, r1, c0, c1);
    }
  });
}

// x[n0 + b] ([C, H*W]) -> x_cl[b] (the zero pixel, then [H*W, C]) for the
// chunk's images.
template <typename T>
void to_channels_last(const DeformConvGeometry& g, const T* x, T* x_cl, int64_t n0,
                      int64_t chunk) {
  const int64_t plane = g.in_channels * g.in_plane(), image = channels_last_image_elements(g);
  transpose_matrices(x + n0 * plane, channels_last_image(g, x_cl, 0), chunk, g.in_channels,
                     g.in_plane(), plane, image);
  for (int64_t b = 0; b < chunk; ++b) {
    std::memset(x_cl + b * image, 0, sizeof(T) * g.in_channels);
  }
}

// grad_x_cl[b] (the zero pixel left out, then [H*W, C]) -> grad_x[n0 + b]
// ([C, H*W]).
template <typename T>
void from_channels_last(const DeformConvGeometry& g, const T* grad_x_cl, T* grad_x, int64_t n0,
                        int64_t chunk) {
  const int64_t plane = g.in_channels * g.in_plane(), image = channels_last_image_elements(g);
  transpose_matrices(channels_last_image(g, grad_x_cl, 0), grad_x + n0 * plane, chunk,
                     g.in_plane(), g.in_channels, image, plane);
}

// The runs of deformable group dg's channels that lie in one conv group: one
// run unless the two groupings interleave. next_channel_run(g, dg, &c, &n, &gi)
// advances to the run after [c, c + n) (start with n = 0); false at the end.
inline bool next_channel_run(const DeformConvGeometry& g, int64_t dg, int64_t* c, int64_t* n,
                             int64_t* gi) {
  const int64_t cpg = g.channels_per_dgroup(), end = (dg + 1) * cpg;
  const int64_t start = *n == 0 ? dg * cpg : *c + *n;
  if (start >= end) return false;
  if (g.groups == 1) {
    *c = start, *n = end - start, *gi = 0;
    return true;
  }
  const int64_t Cg = g.in_channels / g.groups;
  *gi = start / Cg;
  *c = start;
  *n = std::min(end, (*gi + 1) * Cg) - start;
  return true;
}

// Where the run of channels [c, ...) of conv group gi, kernel point k, column
// row q starts in the pixel-major columns.
inline int64_t channels_last_column_index(const DeformConvGeometry& g, int64_t chunk, int64_t gi,
                                          int64_t q, int64_t k, int64_t c) {
  const int64_t Cg = g.in_channels / g.groups;
  return (gi * chunk * g.out_plane() + q) * g.kernel_size() * Cg + k * Cg + (c - gi * Cg);
}

// dst[l] = mask * sum_i w_i * v_i[l] for the n channels of a run (the plane
// path's deform_im2col_element, channel by channel, in the same order).
// W > 0: the run is W channels long (n == W), a constant the loops unroll by.
template <int W, typename T, typename Acc>
PDCN_CPU_INLINE void blend_run_body(const DeformSampleStencil<Acc>& st, const T* __restrict__ image,
                                    int64_t C, int64_t c, int64_t run, T* __restrict__ dst) {
  const int64_t n = W > 0 ? W : run;
  const T* __restrict__ v0 = image + static_cast<int64_t>(st.index[0]) * C + c;
  const T* __restrict__ v1 = image + static_cast<int64_t>(st.index[1]) * C + c;
  const T* __restrict__ v2 = image + static_cast<int64_t>(st.index[2]) * C + c;
  const T* __restrict__ v3 = image + static_cast<int64_t>(st.index[3]) * C + c;
  const Acc w0 = st.w[0], w1 = st.w[1], w2 = st.w[2], w3 = st.w[3], m = st.mask;
  for (int64_t l = 0; l < n; ++l) {
    dst[l] = cast<T>(m * (w0 * cast<Acc>(v0[l]) + w1 * cast<Acc>(v1[l]) +
                          w2 * cast<Acc>(v2[l]) + w3 * cast<Acc>(v3[l])));
  }
}

// One run of the backward sweep: adds the run's share of the four dot products
// D_s = sum_c grad_column[c] * v_s[c] to d[s], scatters mask * w_s *
// grad_column into the input gradient and writes the run's columns (as
// blend_run_body: the sweep has the neighbours at hand, so the backward needs
// no im2col pass of its own).
template <int W, typename T, typename Acc>
PDCN_CPU_INLINE void backward_run_body(const DeformSampleStencil<Acc>& st, const T* image,
                                       T* grad_image, const T* gcol, T* column, int64_t C,
                                       int64_t c, int64_t run, Acc* d) {
  const int64_t n = W > 0 ? W : run;
  blend_run_body<W>(st, image, C, c, n, column);
#if PDCN_CPU_VECTOR_EXT
  if constexpr (std::is_same<T, Acc>::value) {  // float and double: eight-lane loops
    const int64_t e[4] = {st.index[0] * C + c, st.index[1] * C + c, st.index[2] * C + c,
                          st.index[3] * C + c};
    add_neighbour_dots<W>(gcol, image, e, n, d);
    for (int s = 0; s < 4; ++s) {
      const Acc w = st.w[s] * st.mask;
      // As the plane path's deform_col2im_element (and Paddle's op): a neighbour of zero
      // bilinear weight gets nothing, whatever the mask (0 * NaN would scatter NaN into it).
      if (st.w[s] != Acc(0) && w != Acc(0)) add_scaled_lanes<W>(gcol, w, grad_image + e[s], n);
    }
    return;
  }
#endif
  for (int s = 0; s < 4; ++s) {
    const int64_t e = static_cast<int64_t>(st.index[s]) * C + c;
    d[s] += lane_dot<Acc>(gcol, image + e, n);
    const Acc w = st.w[s] * st.mask;
    if (st.w[s] == Acc(0) || w == Acc(0)) continue;
    T* __restrict__ dst = grad_image + e;
    for (int64_t l = 0; l < n; ++l) dst[l] += cast<T>(w * cast<Acc>(gcol[l]));
  }
}

// The stencils of pixels (i, j0 .. j0 + count - 1), count <= 8, at kernel
// point k = a*kernel_w + kb of image n, deformable group dg: eight at once
// in vectors where possible (their offsets and mask values are contiguous
// over the pixels), else one by one (deform_sample_stencil_at).
template <typename T>
PDCN_CPU_INLINE void fill_stencil_block(const DeformConvGeometry& g, const T* offset,
                                        const T* mask, int64_t n, int64_t dg, int64_t k,
                                        int64_t i, int64_t j0, int64_t a, int64_t kb, int count,
                                        StencilBlock<acc_t<T>>* block) {
  using Acc = acc_t<T>;
  const int64_t p0 = i * g.out_w + j0;
#if PDCN_CPU_VECTOR_EXT
  if constexpr (std::is_same<T, Acc>::value) {
    if (count == 8) {
      using V = Lanes8<T>;
      const T* off = offset + g.offset_index(n, dg, k, p0);
      V dy, dx, m;
      load_lanes8(off, &dy);
      load_lanes8(off + g.out_plane(), &dx);
      if (mask != nullptr) {
        load_lanes8(mask + g.mask_index(n, dg, k, p0), &m);
      } else {
        m = V{} * T(0) + T(1);
      }
      const V lanes = {T(0), T(1), T(2), T(3), T(4), T(5), T(6), T(7)};
      const V y = static_cast<T>(i * g.stride_h - g.pad_h + a * g.dilation_h) + dy;
      const V x = (static_cast<T>(j0 * g.stride_w - g.pad_w + kb * g.dilation_w) +
                   lanes * static_cast<T>(g.stride_w)) + dx;
      stencil_lanes(y, x, m, g.in_h, g.in_w, kOutsidePixel, block);
      return;
    }
  }
#endif
  for (int l = 0; l < count; ++l) {
    block->set_lane(l, deform_sample_stencil_at<Acc>(g, offset, mask, n, dg, k, p0 + l, i,
                                                     j0 + l, a, kb, kOutsidePixel));
  }
}

// Calls f(c, n, gi) for each run of deformable group dg's channels (see
// next_channel_run). W > 0: the caller has checked that the conv has one
// group and W channels per deformable group, so there is one run, W long.
template <int W, typename F>
PDCN_CPU_INLINE void for_each_channel_run(const DeformConvGeometry& g, int64_t dg, const F& f) {
  if constexpr (W > 0) {
    f(dg * W, int64_t{W}, int64_t{0});
  } else {
    for (int64_t c = 0, n = 0, gi = 0; next_channel_run(g, dg, &c, &n, &gi);) f(c, n, gi);
  }
}

// The compiled run width of the geometry: its channels per deformable group
// when the conv has one group (so each run is a whole deformable group).
// Without the vector loops (cpu_simd.h) always 0, the run-time width: with a
// constant width GCC turns the generic dot products into scalar code.
inline int64_t channel_run_width(const DeformConvGeometry& g) {
#if PDCN_CPU_VECTOR_EXT
  return g.groups == 1 ? g.channels_per_dgroup() : 0;
#else
  (void)g;
  return 0;
#endif
}

// Pixel-major columns of output row i of image b of the chunk. Walks the
// kernel points, then the row's pixels in blocks of eight whose stencils
// fill_stencil_block computes at once. Measured (dcn_r50 res2, 32 images, one
// thread, transposes included): 2.2-3.2 -> 1.2-2.4 ms, the columns bitwise
// unchanged. The backward sweep keeps one stencil at a time: the same
// blocking measured slower there (5.4 against 4.9 ms).
template <int W, typename T>
PDCN_CPU_INLINE void im2col_row(const DeformConvGeometry& g, const T* offset, const T* mask,
                                const T* x_cl, T* columns, int64_t n0, int64_t chunk, int64_t b,
                                int64_t i) {
  using Acc = acc_t<T>;
  const int64_t hw = g.out_plane(), C = g.in_channels;
  const T* image = channels_last_image(g, x_cl, b);
#if PDCN_CPU_VECTOR_EXT
  StencilBlock<Acc> block;
  for (int64_t dg = 0; dg < g.deformable_groups; ++dg) {
    for (int64_t k = 0, a = 0; a < g.kernel_h; ++a) {
      for (int64_t kb = 0; kb < g.kernel_w; ++kb, ++k) {
        for (int64_t j0 = 0; j0 < g.out_w; j0 += 8) {
          const int count = static_cast<int>(std::min<int64_t>(8, g.out_w - j0));
          fill_stencil_block(g, offset, mask, n0 + b, dg, k, i, j0, a, kb, count, &block);
          for (int l = 0; l < count; ++l) {
            const DeformSampleStencil<Acc> st = block.lane(l);
            const int64_t q = b * hw + i * g.out_w + j0 + l;
            for_each_channel_run<W>(g, dg, [&](int64_t c, int64_t n, int64_t gi) PDCN_LAMBDA_INLINE {
              blend_run_body<W>(st, image, C, c, n,
                                columns + channels_last_column_index(g, chunk, gi, q, k, c));
            });
          }
        }
      }
    }
  }
#else
  // Without vector lanes one stencil at a time, pixels outer (the blocks' struct
  // of arrays measured 35% slower here).
  for (int64_t j = 0; j < g.out_w; ++j) {
    const int64_t p = i * g.out_w + j, q = b * hw + p;
    for (int64_t dg = 0; dg < g.deformable_groups; ++dg) {
      for (int64_t k = 0, a = 0; a < g.kernel_h; ++a) {
        for (int64_t kb = 0; kb < g.kernel_w; ++kb, ++k) {
          const DeformSampleStencil<Acc> st =
              deform_sample_stencil_at<Acc>(g, offset, mask, n0 + b, dg, k, p, i, j, a, kb,
                                            kOutsidePixel);
          for_each_channel_run<W>(g, dg, [&](int64_t c, int64_t n, int64_t gi) PDCN_LAMBDA_INLINE {
            blend_run_body<W>(st, image, C, c, n,
                              columns + channels_last_column_index(g, chunk, gi, q, k, c));
          });
        }
      }
    }
  }
#endif
}

// The backward of image b's deformable group dg: offset and mask gradients (as
// deform_coord_grad_element: the channel sums of grad_column * dsample/d(y, x,
// m), here through the four dot products D_s = sum_c grad_column[c] * v_s[c]),
// the group's channels of the channels-last input gradient (added to) and the
// group's columns (written, for the weight gradient's GEMM).
template <int W, typename T>
PDCN_CPU_INLINE void backward_image_group(const DeformConvGeometry& g, const T* offset,
                                          const T* mask, const T* x_cl, const T* grad_columns,
                                          T* columns, T* grad_x_cl, T* grad_offset, T* grad_mask, int64_t n0,
                                          int64_t chunk, int64_t b, int64_t dg) {
  using Acc = acc_t<T>;
  const int64_t hw = g.out_plane(), C = g.in_channels;
  const T* image = channels_last_image(g, x_cl, b);
  T* grad_image = channels_last_image(g, grad_x_cl, b);
  for (int64_t i = 0; i < g.out_h; ++i) {
    for (int64_t j = 0; j < g.out_w; ++j) {
      const int64_t p = i * g.out_w + j, q = b * hw + p;
      for (int64_t k = 0, a = 0; a < g.kernel_h; ++a) {
        for (int64_t kb = 0; kb < g.kernel_w; ++kb, ++k) {
          const DeformSampleStencil<Acc> st =
              deform_sample_stencil_at<Acc>(g, offset, mask, n0 + b, dg, k, p, i, j, a, kb,
                                            kOutsidePixel);
          Acc d[4] = {Acc(0), Acc(0), Acc(0), Acc(0)};
          for_each_channel_run<W>(g, dg, [&](int64_t c, int64_t n, int64_t gi) PDCN_LAMBDA_INLINE {
            const int64_t at = channels_last_column_index(g, chunk, gi, q, k, c);
            backward_run_body<W>(st, image, grad_image, grad_columns + at, columns + at, C, c, n,
                                 d);
          });
          const Acc gy = st.wy[0] * d[0] + st.wy[1] * d[1] + st.wy[2] * d[2] + st.wy[3] * d[3];
          const Acc gx = st.wx[0] * d[0] + st.wx[1] * d[1] + st.wx[2] * d[2] + st.wx[3] * d[3];
          const Acc gm = st.w[0] * d[0] + st.w[1] * d[1] + st.w[2] * d[2] + st.w[3] * d[3];
          deform_coord_grad_store(g, st, gy, gx, gm, grad_offset, grad_mask, n0 + b, dg, k, p);
        }
      }
    }
  }
}

#if PDCN_CPU_AVX2
// The same bodies compiled for AVX2 + FMA, taken when the CPU has them (the
// library itself is built for the baseline x86-64, so that it runs anywhere).
template <int W, typename T>
PDCN_TARGET_AVX2 void im2col_row_avx2(const DeformConvGeometry& g, const T* offset,
                                      const T* mask, const T* x_cl, T* columns, int64_t n0,
                                      int64_t chunk, int64_t b, int64_t i) {
  im2col_row<W>(g, offset, mask, x_cl, columns, n0, chunk, b, i);
}
template <int W, typename T>
PDCN_TARGET_AVX2 void backward_image_group_avx2(const DeformConvGeometry& g, const T* offset,
                                                const T* mask, const T* x_cl,
                                                const T* grad_columns, T* columns,
                                                T* grad_x_cl,
                                                T* grad_offset, T* grad_mask, int64_t n0,
                                                int64_t chunk, int64_t b, int64_t dg) {
  backward_image_group<W>(g, offset, mask, x_cl, grad_columns, columns, grad_x_cl, grad_offset,
                          grad_mask, n0, chunk, b, dg);
}
#endif

// Pixel-major columns of the chunk from its channels-last input.
template <typename T>
void deform_im2col_cl(const DeformConvGeometry& g, const T* offset, const T* mask,
                      const T* x_cl, T* columns, int64_t n0, int64_t chunk) {
  dispatch_group_width(channel_run_width(g), [&](auto width) {
    constexpr int W = decltype(width)::value;
    cpu_parallel_for(chunk * g.out_h, [&](int64_t t) {
      const int64_t b = t / g.out_h, i = t % g.out_h;
#if PDCN_CPU_AVX2
      if (cpu_has_avx2_fma()) {
        return im2col_row_avx2<W>(g, offset, mask, x_cl, columns, n0, chunk, b, i);
      }
#endif
      im2col_row<W>(g, offset, mask, x_cl, columns, n0, chunk, b, i);
    });
  });
}

// The whole backward of the chunk's columns: offset and mask gradients, the
// channels-last input gradient (overwritten) and the chunk's columns (written,
// as deform_im2col_cl would). One task per (image, group).
template <typename T>
void deform_backward_cl(const DeformConvGeometry& g, const T* offset, const T* mask,
                        const T* x_cl, const T* grad_columns, T* columns, T* grad_x_cl,
                        T* grad_offset,
                        T* grad_mask, int64_t n0, int64_t chunk) {
  const int64_t image_elements = channels_last_image_elements(g);
  cpu_parallel_for(chunk, [&](int64_t b) {
    std::memset(grad_x_cl + b * image_elements, 0, sizeof(T) * image_elements);
  });
  dispatch_group_width(channel_run_width(g), [&](auto width) {
    constexpr int W = decltype(width)::value;
    cpu_parallel_for(chunk * g.deformable_groups, [&](int64_t t) {
      const int64_t b = t / g.deformable_groups, dg = t % g.deformable_groups;
#if PDCN_CPU_AVX2
      if (cpu_has_avx2_fma()) {
        return backward_image_group_avx2<W>(g, offset, mask, x_cl, grad_columns, columns,
                                            grad_x_cl, grad_offset, grad_mask, n0, chunk, b, dg);
      }
#endif
      backward_image_group<W>(g, offset, mask, x_cl, grad_columns, columns, grad_x_cl,
                              grad_offset, grad_mask, n0, chunk, b, dg);
    });
  });
}

}  // namespace cpu
}  // namespace pdcn
