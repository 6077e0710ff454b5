// Softmax over groups of K consecutive values of the last axis on the CPU:
// for each group (row) r of a row-major [rows, K] view,
//   y[r, k] = exp(x[r, k] - m_r) / sum_j exp(x[r, j] - m_r),  m_r = max_j x[r, j],
// and its backward, grad_x[r, k] = y[r, k] * (grad_y[r, k] - sum_j y[r, j] * grad_y[r, j]).
// The DCNv3 layer's softmax of each group's K aggregation weights, in CPU
// dygraph (the logits [N, H, W, G*K] are G*N*H*W rows of K).
//
// Why: Paddle's CPU softmax took 2.9 ms forward for dcnv3_r50's conv2_x
// logits (32x24x24x36, softmax over 9; one thread), a tenth of the DCNv3
// layer's forward+backward.
//
// How: per chunk of rows, the maxima are subtracted row by row, then the
// exponentials run as one eight-lane vector loop over the chunk's contiguous
// values (whatever K), then each row is summed (in k order) and divided.
// float: exp_lanes below (Cephes' expf polynomial, within 2 ulp of exp on
// the range it sees, x <= 0), the same function for a chunk's last values
// (through a padded block), so every value's result is the same wherever it
// lies; double: std::exp. A row with a NaN or +inf is NaN throughout, as in
// Paddle. Rows are independent: results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"
#include "cpu_simd.h"

namespace pdcn {
namespace cpu {

constexpr int64_t kSoftmaxRowsPerTask = 256;

#if PDCN_CPU_VECTOR_EXT
// exp of eight floats: Cephes' expf (range reduction by ln 2 in two parts, a
// degree-5 polynomial, the power of two through the exponent bits). Inputs
// below -87.3 give 0 (e^x is then below the smallest normal float), above 88.4
// they are clamped; NaN stays NaN.
PDCN_CPU_INLINE void exp_lanes(Lanes8<float>* v) {
  using F = Lanes8<float>;
  using I = typename LaneVectors<float>::ints;
  F x = *v;
  const F hi = F{} + 88.3762626647949f, lo = F{} - 87.3365447504019f;
  const auto under = x < lo;
  x = x > hi ? hi : x;
  x = x < lo ? lo : x;
  // fx = floor(x * log2(e) + 0.5), through truncation
  const F t = x * 1.44269504088896341f + 0.5f;
  F fx = __builtin_convertvector(__builtin_convertvector(t, I), F);
  fx = fx > t ? fx - 1.0f : fx;
  x = x - fx * 0.693359375f;
  x = x - fx * -2.12194440e-4f;
  const F z = x * x;
  F y = F{} + 1.9875691500e-4f;
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  const I bits = (__builtin_convertvector(fx, I) + 127) << 23;
  F pow2;
  std::memcpy(&pow2, &bits, sizeof(pow2));
  y = y * pow2;
  *v = under ? F{} : y;
}
#endif

// e[i] = exp(e[i]) for i in [0, n).
template <typename T>
PDCN_CPU_INLINE void exp_in_place(T* e, int64_t n) {
#if PDCN_CPU_VECTOR_EXT
  if constexpr (std::is_same<T, float>::value) {
    using F = Lanes8<float>;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      F v;
      load_lanes8(e + i, &v);
      exp_lanes(&v);
      std::memcpy(e + i, &v, sizeof(v));
    }
    if (i < n) {
      float block[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      std::copy(e + i, e + n, block);
      F v;
      load_lanes8(block, &v);
      exp_lanes(&v);
      std::memcpy(block, &v, sizeof(v));
      std::copy(block, block + (n - i), e + i);
    }
    return;
  }
#endif
  for (int64_t i = 0; i < n; ++i) e[i] = std::exp(e[i]);
}

// A row's reductions run in kSoftmaxLanes interleaved partial results (value
// k to lane k % lanes, combined in lane order): short dependency chains for
// K of 9, and one fixed order per row.
constexpr int kSoftmaxLanes = 4;

template <typename T, typename F, typename Op>
PDCN_CPU_INLINE T softmax_row_reduce(int64_t K, T init, const F& value, const Op& op) {
  T lanes[kSoftmaxLanes] = {init, init, init, init};
  int64_t k = 0;
  for (; k + kSoftmaxLanes <= K; k += kSoftmaxLanes) {
    for (int l = 0; l < kSoftmaxLanes; ++l) lanes[l] = op(lanes[l], value(k + l));
  }
  for (int l = 0; k < K; ++k, ++l) lanes[l] = op(lanes[l], value(k));
  return op(op(lanes[0], lanes[1]), op(lanes[2], lanes[3]));
}

template <typename T>
PDCN_CPU_INLINE void group_softmax_rows(const T* x, T* y, int64_t r0, int64_t r1, int64_t K) {
  const auto plus = [](T a, T b) PDCN_LAMBDA_INLINE { return a + b; };
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * K;
    T* yr = y + r * K;
    // a NaN anywhere in the row (or +inf, through inf - inf) makes its exponential NaN, so
    // the row's sum and every output NaN: no separate test
    const T m = softmax_row_reduce<T>(
        K, xr[0], [&](int64_t k) PDCN_LAMBDA_INLINE { return xr[k]; },
        [](T a, T b) PDCN_LAMBDA_INLINE { return b > a ? b : a; });
    for (int64_t k = 0; k < K; ++k) yr[k] = xr[k] - m;
  }
  exp_in_place(y + r0 * K, (r1 - r0) * K);
  for (int64_t r = r0; r < r1; ++r) {
    T* yr = y + r * K;
    const T s = softmax_row_reduce<T>(K, T(0), [&](int64_t k) PDCN_LAMBDA_INLINE { return yr[k]; }, plus);
    const T inv = T(1) / s;  // one division per row (a division per value cost ~1 ms here)
    for (int64_t k = 0; k < K; ++k) yr[k] = yr[k] * inv;
  }
}

template <typename T>
PDCN_CPU_INLINE void group_softmax_grad_rows(const T* y, const T* grad_y, T* grad_x, int64_t r0,
                                             int64_t r1, int64_t K) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* yr = y + r * K;
    const T* gr = grad_y + r * K;
    T* dr = grad_x + r * K;
    const T dot = softmax_row_reduce<T>(
        K, T(0), [&](int64_t k) PDCN_LAMBDA_INLINE { return yr[k] * gr[k]; },
        [](T a, T b) PDCN_LAMBDA_INLINE { return a + b; });
    for (int64_t k = 0; k < K; ++k) dr[k] = yr[k] * (gr[k] - dot);
  }
}

#if PDCN_CPU_AVX2
template <typename T>
PDCN_TARGET_AVX2 void group_softmax_rows_avx2(const T* x, T* y, int64_t r0, int64_t r1, int64_t K) {
  group_softmax_rows(x, y, r0, r1, K);
}
template <typename T>
PDCN_TARGET_AVX2 void group_softmax_grad_rows_avx2(const T* y, const T* grad_y, T* grad_x, int64_t r0,
                                                   int64_t r1, int64_t K) {
  group_softmax_grad_rows(y, grad_y, grad_x, r0, r1, K);
}
#endif

// y [rows, K] = the softmax of each row of x [rows, K].
template <typename T>
void group_softmax_forward(const T* x, T* y, int64_t rows, int64_t K) {
  cpu_parallel_row_ranges(rows, kSoftmaxRowsPerTask, [&](int64_t r0, int64_t r1) {
#if PDCN_CPU_AVX2
    if (cpu_has_avx2_fma()) return group_softmax_rows_avx2(x, y, r0, r1, K);
#endif
    group_softmax_rows(x, y, r0, r1, K);
  });
}

template <typename T>
void group_softmax_backward(const T* y, const T* grad_y, T* grad_x, int64_t rows, int64_t K) {
  cpu_parallel_row_ranges(rows, kSoftmaxRowsPerTask, [&](int64_t r0, int64_t r1) {
#if PDCN_CPU_AVX2
    if (cpu_has_avx2_fma()) return group_softmax_grad_rows_avx2(y, grad_y, grad_x, r0, r1, K);
#endif
    group_softmax_grad_rows(y, grad_y, grad_x, r0, r1, K);
  });
}

}  // namespace cpu
}  // namespace pdcn
