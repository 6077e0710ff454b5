// The mask of DeformConv2D's packed offset branch output: the op
// pdcn_deform_conv2d_packed gets [N, 3*dg*K, Ho, Wo] (offsets in channels
// [0, 2*dg*K), mask logits after) and turns the logits into the mask,
// mask = scale * sigmoid(logit), before the sampling; the backward turns the
// mask gradient into the logit gradient,
//   d mask / d logit = scale * s * (1 - s) = mask * (1 - mask / scale).
//
// Per element: mask_from_logit and logit_grad (PDCN_HD). CPU loops below,
// over one image's P*Ho*Wo logits at a time, compiled for AVX2 + FMA where
// the CPU has them: float's exponential is a polynomial (exp_f32, eight lanes
// at a time as intrinsics in exp_f32_avx2); libm's scalar expf, called once per
// sample inside the sampling loops, measured about 1.3 ms per res2 layer
// forward+backward (32x16x24x24, one thread), as much as the split and
// sigmoid it replaces.
#pragma once

#include <cstring>
#include <type_traits>

#include "deform_conv_cpu_cl.h"  // common.h and the CPU AVX2 helpers

namespace pdcn {

// e^x in float: 2^n * e^r with n = round(x / ln 2), |r| <= ln(2) / 2 and
// Cephes' degree-6 polynomial for e^r (relative error about 1e-7, 1-2 ulp).
// x is clamped to [-87.3, 88.3] (so 2^n stays a normal float: e^x of a
// larger |x| is 0 or inf in a sigmoid anyway); NaN stays NaN.
PDCN_HD float exp_f32(float x) {
  const bool is_nan = !(x == x);
  float xs = is_nan ? 0.0f : x;
  xs = xs < -87.3f ? -87.3f : (xs > 88.3f ? 88.3f : xs);
  // n = round(xs / ln 2) by truncation (an int conversion the compiler
  // vectorises, where floorf stays a libm call on the baseline x86-64)
  const float t = xs * 1.44269504088896341f;
  const int32_t ni = static_cast<int32_t>(t + (t < 0.0f ? -0.5f : 0.5f));
  const float n = static_cast<float>(ni);
  float r = xs - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  const int32_t bits = (ni + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof(two_n));
  return is_nan ? x : e * two_n;
}

PDCN_HD float exp_for_mask(float x) { return exp_f32(x); }
PDCN_HD double exp_for_mask(double x) { return ::exp(x); }

// scale * sigmoid(logit).
template <typename Acc>
PDCN_HD Acc mask_from_logit(Acc logit, Acc scale) {
  return scale / (Acc(1) + exp_for_mask(-logit));
}

// The logit's gradient from the mask's, given the mask value.
template <typename Acc>
PDCN_HD Acc logit_grad(Acc grad_mask, Acc mask, Acc scale) {
  return grad_mask * mask * (Acc(1) - mask / scale);
}

namespace cpu {

template <typename T>
PDCN_CPU_INLINE void mask_from_logits_run(const T* __restrict__ logits, T* __restrict__ mask,
                                          int64_t n, T scale) {
  for (int64_t i = 0; i < n; ++i) mask[i] = mask_from_logit<T>(logits[i], scale);
}

template <typename T>
PDCN_CPU_INLINE void logit_grad_run(const T* __restrict__ grad_mask, const T* __restrict__ mask,
                                    T* __restrict__ grad_logits, int64_t n, T scale) {
  for (int64_t i = 0; i < n; ++i) grad_logits[i] = logit_grad<T>(grad_mask[i], mask[i], scale);
}

#if PDCN_CPU_AVX2
// exp_f32 on eight lanes: the same steps as intrinsics (GCC does not
// if-convert exp_f32's clamps under its default -ftrapping-math, so a loop of
// the scalar form stays scalar).
PDCN_CPU_INLINE __attribute__((target("avx2,fma"))) __m256 exp_f32_avx2(__m256 x) {
  const __m256 is_nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  __m256 xs = _mm256_blendv_ps(x, _mm256_setzero_ps(), is_nan);
  xs = _mm256_min_ps(_mm256_max_ps(xs, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 t = _mm256_mul_ps(xs, _mm256_set1_ps(1.44269504088896341f));
  const __m256 half = _mm256_or_ps(_mm256_and_ps(t, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(0.5f));
  const __m256i ni = _mm256_cvttps_epi32(_mm256_add_ps(t, half));
  const __m256 n = _mm256_cvtepi32_ps(ni);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xs);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 e = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256 two_n =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23));
  return _mm256_blendv_ps(_mm256_mul_ps(e, two_n), x, is_nan);
}

template <typename T>
PDCN_TARGET_AVX2 void mask_from_logits_run_avx2(const T* logits, T* mask, int64_t n, T scale) {
  int64_t i = 0;
  if constexpr (std::is_same<T, float>::value) {
    const __m256 s = _mm256_set1_ps(scale), one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
      const __m256 minus_logit = _mm256_sub_ps(_mm256_setzero_ps(), _mm256_loadu_ps(logits + i));
      _mm256_storeu_ps(mask + i, _mm256_div_ps(s, _mm256_add_ps(one, exp_f32_avx2(minus_logit))));
    }
  }
  mask_from_logits_run(logits + i, mask + i, n - i, scale);
}
template <typename T>
PDCN_TARGET_AVX2 void logit_grad_run_avx2(const T* grad_mask, const T* mask, T* grad_logits,
                                          int64_t n, T scale) {
  logit_grad_run(grad_mask, mask, grad_logits, n, scale);
}
#endif

// mask[b] ([P*Ho*Wo]) = scale * sigmoid of image b's logits, which start at
// packed + b * image_stride; one task per image.
template <typename T>
void masks_from_packed_logits(const T* packed, T* mask, int64_t batch, int64_t image_stride,
                              int64_t mask_elements, T scale) {
  cpu_parallel_for(batch, [&](int64_t b) {
    const T* logits = packed + b * image_stride;
    T* out = mask + b * mask_elements;
#if PDCN_CPU_AVX2
    if (cpu_has_avx2_fma()) return mask_from_logits_run_avx2(logits, out, mask_elements, scale);
#endif
    mask_from_logits_run(logits, out, mask_elements, scale);
  });
}

// The packed gradient's logit channels of every image (at grad_packed + b *
// image_stride) from the mask gradient and the mask, both [N, P*Ho*Wo].
template <typename T>
void packed_logit_grads(const T* grad_mask, const T* mask, T* grad_packed, int64_t batch,
                        int64_t image_stride, int64_t mask_elements, T scale) {
  cpu_parallel_for(batch, [&](int64_t b) {
    const T* gm = grad_mask + b * mask_elements;
    const T* m = mask + b * mask_elements;
    T* out = grad_packed + b * image_stride;
#if PDCN_CPU_AVX2
    if (cpu_has_avx2_fma()) return logit_grad_run_avx2(gm, m, out, mask_elements, scale);
#endif
    logit_grad_run(gm, m, out, mask_elements, scale);
  });
}

}  // namespace cpu
}  // namespace pdcn
