// CPU driver of the DCNv3/v4 aggregation (deform_aggregate.h): OpenMP loops
// over work items that each own their outputs, so results do not depend on
// the thread count and no atomics are needed.
#pragma once

#include <algorithm>

#include "deform_aggregate.h"

namespace pdcn {
namespace cpu {

constexpr int kAggregateChannelBlock = 32;

// out: every (n, p, g) item computes all its channels, in blocks.
template <typename T>
void deform_aggregate_forward(const AggregateGeometry& g, const T* value, const T* offset,
                              const T* weight, T* out) {
  using Acc = acc_t<T>;
  const int64_t items = g.batch * g.out_plane() * g.groups;
  cpu_parallel_for(items, [&](int64_t item) {
    const int64_t grp = item % g.groups, np = item / g.groups;
    const int64_t n = np / g.out_plane(), p = np % g.out_plane();
    for (int64_t c0 = 0; c0 < g.group_channels; c0 += kAggregateChannelBlock) {
      const int nc = static_cast<int>(std::min<int64_t>(kAggregateChannelBlock, g.group_channels - c0));
      aggregate_forward_block<kAggregateChannelBlock, T, Acc>(g, value, offset, weight, out, n, p,
                                                              grp, c0, nc);
    }
  });
}

// All three gradients in one pass: each (n, g) item owns its slice of
// grad_value and the offset / weight gradients of its pixels, visits every
// (p, k) in a fixed order (deterministic) and computes each stencil once.
// grad_offset / grad_weight entries outside the layout (fused padding) are
// left as they are: the caller zeroes them.
template <typename T>
void deform_aggregate_backward(const AggregateGeometry& g, const T* value, const T* offset,
                               const T* weight, const T* grad_out, T* grad_value, T* grad_offset,
                               T* grad_weight) {
  using Acc = acc_t<T>;
  std::fill(grad_value, grad_value + g.value_elements(), T(0));
  const int64_t K = g.kernel_size();
  cpu_parallel_for(g.batch * g.groups, [&](int64_t item) {
    const int64_t n = item / g.groups, grp = item % g.groups;
    const auto add = [&](int64_t e, Acc v) { grad_value[e] += cast<T>(v); };
    for (int64_t p = 0; p < g.out_plane(); ++p) {
      for (int64_t k = 0; k < K; ++k) {
        const DeformSampleStencil<Acc> st = aggregate_stencil<Acc>(g, offset, weight, n, p, grp, k);
        Acc gx = 0, gy = 0, gm = 0;
        aggregate_backward_point<true, true, T, Acc>(g, st, value, grad_out, n, p, grp, 0,
                                                     g.group_channels, add, &gx, &gy, &gm);
        aggregate_coord_grad_store<T, Acc>(g, st, gx, gy, gm, grad_offset, grad_weight, n, p, grp, k);
      }
    }
  });
}

}  // namespace cpu
}  // namespace pdcn
