// SIMD helpers of the CPU drivers (host only): the AVX2 + FMA dispatch and
// eight-lane vector loops over a channel run.
//
// The library is built for the baseline x86-64, so that it runs anywhere;
// the hot loops are compiled a second time for AVX2 + FMA (PDCN_TARGET_AVX2
// functions) and taken when cpu_has_avx2_fma(). Inside such a function,
// everything it calls must be inlined (PDCN_CPU_INLINE, PDCN_LAMBDA_INLINE),
// or it runs with the baseline's instructions.
//
// Lanes8<T> is a GCC vector of eight T: one ymm for float in an AVX2
// body, SSE registers in the baseline build, so the same source serves both.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__CUDACC__)
#define PDCN_CPU_AVX2 1
#include <immintrin.h>
#define PDCN_TARGET_AVX2 __attribute__((target("avx2,fma"), noinline))
#define PDCN_CPU_INLINE __attribute__((always_inline)) inline
// On a lambda called from a PDCN_TARGET_AVX2 body: inlined there, so that it
// is compiled for AVX2 too (an out-of-line lambda gets the baseline target).
#define PDCN_LAMBDA_INLINE __attribute__((always_inline))
#else
#define PDCN_CPU_AVX2 0
#define PDCN_CPU_INLINE inline
#define PDCN_LAMBDA_INLINE
#endif

// GCC's vector extensions (__builtin_shufflevector needs GCC 12; vector ?: and
// __builtin_convertvector on masks are GCC's forms, so other compilers, Clang
// included, take the generic loops: untested there).
#if !defined(__CUDACC__) && !defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 12
#define PDCN_CPU_VECTOR_EXT 1
#else
#define PDCN_CPU_VECTOR_EXT 0
#endif

namespace pdcn {
namespace cpu {

#if PDCN_CPU_AVX2
// Whether this CPU runs AVX2 and FMA (asked once).
inline bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#endif

#if PDCN_CPU_VECTOR_EXT
// Eight lanes of T as one GCC vector: compiled to the target's widest
// registers (one AVX2 ymm for float inside a PDCN_TARGET_AVX2 body, two SSE
// xmm in the baseline build), so the code below serves both.
template <typename T>
struct LaneVectors;
// eight: the values; four: half of them; ints: eight int32 (indices);
// mask: the comparison result of two `eight`s (lanes of all ones or zeros).
template <>
struct LaneVectors<float> {
  typedef float eight __attribute__((vector_size(32)));
  typedef float four __attribute__((vector_size(16)));
  typedef int32_t ints __attribute__((vector_size(32)));
  typedef int32_t mask __attribute__((vector_size(32)));
};
template <>
struct LaneVectors<double> {
  typedef double eight __attribute__((vector_size(64)));
  typedef double four __attribute__((vector_size(32)));
  typedef int32_t ints __attribute__((vector_size(32)));
  typedef int64_t mask __attribute__((vector_size(64)));
};
template <typename T>
using Lanes8 = typename LaneVectors<T>::eight;
template <typename T>
using Lanes4 = typename LaneVectors<T>::four;

// Unaligned load of eight lanes (through an out-parameter: a vector returned by
// value would change the baseline build's ABI, which GCC warns about).
template <typename T>
PDCN_CPU_INLINE void load_lanes8(const T* p, Lanes8<T>* v) {
  std::memcpy(v, p, sizeof(*v));
}
template <typename T>
PDCN_CPU_INLINE void load_lanes4(const T* p, Lanes4<T>* v) {
  std::memcpy(v, p, sizeof(*v));
}

// d[s] += sum_c gcol[c] * image[e[s] + c] over the n channels of a run, s =
// 0..3: the four dot products of a sample's neighbours, each in eight lanes
// over the whole blocks of eight channels (folded to four), plus one block of
// four lanes when four or more channels remain, then one joint lane
// reduction (a 4 x 4 transpose and add), then the last n % 4 channels one by
// one; a fixed order. (lane_dot, the generic form, turns into scalar code
// once the width is a constant. Measured one thread at dcn_r50 res2, 32
// images: this form and add_scaled_lanes took the backward sweep from 8.0 to
// 5.2 ms; the four-lane block took the DCNv3/v4 op's forward+backward at four
// channels per group, dcnv3_r50 conv2_x, from 29.5 to 23.2 ms.) W > 0: n == W.
template <int W, typename T>
PDCN_CPU_INLINE void add_neighbour_dots(const T* __restrict__ gcol, const T* __restrict__ image,
                                        const int64_t e[4], int64_t run, T* d) {
  const int64_t n = W > 0 ? W : run, whole = n / 8 * 8;
  const bool quad = n - whole >= 4;
  if (whole > 0 || quad) {
    Lanes4<T> h[4];
    if (whole > 0) {
      Lanes8<T> acc[4], gv, v;
      load_lanes8(gcol, &gv);
      for (int s = 0; s < 4; ++s) {
        load_lanes8(image + e[s], &v);
        acc[s] = gv * v;
      }
      for (int64_t c = 8; c < whole; c += 8) {
        load_lanes8(gcol + c, &gv);
        for (int s = 0; s < 4; ++s) {
          load_lanes8(image + e[s] + c, &v);
          acc[s] += gv * v;
        }
      }
      for (int s = 0; s < 4; ++s) {
        h[s] = __builtin_shufflevector(acc[s], acc[s], 0, 1, 2, 3) +
               __builtin_shufflevector(acc[s], acc[s], 4, 5, 6, 7);
      }
    }
    if (quad) {
      Lanes4<T> gv, v;
      load_lanes4(gcol + whole, &gv);
      for (int s = 0; s < 4; ++s) {
        load_lanes4(image + e[s] + whole, &v);
        h[s] = whole > 0 ? h[s] + gv * v : gv * v;
      }
    }
    const Lanes4<T> p01 = __builtin_shufflevector(h[0], h[1], 0, 4, 2, 6) +
                          __builtin_shufflevector(h[0], h[1], 1, 5, 3, 7);
    const Lanes4<T> p23 = __builtin_shufflevector(h[2], h[3], 0, 4, 2, 6) +
                          __builtin_shufflevector(h[2], h[3], 1, 5, 3, 7);
    const Lanes4<T> sums = __builtin_shufflevector(p01, p23, 0, 1, 4, 5) +
                           __builtin_shufflevector(p01, p23, 2, 3, 6, 7);
    for (int s = 0; s < 4; ++s) d[s] += sums[s];
  }
  for (int64_t c = whole + (quad ? 4 : 0); c < n; ++c) {
    for (int s = 0; s < 4; ++s) d[s] += gcol[c] * image[e[s] + c];
  }
}

// dst[c] += w * src[c] over the n channels of a run, eight at a time, then
// four when four or more remain, then the rest one by one (the plain loop,
// unrolled by a constant width, compiles to scalar stores). W > 0: n == W.
template <int W, typename T>
PDCN_CPU_INLINE void add_scaled_lanes(const T* __restrict__ src, T w, T* __restrict__ dst,
                                      int64_t run) {
  const int64_t n = W > 0 ? W : run, whole = n / 8 * 8;
  for (int64_t c = 0; c < whole; c += 8) {
    Lanes8<T> v, u;
    load_lanes8(dst + c, &v);
    load_lanes8(src + c, &u);
    v += w * u;
    std::memcpy(dst + c, &v, sizeof(v));
  }
  int64_t c = whole;
  if (n - c >= 4) {
    Lanes4<T> v, u;
    load_lanes4(dst + c, &v);
    load_lanes4(src + c, &u);
    v += w * u;
    std::memcpy(dst + c, &v, sizeof(v));
    c += 4;
  }
  for (; c < n; ++c) dst[c] += w * src[c];
}
#endif

}  // namespace cpu
}  // namespace pdcn
