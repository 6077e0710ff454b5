// Channels-last depthwise convolution on the CPU: the depthwise conv that
// feeds DCNv3's offset/weight projections (and DCNv4's, when it has one).
//
// Why: Paddle's CPU conv2d runs a depthwise conv as C tiny GEMMs over NCHW,
// and the layers work channels-last, so the conv also cost two transposes:
// forward+backward 1.8-3.6 ms at InternImage-T's stages (batch 1) and 10 ms
// at dcnv3_r50's conv2_x, more than LayerNorm, GELU and softmax together
// (docs/benchmarks.md). Channels-last, each tap is a run of contiguous
// channels, so every loop below is a vector loop over the channels.
// CPU only, as conv_cpu_cl.h: on GPU the layers keep Paddle's (cuDNN) conv2d,
// so there is no CUDA twin of these loops.
//
// Layouts: x [N, H, W, C], out [N, Ho, Wo, C], the weight as taps-major
// [kh*kw, C] (the binding transposes Paddle's [C, 1, kh, kw], tap = a*kw + b),
// bias [C]. Output pixel (i, j), tap (a, b) reads input pixel
// (i*stride_h - pad_h + a*dilation_h, j*stride_w - pad_w + b*dilation_w),
// zero outside the map.
//
// Ownership and order: the forward and the input gradient give a thread
// whole output / input rows and sum the taps in a fixed order; the weight and
// bias gradients sum fixed chunks of output rows (kDepthwiseChunks, not the
// thread count) and then the chunks in order. Results are bitwise equal for
// every thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"
#include "cpu_simd.h"

namespace pdcn {
namespace cpu {

struct DepthwiseGeometry {
  int64_t batch, in_h, in_w, channels, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;

  int64_t taps() const { return kernel_h * kernel_w; }
  int64_t rows() const { return batch * out_h; }
};

// Number of output-row chunks the weight gradient is summed over (fixed, so
// that the sums do not depend on the thread count).
constexpr int64_t kDepthwiseChunks = 64;

// acc[c] += w[c] * v[c] over the C channels (a plain loop: GCC vectorises it).
template <typename T>
PDCN_CPU_INLINE void add_products(const T* __restrict__ w, const T* __restrict__ v, int64_t C,
                                  T* __restrict__ acc) {
  for (int64_t c = 0; c < C; ++c) acc[c] += w[c] * v[c];
}

// f(tap, input pixel) for each tap (a*kw + b) of output pixel (i, j) of image n
// whose input pixel ((n*H + y)*W + x) lies inside the map, taps in order.
template <typename F>
PDCN_CPU_INLINE void for_each_tap_in_map(const DepthwiseGeometry& g, int64_t n, int64_t i, int64_t j,
                                         const F& f) {
  for (int64_t a = 0; a < g.kernel_h; ++a) {
    const int64_t y = i * g.stride_h - g.pad_h + a * g.dilation_h;
    if (y < 0 || y >= g.in_h) continue;
    for (int64_t b = 0; b < g.kernel_w; ++b) {
      const int64_t xx = j * g.stride_w - g.pad_w + b * g.dilation_w;
      if (xx < 0 || xx >= g.in_w) continue;
      f(a * g.kernel_w + b, (n * g.in_h + y) * g.in_w + xx);
    }
  }
}

// Output row `row` = (n, i): out = bias + sum over the taps inside the map.
template <typename T>
PDCN_CPU_INLINE void depthwise_forward_row(const DepthwiseGeometry& g, const T* x, const T* wt,
                                           const T* bias, T* out, int64_t row) {
  const int64_t n = row / g.out_h, i = row % g.out_h, C = g.channels;
  for (int64_t j = 0; j < g.out_w; ++j) {
    T* o = out + (row * g.out_w + j) * C;
    std::copy(bias, bias + C, o);
    for_each_tap_in_map(g, n, i, j, [&](int64_t tap, int64_t pixel) PDCN_LAMBDA_INLINE {
      add_products(wt + tap * C, x + pixel * C, C, o);
    });
  }
}

// Input row `row` = (n, y) of the input gradient: for each input pixel, the
// taps (a, b) and output pixels (i, j) that read it (gather, no scatter).
template <typename T>
PDCN_CPU_INLINE void depthwise_input_grad_row(const DepthwiseGeometry& g, const T* wt,
                                              const T* grad_out, T* grad_x, int64_t row) {
  const int64_t n = row / g.in_h, y = row % g.in_h, C = g.channels;
  for (int64_t xx = 0; xx < g.in_w; ++xx) {
    T* gx = grad_x + (row * g.in_w + xx) * C;
    std::fill(gx, gx + C, T(0));
    for (int64_t a = 0; a < g.kernel_h; ++a) {
      const int64_t t = y + g.pad_h - a * g.dilation_h;
      if (t < 0 || t % g.stride_h != 0 || t / g.stride_h >= g.out_h) continue;
      const int64_t i = t / g.stride_h;
      for (int64_t b = 0; b < g.kernel_w; ++b) {
        const int64_t u = xx + g.pad_w - b * g.dilation_w;
        if (u < 0 || u % g.stride_w != 0 || u / g.stride_w >= g.out_w) continue;
        const int64_t j = u / g.stride_w;
        add_products(wt + (a * g.kernel_w + b) * C, grad_out + ((n * g.out_h + i) * g.out_w + j) * C, C,
                     gx);
      }
    }
  }
}

// Weight and bias gradient partial sums of output rows [r0, r1): part is
// [taps + 1, C] (the taps, then the bias), zeroed here.
template <typename T>
PDCN_CPU_INLINE void depthwise_param_grad_chunk(const DepthwiseGeometry& g, const T* x,
                                                const T* grad_out, int64_t r0, int64_t r1, T* part) {
  const int64_t C = g.channels, K = g.taps();
  std::fill(part, part + (K + 1) * C, T(0));
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t n = row / g.out_h, i = row % g.out_h;
    for (int64_t j = 0; j < g.out_w; ++j) {
      const T* go = grad_out + (row * g.out_w + j) * C;
      for (int64_t c = 0; c < C; ++c) part[K * C + c] += go[c];
      for_each_tap_in_map(g, n, i, j, [&](int64_t tap, int64_t pixel) PDCN_LAMBDA_INLINE {
        add_products(go, x + pixel * C, C, part + tap * C);
      });
    }
  }
}

#if PDCN_CPU_AVX2
template <typename T>
PDCN_TARGET_AVX2 void depthwise_forward_row_avx2(const DepthwiseGeometry& g, const T* x, const T* wt,
                                                 const T* bias, T* out, int64_t row) {
  depthwise_forward_row(g, x, wt, bias, out, row);
}
template <typename T>
PDCN_TARGET_AVX2 void depthwise_input_grad_row_avx2(const DepthwiseGeometry& g, const T* wt,
                                                    const T* grad_out, T* grad_x, int64_t row) {
  depthwise_input_grad_row(g, wt, grad_out, grad_x, row);
}
template <typename T>
PDCN_TARGET_AVX2 void depthwise_param_grad_chunk_avx2(const DepthwiseGeometry& g, const T* x,
                                                      const T* grad_out, int64_t r0, int64_t r1,
                                                      T* part) {
  depthwise_param_grad_chunk(g, x, grad_out, r0, r1, part);
}
#endif

template <typename T>
void depthwise_conv_forward(const DepthwiseGeometry& g, const T* x, const T* wt, const T* bias, T* out) {
  cpu_parallel_for(g.rows(), [&](int64_t row) {
#if PDCN_CPU_AVX2
    if (cpu_has_avx2_fma()) return depthwise_forward_row_avx2(g, x, wt, bias, out, row);
#endif
    depthwise_forward_row(g, x, wt, bias, out, row);
  });
}

// grad_x [N, H, W, C]; grad_wt [taps, C]; grad_bias [C].
template <typename T>
void depthwise_conv_backward(const DepthwiseGeometry& g, const T* x, const T* wt, const T* grad_out,
                             T* grad_x, T* grad_wt, T* grad_bias) {
  cpu_parallel_for(g.batch * g.in_h, [&](int64_t row) {
#if PDCN_CPU_AVX2
    if (cpu_has_avx2_fma()) return depthwise_input_grad_row_avx2(g, wt, grad_out, grad_x, row);
#endif
    depthwise_input_grad_row(g, wt, grad_out, grad_x, row);
  });
  const int64_t C = g.channels, K = g.taps(), rows = g.rows();
  const int64_t chunks = fixed_row_chunk_count(rows, kDepthwiseChunks);
  std::vector<T> parts(static_cast<size_t>(chunks * (K + 1) * C));
  cpu_parallel_row_chunks(rows, chunks, [&](int64_t k, int64_t r0, int64_t r1) {
    T* part = parts.data() + k * (K + 1) * C;
#if PDCN_CPU_AVX2
    if (cpu_has_avx2_fma()) return depthwise_param_grad_chunk_avx2(g, x, grad_out, r0, r1, part);
#endif
    depthwise_param_grad_chunk(g, x, grad_out, r0, r1, part);
  });
  std::fill(grad_wt, grad_wt + K * C, T(0));
  std::fill(grad_bias, grad_bias + C, T(0));
  for (int64_t k = 0; k < chunks; ++k) {
    const T* part = parts.data() + k * (K + 1) * C;
    for (int64_t e = 0; e < K * C; ++e) grad_wt[e] += part[e];
    for (int64_t c = 0; c < C; ++c) grad_bias[c] += part[K * C + c];
  }
}

}  // namespace cpu
}  // namespace pdcn
