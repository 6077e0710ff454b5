// CPU driver of the DCNv3/v4 aggregation (deform_aggregate.h): OpenMP loops
// over work items that each own their outputs, so results do not depend on
// the thread count and no atomics are needed.
//
// The loops walk output rows, pixels and kernel points in order, so the
// sampling grid's origins are hoisted (no integer division per sample), and
// the common group widths (2, 4, 8, 16, 32, 64 channels) are compiled with
// the width as a constant: with few channels per group the per-sample work
// is a handful of multiply-adds, and fixed-length channel loops unroll. Any
// other width takes the same code with the width at run time. The per-element
// math is deform_aggregate.h's, as on CUDA; the order of every sum is the
// same for every width path.
#pragma once

#include <algorithm>
#include <vector>

#include "cpu_group_width.h"
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

// out: every output row (n, i) computes all its pixels, groups and channels,
// the channels in blocks of at most kAggregateChannelBlock.
template <int W, typename T>
void deform_aggregate_forward_width(const AggregateGeometry& g, const T* value, const T* offset,
                                    const T* weight, T* out) {
  using Acc = acc_t<T>;
  constexpr int CB = (W > 0 && W < kAggregateChannelBlock) ? W : kAggregateChannelBlock;
  const int64_t K = g.kernel_size(), width = W > 0 ? W : g.group_channels;
  const int64_t pixel_stride = g.groups * width;
  const std::vector<AggregateOrigin<Acc>> points = aggregate_point_origins<Acc>(g);
  cpu_parallel_for(g.batch * g.out_h, [&](int64_t row) {
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
              K, [&](int64_t k) { return aggregate_stencil_at<Acc>(g, pixel, points[k], off + 2 * k, wt[k]); },
              value + g.value_base(n, 0, grp) + c0, pixel_stride, nc, o + c0);
        }
      }
    }
  });
}

template <typename T>
void deform_aggregate_forward(const AggregateGeometry& g, const T* value, const T* offset,
                              const T* weight, T* out) {
  dispatch_group_width(g.group_channels, [&](auto width) {
    deform_aggregate_forward_width<decltype(width)::value, T>(g, value, offset, weight, out);
  });
}

// All three gradients in one pass: each (n, g) item owns its slice of
// grad_value and the offset / weight gradients of its pixels, visits every
// (p, k) in a fixed order (deterministic) and computes each stencil once.
template <int W, typename T>
void deform_aggregate_backward_width(const AggregateGeometry& g, const T* value, const T* offset,
                                     const T* weight, const T* grad_out, T* grad_value,
                                     T* grad_offset, T* grad_weight) {
  using Acc = acc_t<T>;
  const int64_t K = g.kernel_size(), width = W > 0 ? W : g.group_channels;
  const std::vector<AggregateOrigin<Acc>> points = aggregate_point_origins<Acc>(g);
  cpu_parallel_for(g.batch * g.groups, [&](int64_t item) {
    const int64_t n = item / g.groups, grp = item % g.groups;
    const auto add = [&](int64_t e, Acc v) { grad_value[e] += cast<T>(v); };
    for (int64_t i = 0; i < g.out_h; ++i) {
      for (int64_t j = 0; j < g.out_w; ++j) {
        const int64_t p = i * g.out_w + j;
        const AggregateOrigin<Acc> pixel = aggregate_pixel_origin<Acc>(g, i, j);
        const T* off = offset + g.offset_index(n, p, grp, 0);
        const T* wt = weight + g.weight_index(n, p, grp, 0);
        for (int64_t k = 0; k < K; ++k) {
          const DeformSampleStencil<Acc> st = aggregate_stencil_at<Acc>(g, pixel, points[k], off + 2 * k, wt[k]);
          Acc gx = 0, gy = 0, gm = 0;
          aggregate_backward_point<true, true, T, Acc>(g, st, value, grad_out, n, p, grp, 0, width, add,
                                                       &gx, &gy, &gm);
          aggregate_coord_grad_store<T, Acc>(g, st, gx, gy, gm, grad_offset, grad_weight, n, p, grp, k);
        }
      }
    }
  });
}

// grad_offset / grad_weight entries outside the layout (fused padding) are
// left as they are: the caller zeroes them.
template <typename T>
void deform_aggregate_backward(const AggregateGeometry& g, const T* value, const T* offset,
                               const T* weight, const T* grad_out, T* grad_value, T* grad_offset,
                               T* grad_weight) {
  std::fill(grad_value, grad_value + g.value_elements(), T(0));
  dispatch_group_width(g.group_channels, [&](auto width) {
    deform_aggregate_backward_width<decltype(width)::value, T>(g, value, offset, weight, grad_out,
                                                               grad_value, grad_offset, grad_weight);
  });
}

}  // namespace cpu
}  // namespace pdcn
