// A bias along the last axis on the CPU: out[r, c] = x[r, c] + bias[c] over a
// row-major [rows, C] view, and the bias gradient, the sum of grad_out over
// the rows. The bias of the DCNv3/DCNv4 layers' projections (Paddle Linears,
// channels-last), in CPU dygraph.
//
// Why: Paddle's Linear adds its bias with the broadcasting elementwise add,
// and that add and its gradient took about a fifth of the DCNv4 layer's
// forward+backward at dcnv3_r50's conv2_x (4.5 of 20.6 ms, one thread,
// docs/benchmarks.md): more than the three matmuls. Here each row is one
// vector loop over the contiguous channels.
//
// Order: the forward gives a thread whole rows. The gradient sums fixed chunks
// of rows (kRowBiasChunks and the shape decide them, not the thread count),
// each chunk row by row, then the chunks in order: bitwise equal results for
// every thread count. CPU only: on GPU and in saved programs the layers keep
// Paddle's add.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"
#include "cpu_simd.h"

namespace pdcn {
namespace cpu {

constexpr int64_t kRowBiasChunks = 64;
constexpr int64_t kRowBiasRowsPerTask = 64;

template <typename T>
PDCN_CPU_INLINE void add_row_bias_rows(const T* x, const T* bias, T* out, int64_t r0, int64_t r1,
                                       int64_t C) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* in = x + r * C;
    T* o = out + r * C;
    for (int64_t c = 0; c < C; ++c) o[c] = in[c] + bias[c];
  }
}

// part[c] = the sum of grad_out[r, c] over rows [r0, r1), in row order.
template <typename T>
PDCN_CPU_INLINE void row_bias_grad_chunk(const T* grad_out, int64_t r0, int64_t r1, int64_t C,
                                         acc_t<T>* part) {
  std::fill(part, part + C, acc_t<T>(0));
  for (int64_t r = r0; r < r1; ++r) {
    const T* g = grad_out + r * C;
    for (int64_t c = 0; c < C; ++c) part[c] += static_cast<acc_t<T>>(g[c]);
  }
}

#if PDCN_CPU_AVX2
template <typename T>
PDCN_TARGET_AVX2 void add_row_bias_rows_avx2(const T* x, const T* bias, T* out, int64_t r0,
                                             int64_t r1, int64_t C) {
  add_row_bias_rows(x, bias, out, r0, r1, C);
}
template <typename T>
PDCN_TARGET_AVX2 void row_bias_grad_chunk_avx2(const T* grad_out, int64_t r0, int64_t r1,
                                               int64_t C, acc_t<T>* part) {
  row_bias_grad_chunk(grad_out, r0, r1, C, part);
}
#endif

// out = x + bias over [rows, C] (out may be x).
template <typename T>
void add_row_bias(const T* x, const T* bias, T* out, int64_t rows, int64_t C) {
  cpu_parallel_row_ranges(rows, kRowBiasRowsPerTask, [&](int64_t r0, int64_t r1) {
#if PDCN_CPU_AVX2
    if (cpu_has_avx2_fma()) return add_row_bias_rows_avx2(x, bias, out, r0, r1, C);
#endif
    add_row_bias_rows(x, bias, out, r0, r1, C);
  });
}

// grad_bias[c] = the sum of grad_out[r, c] over the rows, in the fixed order above.
template <typename T>
void row_bias_gradient(const T* grad_out, T* grad_bias, int64_t rows, int64_t C) {
  using Acc = acc_t<T>;
  const int64_t chunks = fixed_row_chunk_count(rows, kRowBiasChunks);
  std::vector<Acc> parts(static_cast<size_t>(chunks * C));
  cpu_parallel_row_chunks(rows, chunks, [&](int64_t k, int64_t r0, int64_t r1) {
#if PDCN_CPU_AVX2
    if (cpu_has_avx2_fma()) return row_bias_grad_chunk_avx2(grad_out, r0, r1, C, parts.data() + k * C);
#endif
    row_bias_grad_chunk(grad_out, r0, r1, C, parts.data() + k * C);
  });
  for (int64_t c = 0; c < C; ++c) {
    Acc total = Acc(0);
    for (int64_t k = 0; k < chunks; ++k) total += parts[k * C + c];
    grad_bias[c] = static_cast<T>(total);
  }
}

}  // namespace cpu
}  // namespace pdcn
