// CUDA driver of the DCNv3/v4 aggregation: grid-stride kernels over the
// per-element functions of deform_aggregate.h. A thread handles a block of
// kChannelBlock channels of one (pixel, group), sharing the K stencils among
// them (DCNv4's scheme); any group width works (the last block is partial).
#pragma once

#include "cuda_common.cuh"
#include "deform_aggregate.h"

namespace pdcn {
namespace cuda {

constexpr int kAggregateChannelBlock = 8;

PDCN_HD int64_t aggregate_channel_blocks(const AggregateGeometry& g) {
  return (g.group_channels + kAggregateChannelBlock - 1) / kAggregateChannelBlock;
}

// Item e over (n, p, g, channel block), block fastest.
struct AggregateItem {
  int64_t n, p, grp, c0;
  int nc;
  __device__ __forceinline__ AggregateItem(const AggregateGeometry& g, int64_t e, int64_t blocks) {
    const int64_t b = e % blocks;
    int64_t t = e / blocks;
    grp = t % g.groups;
    t /= g.groups;
    p = t % g.out_plane();
    n = t / g.out_plane();
    c0 = b * kAggregateChannelBlock;
    const int64_t left = g.group_channels - c0;
    nc = static_cast<int>(left < kAggregateChannelBlock ? left : kAggregateChannelBlock);
  }
};

template <typename T>
__global__ void deform_aggregate_forward_kernel(AggregateGeometry g, const T* value, const T* offset,
                                                const T* weight, T* out) {
  const int64_t blocks = aggregate_channel_blocks(g);
  PDCN_CUDA_LOOP(e, g.batch * g.out_plane() * g.groups * blocks) {
    const AggregateItem it(g, e, blocks);
    aggregate_forward_block<kAggregateChannelBlock, T, acc_t<T>>(g, value, offset, weight, out, it.n,
                                                                 it.p, it.grp, it.c0, it.nc);
  }
}

template <typename T>
__global__ void deform_aggregate_coord_grad_kernel(AggregateGeometry g, const T* value,
                                                   const T* offset, const T* weight,
                                                   const T* grad_out, T* grad_offset,
                                                   T* grad_weight) {
  const int64_t K = g.kernel_size();
  PDCN_CUDA_LOOP(e, g.batch * g.out_plane() * g.groups * K) {
    const int64_t k = e % K;
    int64_t t = e / K;
    const int64_t grp = t % g.groups;
    t /= g.groups;
    const int64_t n = t / g.out_plane(), p = t % g.out_plane();
    using Acc = acc_t<T>;
    const auto st = aggregate_stencil<Acc>(g, offset, weight, n, p, grp, k);
    Acc gx = 0, gy = 0, gm = 0;
    aggregate_backward_point<true, false, T, Acc>(g, st, value, grad_out, n, p, grp, 0,
                                                  g.group_channels, [](int64_t, Acc) {}, &gx, &gy,
                                                  &gm);
    aggregate_coord_grad_store<T, Acc>(g, st, gx, gy, gm, grad_offset, grad_weight, n, p, grp, k);
  }
}

// acc: grad_value in the accumulation type, zeroed beforehand.
template <typename T, typename Acc>
__global__ void deform_aggregate_value_grad_atomic_kernel(AggregateGeometry g, const T* offset,
                                                          const T* weight, const T* grad_out,
                                                          Acc* acc) {
  const int64_t blocks = aggregate_channel_blocks(g);
  PDCN_CUDA_LOOP(e, g.batch * g.out_plane() * g.groups * blocks) {
    const AggregateItem it(g, e, blocks);
    for (int64_t k = 0; k < g.kernel_size(); ++k) {
      const auto st = aggregate_stencil<Acc>(g, offset, weight, it.n, it.p, it.grp, k);
      aggregate_backward_point<false, true, T, Acc>(
          g, st, static_cast<const T*>(nullptr), grad_out, it.n, it.p, it.grp, it.c0, it.nc,
          [acc](int64_t i, Acc v) { atomicAdd(acc + i, v); }, nullptr, nullptr, nullptr);
    }
  }
}

// Deterministic value gradient, pass 1: the largest bound on a contribution
// (aggregate_value_grad_bound) over the (pixel, group)s.
template <typename T>
__global__ void deform_aggregate_value_grad_max_kernel(AggregateGeometry g, const T* weight,
                                                       const T* grad_out,
                                                       unsigned long long* max_bits) {
  unsigned long long local = 0;
  PDCN_CUDA_LOOP(e, g.batch * g.out_plane() * g.groups) {
    const int64_t grp = e % g.groups, np = e / g.groups;
    const unsigned long long bits = fixed_point::ordered_bits(
        aggregate_value_grad_bound(g, weight, grad_out, np / g.out_plane(), np % g.out_plane(), grp));
    local = bits > local ? bits : local;
  }
  fold_max(max_bits, local);
}

// Deterministic value gradient, pass 2: the atomic kernel's scatter with
// fixed-point integer adds.
template <typename T>
__global__ void deform_aggregate_value_grad_fixed_point_kernel(AggregateGeometry g, const T* offset,
                                                               const T* weight, const T* grad_out,
                                                               FixedPointSink sink) {
  using Acc = acc_t<T>;
  const int exponent = sink.exponent();
  const int64_t blocks = aggregate_channel_blocks(g);
  PDCN_CUDA_LOOP(e, g.batch * g.out_plane() * g.groups * blocks) {
    const AggregateItem it(g, e, blocks);
    for (int64_t k = 0; k < g.kernel_size(); ++k) {
      const auto st = aggregate_stencil<Acc>(g, offset, weight, it.n, it.p, it.grp, k);
      aggregate_backward_point<false, true, T, Acc>(
          g, st, static_cast<const T*>(nullptr), grad_out, it.n, it.p, it.grp, it.c0, it.nc,
          [&](int64_t i, Acc v) { sink.add(i, v, exponent); }, nullptr, nullptr, nullptr);
    }
  }
}

}  // namespace cuda
}  // namespace pdcn
