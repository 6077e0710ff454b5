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

// grad_offset, grad_weight: one (n, p, g, k) item per entry.
template <typename T>
void deform_aggregate_backward_coords(const AggregateGeometry& g, const T* value, const T* offset,
                                      const T* weight, const T* grad_out, T* grad_offset,
                                      T* grad_weight) {
  using Acc = acc_t<T>;
  const int64_t K = g.kernel_size();
  const int64_t items = g.batch * g.out_plane() * g.groups;
  cpu_parallel_for(items, [&](int64_t item) {
    const int64_t grp = item % g.groups, np = item / g.groups;
    const int64_t n = np / g.out_plane(), p = np % g.out_plane();
    for (int64_t k = 0; k < K; ++k) {
      aggregate_coord_grad_element<T, Acc>(g, value, offset, weight, grad_out, grad_offset,
                                           grad_weight, n, p, grp, k);
    }
  });
}

// grad_value: each (n, g) item owns its slice of grad_value and visits every
// (p, k) in a fixed order (deterministic).
template <typename T>
void deform_aggregate_backward_value(const AggregateGeometry& g, const T* offset, const T* weight,
                                     const T* grad_out, T* grad_value) {
  using Acc = acc_t<T>;
  std::fill(grad_value, grad_value + g.value_elements(), T(0));
  const int64_t K = g.kernel_size();
  cpu_parallel_for(g.batch * g.groups, [&](int64_t item) {
    const int64_t n = item / g.groups, grp = item % g.groups;
    const auto add = [&](int64_t e, Acc v) { grad_value[e] += cast<T>(v); };
    for (int64_t p = 0; p < g.out_plane(); ++p) {
      for (int64_t k = 0; k < K; ++k) {
        const DeformSampleStencil<Acc> st = aggregate_stencil<Acc>(g, offset, weight, n, p, grp, k);
        aggregate_value_grad_point<T, Acc>(g, st, grad_out, n, p, grp, 0, g.group_channels, add);
      }
    }
  });
}

}  // namespace cpu
}  // namespace pdcn
