// CPU driver of the DCNv3/v4 aggregation (deform_aggregate.h): OpenMP loops
// over work items that each own their outputs, so results do not depend on
// the thread count and no atomics are needed.
//
// The loops walk output rows, pixels and kernel points in order, so the
// sampling grid's origins are hoisted (no integer division per sample), and
// the common group widths (2, 4, 8, 16, 32, 64 channels) are compiled with
// the width as a constant: with few channels per group the per-sample work
// is a handful of multiply-adds, and fixed-length channel loops unroll. Any
// other width takes the same code with the width at run time. The rows and
// items are compiled a second time for AVX2 + FMA and taken where the CPU has
// them (cpu_simd.h). The per-element math (stencils, sums, gradient stores)
// is deform_aggregate.h's, as on CUDA; the backward's channel loops, the four
// neighbour dot products and the value-gradient scatter, run as eight-lane
// vector loops (add_neighbour_dots, add_scaled_lanes). The order of every
// sum is fixed and the same for every width path.
#pragma once

#include <algorithm>
#include <type_traits>
#include <vector>

#include "cpu_group_width.h"
#include "cpu_simd.h"
#include "deform_aggregate.h"

namespace pdcn {
namespace cpu {

constexpr int kAggregateChannelBlock = 32;

template <typename Acc>
std::vector<AggregateOrigin<Acc>> aggregate_point_origins(const AggregateGeometry& g) {
  std::vector<AggregateOrigin<Acc>> points(static_cast<size_t>(g.kernel_size()));
  for (int64_t k = 0; k < g.kernel_size(); ++k) points[k] = aggregate_point_origin<Acc>(g, k);
  return points;
}

// Output row (n, i): every pixel, group and channel, the channels in blocks
// of at most kAggregateChannelBlock.
template <int W, typename T>
PDCN_CPU_INLINE void aggregate_forward_row(const AggregateGeometry& g,
                                           const AggregateOrigin<acc_t<T>>* points, const T* value,
                                           const T* offset, const T* weight, T* out, int64_t row) {
  using Acc = acc_t<T>;
  constexpr int CB = (W > 0 && W < kAggregateChannelBlock) ? W : kAggregateChannelBlock;
  const int64_t K = g.kernel_size(), width = W > 0 ? W : g.group_channels;
  const int64_t pixel_stride = g.groups * width;
  const int64_t n = row / g.out_h, i = row % g.out_h;
  for (int64_t j = 0; j < g.out_w; ++j) {
    const int64_t p = i * g.out_w + j;
    const AggregateOrigin<Acc> pixel = aggregate_pixel_origin<Acc>(g, i, j);
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      const T* off = offset + g.offset_index(n, p, grp, 0);
      const T* wt = weight + g.weight_index(n, p, grp, 0);
      T* o = out + g.out_base(n, p, grp);
      for (int64_t c0 = 0; c0 < width; c0 += CB) {
        // W > 0: every block is whole (W <= 32, or a multiple of 32).
        const int nc = W > 0 ? CB : static_cast<int>(std::min<int64_t>(CB, width - c0));
        aggregate_forward_channels<CB, T, Acc>(
            K,
            [&](int64_t k) PDCN_LAMBDA_INLINE {
              return aggregate_stencil_at<Acc>(g, pixel, points[k], off + 2 * k, wt[k]);
            },
            value + g.value_base(n, 0, grp) + c0, pixel_stride, nc, o + c0);
      }
    }
  }
}

#if PDCN_CPU_AVX2
template <int W, typename T>
PDCN_TARGET_AVX2 void aggregate_forward_row_avx2(const AggregateGeometry& g,
                                                 const AggregateOrigin<acc_t<T>>* points,
                                                 const T* value, const T* offset, const T* weight,
                                                 T* out, int64_t row) {
  aggregate_forward_row<W>(g, points, value, offset, weight, out, row);
}
#endif

template <typename T>
void deform_aggregate_forward(const AggregateGeometry& g, const T* value, const T* offset,
                              const T* weight, T* out) {
  const std::vector<AggregateOrigin<acc_t<T>>> points = aggregate_point_origins<acc_t<T>>(g);
  dispatch_group_width(g.group_channels, [&](auto width) {
    constexpr int W = decltype(width)::value;
    cpu_parallel_for(g.batch * g.out_h, [&](int64_t row) {
#if PDCN_CPU_AVX2
      if (cpu_has_avx2_fma()) {
        return aggregate_forward_row_avx2<W>(g, points.data(), value, offset, weight, out, row);
      }
#endif
      aggregate_forward_row<W>(g, points.data(), value, offset, weight, out, row);
    });
  });
}

#if PDCN_CPU_VECTOR_EXT
// The backward of one sample over its group's channels: aggregate_backward_point
// (both halves) with the channel loops as eight-lane vectors. base: the
// group's channel 0 of value / grad_value at input pixel 0; go: the
// (pixel, group)'s output gradient.
template <int W, typename T>
PDCN_CPU_INLINE void aggregate_backward_sample(const DeformSampleStencil<T>& st, const T* base,
                                               T* grad_base, const T* go, int64_t pixel_stride,
                                               int64_t width, T* gx, T* gy, T* gm) {
  const int64_t e[4] = {st.index[0] * pixel_stride, st.index[1] * pixel_stride,
                        st.index[2] * pixel_stride, st.index[3] * pixel_stride};
  T d[4] = {T(0), T(0), T(0), T(0)};
  add_neighbour_dots<W>(go, base, e, width, d);
  for (int i = 0; i < 4; ++i) {
    *gm += st.w[i] * d[i];
    *gy += st.wy[i] * d[i];
    *gx += st.wx[i] * d[i];
  }
  for (int i = 0; i < 4; ++i) {
    const T w = st.w[i] * st.mask;
    if (w == T(0)) continue;
    add_scaled_lanes<W>(go, w, grad_base + e[i], width);
  }
}
#endif

// All three gradients of work item (n, grp) in one pass: it owns its slice of
// grad_value and the offset / weight gradients of its pixels, visits every
// (p, k) in a fixed order (deterministic) and computes each stencil once.
template <int W, typename T>
PDCN_CPU_INLINE void aggregate_backward_item(const AggregateGeometry& g,
                                             const AggregateOrigin<acc_t<T>>* points,
                                             const T* value, const T* offset, const T* weight,
                                             const T* grad_out, T* grad_value, T* grad_offset,
                                             T* grad_weight, int64_t item) {
  using Acc = acc_t<T>;
  const int64_t K = g.kernel_size(), width = W > 0 ? W : g.group_channels;
  const int64_t n = item / g.groups, grp = item % g.groups;
  for (int64_t i = 0; i < g.out_h; ++i) {
    for (int64_t j = 0; j < g.out_w; ++j) {
      const int64_t p = i * g.out_w + j;
      const AggregateOrigin<Acc> pixel = aggregate_pixel_origin<Acc>(g, i, j);
      const T* off = offset + g.offset_index(n, p, grp, 0);
      const T* wt = weight + g.weight_index(n, p, grp, 0);
      for (int64_t k = 0; k < K; ++k) {
        const DeformSampleStencil<Acc> st =
            aggregate_stencil_at<Acc>(g, pixel, points[k], off + 2 * k, wt[k]);
        Acc gx = 0, gy = 0, gm = 0;
#if PDCN_CPU_VECTOR_EXT
        if constexpr (std::is_same<T, Acc>::value) {
          const int64_t base = g.value_base(n, 0, grp);
          aggregate_backward_sample<W>(st, value + base, grad_value + base,
                                       grad_out + g.out_base(n, p, grp), g.groups * width, width,
                                       &gx, &gy, &gm);
        } else
#endif
        {
          const auto add = [&](int64_t e, Acc v) PDCN_LAMBDA_INLINE {
            grad_value[e] += cast<T>(v);
          };
          aggregate_backward_point<true, true, T, Acc>(g, st, value, grad_out, n, p, grp, 0,
                                                       width, add, &gx, &gy, &gm);
        }
        aggregate_coord_grad_store<T, Acc>(g, st, gx, gy, gm, grad_offset, grad_weight, n, p,
                                           grp, k);
      }
    }
  }
}

#if PDCN_CPU_AVX2
template <int W, typename T>
PDCN_TARGET_AVX2 void aggregate_backward_item_avx2(const AggregateGeometry& g,
                                                   const AggregateOrigin<acc_t<T>>* points,
                                                   const T* value, const T* offset,
                                                   const T* weight, const T* grad_out,
                                                   T* grad_value, T* grad_offset, T* grad_weight,
                                                   int64_t item) {
  aggregate_backward_item<W>(g, points, value, offset, weight, grad_out, grad_value, grad_offset,
                             grad_weight, item);
}
#endif

// grad_offset / grad_weight entries outside the layout (fused padding) are
// left as they are: the caller zeroes them.
template <typename T>
void deform_aggregate_backward(const AggregateGeometry& g, const T* value, const T* offset,
                               const T* weight, const T* grad_out, T* grad_value, T* grad_offset,
                               T* grad_weight) {
  std::fill(grad_value, grad_value + g.value_elements(), T(0));
  const std::vector<AggregateOrigin<acc_t<T>>> points = aggregate_point_origins<acc_t<T>>(g);
  dispatch_group_width(g.group_channels, [&](auto width) {
    constexpr int W = decltype(width)::value;
    cpu_parallel_for(g.batch * g.groups, [&](int64_t item) {
#if PDCN_CPU_AVX2
      if (cpu_has_avx2_fma()) {
        return aggregate_backward_item_avx2<W>(g, points.data(), value, offset, weight, grad_out,
                                               grad_value, grad_offset, grad_weight, item);
      }
#endif
      aggregate_backward_item<W>(g, points.data(), value, offset, weight, grad_out, grad_value,
                                 grad_offset, grad_weight, item);
    });
  });
}

}  // namespace cpu
}  // namespace pdcn
