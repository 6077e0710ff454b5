// LayerNorm over the last axis on the CPU, channels-last: for each row r of a
// row-major [rows, C] view,
//   mean_r = sum_c x[r, c] / C,  var_r = sum_c (x[r, c] - mean_r)^2 / C,
//   rstd_r = 1 / sqrt(var_r + eps),  y[r, c] = (x[r, c] - mean_r) * rstd_r * gamma[c] + beta[c],
// and its backward, with xhat = (x - mean) * rstd and gy = grad_y * gamma:
//   grad_x = rstd * (gy - mean_c(gy) - xhat * mean_c(gy * xhat)),
//   grad_gamma[c] = sum_r grad_y * xhat,  grad_beta[c] = sum_r grad_y.
// The LayerNorm of the DCNv3 layer's offset/weight branch, in CPU dygraph.
//
// Why: Paddle's CPU layer_norm gradient took 3 ms for a [32, 24, 24, 16]
// input, ten times its forward, about a tenth of the DCNv3 layer's
// forward+backward at dcnv3_r50's conv2_x (one thread, docs/benchmarks.md).
//
// Order: a row's sums run over the channels in kLayerNormLanes interleaved
// partial sums (channel c to lane c % lanes), added in lane order: one fixed
// order per row, and vector loops. The forward and grad_x give a thread whole
// rows. grad_gamma / grad_beta sum fixed chunks of rows (kLayerNormChunks and
// the shape decide them, not the thread count), then the chunks in order:
// bitwise equal results for every thread count. Accumulation in acc_t<T>.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common.h"
#include "cpu_simd.h"

namespace pdcn {
namespace cpu {

constexpr int64_t kLayerNormChunks = 64;
constexpr int kLayerNormLanes = 8;

// sum_c f(c) over [0, C) in the fixed lane order above.
template <typename Acc, typename F>
PDCN_CPU_INLINE Acc layer_norm_row_sum(int64_t C, const F& f) {
  Acc lanes[kLayerNormLanes] = {};
  int64_t c = 0;
  for (; c + kLayerNormLanes <= C; c += kLayerNormLanes) {
    for (int l = 0; l < kLayerNormLanes; ++l) lanes[l] += f(c + l);
  }
  for (int l = 0; c < C; ++c, ++l) lanes[l] += f(c);
  Acc total = Acc(0);
  for (int l = 0; l < kLayerNormLanes; ++l) total += lanes[l];
  return total;
}

template <typename T>
PDCN_CPU_INLINE void layer_norm_forward_rows(const T* x, const T* gamma, const T* beta, T* y, T* mean,
                                             T* rstd, int64_t r0, int64_t r1, int64_t C, double eps) {
  using Acc = acc_t<T>;
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * C;
    T* yr = y + r * C;
    const Acc mu = layer_norm_row_sum<Acc>(C, [&](int64_t c) PDCN_LAMBDA_INLINE {
      return static_cast<Acc>(xr[c]);
    }) / static_cast<Acc>(C);
    const Acc var = layer_norm_row_sum<Acc>(C, [&](int64_t c) PDCN_LAMBDA_INLINE {
      const Acc d = static_cast<Acc>(xr[c]) - mu;
      return d * d;
    }) / static_cast<Acc>(C);
    const Acc rs = Acc(1) / std::sqrt(var + static_cast<Acc>(eps));
    for (int64_t c = 0; c < C; ++c) {
      yr[c] = static_cast<T>((static_cast<Acc>(xr[c]) - mu) * rs * static_cast<Acc>(gamma[c]) +
                             static_cast<Acc>(beta[c]));
    }
    mean[r] = static_cast<T>(mu);
    rstd[r] = static_cast<T>(rs);
  }
}

// grad_x of rows [r0, r1), and their grad_gamma / grad_beta partial sums into
// part ([2, C]: gamma's, then beta's; zeroed here), row by row.
template <typename T>
PDCN_CPU_INLINE void layer_norm_backward_rows(const T* x, const T* gamma, const T* mean, const T* rstd,
                                              const T* grad_y, T* grad_x, int64_t r0, int64_t r1,
                                              int64_t C, acc_t<T>* part) {
  using Acc = acc_t<T>;
  Acc* pg = part;
  Acc* pb = part + C;
  std::fill(part, part + 2 * C, Acc(0));
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * C;
    const T* gr = grad_y + r * C;
    T* dr = grad_x + r * C;
    const Acc mu = static_cast<Acc>(mean[r]), rs = static_cast<Acc>(rstd[r]);
    const Acc a = layer_norm_row_sum<Acc>(C, [&](int64_t c) PDCN_LAMBDA_INLINE {
      return static_cast<Acc>(gr[c]) * static_cast<Acc>(gamma[c]);
    }) / static_cast<Acc>(C);
    const Acc b = layer_norm_row_sum<Acc>(C, [&](int64_t c) PDCN_LAMBDA_INLINE {
      return static_cast<Acc>(gr[c]) * static_cast<Acc>(gamma[c]) * ((static_cast<Acc>(xr[c]) - mu) * rs);
    }) / static_cast<Acc>(C);
    for (int64_t c = 0; c < C; ++c) {
      const Acc g = static_cast<Acc>(gr[c]);
      const Acc xhat = (static_cast<Acc>(xr[c]) - mu) * rs;
      dr[c] = static_cast<T>(rs * (g * static_cast<Acc>(gamma[c]) - a - xhat * b));
      pg[c] += g * xhat;
      pb[c] += g;
    }
  }
}

#if PDCN_CPU_AVX2
template <typename T>
PDCN_TARGET_AVX2 void layer_norm_forward_rows_avx2(const T* x, const T* gamma, const T* beta, T* y,
                                                   T* mean, T* rstd, int64_t r0, int64_t r1, int64_t C,
                                                   double eps) {
  layer_norm_forward_rows(x, gamma, beta, y, mean, rstd, r0, r1, C, eps);
}
template <typename T>
PDCN_TARGET_AVX2 void layer_norm_backward_rows_avx2(const T* x, const T* gamma, const T* mean,
                                                    const T* rstd, const T* grad_y, T* grad_x,
                                                    int64_t r0, int64_t r1, int64_t C,
                                                    acc_t<T>* part) {
  layer_norm_backward_rows(x, gamma, mean, rstd, grad_y, grad_x, r0, r1, C, part);
}
#endif

// y [rows, C]; mean, rstd [rows] (kept for the backward).
template <typename T>
void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t rows,
                        int64_t C, double eps) {
  const int64_t chunks = fixed_row_chunk_count(rows, kLayerNormChunks);
  cpu_parallel_row_chunks(rows, chunks, [&](int64_t, int64_t r0, int64_t r1) {
#if PDCN_CPU_AVX2
    if (cpu_has_avx2_fma()) return layer_norm_forward_rows_avx2(x, gamma, beta, y, mean, rstd, r0, r1, C, eps);
#endif
    layer_norm_forward_rows(x, gamma, beta, y, mean, rstd, r0, r1, C, eps);
  });
}

template <typename T>
void layer_norm_backward(const T* x, const T* gamma, const T* mean, const T* rstd, const T* grad_y,
                         T* grad_x, T* grad_gamma, T* grad_beta, int64_t rows, int64_t C) {
  using Acc = acc_t<T>;
  const int64_t chunks = fixed_row_chunk_count(rows, kLayerNormChunks);
  std::vector<Acc> parts(static_cast<size_t>(chunks * 2 * C));
  cpu_parallel_row_chunks(rows, chunks, [&](int64_t k, int64_t r0, int64_t r1) {
    Acc* part = parts.data() + k * 2 * C;
#if PDCN_CPU_AVX2
    if (cpu_has_avx2_fma()) {
      return layer_norm_backward_rows_avx2(x, gamma, mean, rstd, grad_y, grad_x, r0, r1, C, part);
    }
#endif
    layer_norm_backward_rows(x, gamma, mean, rstd, grad_y, grad_x, r0, r1, C, part);
  });
  for (int64_t c = 0; c < C; ++c) {
    Acc g = Acc(0), b = Acc(0);
    for (int64_t k = 0; k < chunks; ++k) {
      g += parts[k * 2 * C + c];
      b += parts[k * 2 * C + C + c];
    }
    grad_gamma[c] = static_cast<T>(g);
    grad_beta[c] = static_cast<T>(b);
  }
}

}  // namespace cpu
}  // namespace pdcn
