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
// vector loops (add_neighbour_dots, add_scaled_lanes). The stencils of the
// kernel points come eight at a time from stencil_lanes (cpu_stencil_lanes.h,
// shared with deform_conv's channels-last driver), and the forward reads an
// out-of-map neighbour from a row of zeros (zero_row) instead of branching on
// it. In float the backward also forms the offset and weight gradients of
// eight kernel points at once (aggregate_backward_pixel_group), and its work
// items take runs of groups when the batch is large enough
// (aggregate_backward_groups_per_item). The order of every sum is fixed and
// the same for every width path.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu_group_width.h"
#include "cpu_simd.h"
#include "cpu_stencil_lanes.h"
#include "deform_aggregate.h"

namespace pdcn {
namespace cpu {

constexpr int kAggregateChannelBlock = 32;

// The kernel points' origins (aggregate_point_origin), point k at [k] of y and
// x, zero-padded to whole blocks of eight (the lanes of AggregateStencils).
template <typename Acc>
struct AggregatePoints {
  std::vector<Acc> y, x;

  explicit AggregatePoints(const AggregateGeometry& g)
      : y(static_cast<size_t>((g.kernel_size() + 7) / 8 * 8), Acc(0)), x(y.size(), Acc(0)) {
    for (int64_t k = 0; k < g.kernel_size(); ++k) {
      const AggregateOrigin<Acc> o = aggregate_point_origin<Acc>(g, k);
      y[k] = o.y;
      x[k] = o.x;
    }
  }
};

// The K stencils of one (pixel, group), asked for in order k = 0, 1, ..., K-1
// (each at most once per pass): with vector lanes (T = Acc, float or double)
// eight kernel points at a time (fill_block; their offset pairs and weights
// are contiguous), else one at a time, aggregate_stencil_at either way.
// Measured (one thread, op fwd+bwd, InternImage-T stage 1, 1x56x56x64, G=4):
// the vector stencils alone gained ~nothing, with the branch-free forward
// (zero_row) 4.0 -> 3.45 ms (forward 1.31 -> 0.95 ms); stage 4 0.70 -> 0.56.
template <typename T>
struct AggregateStencils {
  using Acc = acc_t<T>;
  const AggregateGeometry& g;
  const AggregatePoints<Acc>& points;
  AggregateOrigin<Acc> pixel;
  const T* off;  // the (pixel, group)'s K offset pairs
  const T* wt;   // and its K weights
#if PDCN_CPU_VECTOR_EXT
  StencilBlock<Acc> block;  // filled before it is read (no zeroing per pixel)
#endif

  PDCN_CPU_INLINE AggregateStencils(const AggregateGeometry& geometry, const AggregatePoints<Acc>& kernel_points,
                                    AggregateOrigin<Acc> pixel_origin, const T* offsets, const T* weights)
      : g(geometry), points(kernel_points), pixel(pixel_origin), off(offsets), wt(weights) {}

  PDCN_CPU_INLINE DeformSampleStencil<Acc> operator()(int64_t k) {
#if PDCN_CPU_VECTOR_EXT
    if constexpr (std::is_same<T, Acc>::value) {
      // blocks of eight points, the last K % 8 one by one (a block of the last
      // eight measured slower: its lanes are read straight after the vector
      // stores that wrote them)
      if (k < g.kernel_size() / 8 * 8) {
        if ((k & 7) == 0) fill_block(k);
        return block.lane(static_cast<int>(k & 7));
      }
    }
#endif
    return aggregate_stencil_at<Acc>(g, pixel, AggregateOrigin<Acc>{points.y[k], points.x[k]}, off + 2 * k,
                                     wt[k]);
  }

#if PDCN_CPU_VECTOR_EXT
  // Points k0 .. k0+7 into block: aggregate_stencil_at's position,
  // x = pixel.x + s*(point.x + dx) (y alike), then stencil_lanes.
  PDCN_CPU_INLINE void fill_block(int64_t k0) {
    using V = Lanes8<T>;
    V lo, hi, m, py, px;
    load_lanes8(off + 2 * k0, &lo);
    load_lanes8(off + 2 * k0 + 8, &hi);
    load_lanes8(wt + k0, &m);
    const V dx = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
    const V dy = __builtin_shufflevector(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15);
    load_lanes8(points.y.data() + k0, &py);
    load_lanes8(points.x.data() + k0, &px);
    const T s = static_cast<T>(g.offset_scale);
    const V x = pixel.x + s * (px + dx);
    const V y = pixel.y + s * (py + dy);
    stencil_lanes(y, x, m, g.in_h, g.in_w, 0, &block);
  }
#endif
};

// Output row (n, i): every pixel, group and channel, the channels in blocks
// of at most kAggregateChannelBlock.
template <int W, typename T>
PDCN_CPU_INLINE void aggregate_forward_row(const AggregateGeometry& g,
                                           const AggregatePoints<acc_t<T>>& points, const T* value,
                                           const T* offset, const T* weight, T* out,
                                           const T* zero_row, int64_t row) {
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
        AggregateStencils<T> stencils{g, points, pixel, off, wt};
        aggregate_forward_channels<CB, T, Acc>(
            K, [&](int64_t k) PDCN_LAMBDA_INLINE { return stencils(k); },
            value + g.value_base(n, 0, grp) + c0, pixel_stride, nc, o + c0, zero_row);
      }
    }
  }
}

#if PDCN_CPU_AVX2
template <int W, typename T>
PDCN_TARGET_AVX2 void aggregate_forward_row_avx2(const AggregateGeometry& g,
                                                 const AggregatePoints<acc_t<T>>& points,
                                                 const T* value, const T* offset, const T* weight,
                                                 T* out, const T* zero_row, int64_t row) {
  aggregate_forward_row<W>(g, points, value, offset, weight, out, zero_row, row);
}
#endif

template <typename T>
void deform_aggregate_forward(const AggregateGeometry& g, const T* value, const T* offset,
                              const T* weight, T* out) {
  if (g.in_plane() == 0) {  // nothing to sample (deform_aggregate.h)
    std::fill(out, out + g.out_elements(), T(0));
    return;
  }
  const AggregatePoints<acc_t<T>> points(g);
  // What a zero-weight neighbour reads (aggregate_forward_channels); in memory
  // the compiler cannot see into, so that the select stays a select.
  const std::vector<T> zeros(kAggregateChannelBlock, T(0));
  const T* zero_row = zeros.data();
  dispatch_group_width(g.group_channels, [&](auto width) {
    constexpr int W = decltype(width)::value;
    cpu_parallel_for(g.batch * g.out_h, [&](int64_t row) {
#if PDCN_CPU_AVX2
      if (cpu_has_avx2_fma()) {
        return aggregate_forward_row_avx2<W>(g, points, value, offset, weight, out, zero_row, row);
      }
#endif
      aggregate_forward_row<W>(g, points, value, offset, weight, out, zero_row, row);
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
    d[i] = outside_map_as_zero(st, i, d[i]);
    *gm += st.w[i] * d[i];
    *gy += st.wy[i] * d[i];
    *gx += st.wx[i] * d[i];
  }
  for (int i = 0; i < 4; ++i) {
    const T w = st.w[i] * st.mask;
    // A neighbour outside the map or of zero bilinear weight gets nothing, whatever
    // the weight m (0 * NaN would land at the pixel its index points at).
    if (st.w[i] == T(0) || w == T(0)) continue;
    add_scaled_lanes<W>(go, w, grad_base + e[i], width);
  }
}

// The backward of the K samples of (n, p, grp), T = float: the kernel points
// in blocks of eight (their stencils from one fill_block). Per sample, the
// four neighbour dot products and the value-gradient scatter over the
// channels, as aggregate_backward_sample; then, per block, the offset and
// weight gradients of its eight points in vector lanes (aggregate_backward_sample's
// gx, gy, gm sums in the same order, aggregate_coord_grad_store's scaling) and
// stored as two vectors of (dx, dy) pairs and one of weights; the last K % 8
// points one by one, as aggregate_backward_item's other dtypes.
template <int W, typename T>
PDCN_CPU_INLINE void aggregate_backward_pixel_group(const AggregateGeometry& g,
                                                    AggregateStencils<T>& stencils, const T* value,
                                                    const T* grad_out, T* grad_value, T* grad_offset,
                                                    T* grad_weight, int64_t n, int64_t p, int64_t grp,
                                                    int64_t width) {
  using V = Lanes8<T>;
  using M = typename LaneVectors<T>::mask;
  const int64_t K = g.kernel_size(), whole = K / 8 * 8;
  const T scale = static_cast<T>(g.offset_scale);
  const int64_t pixel_stride = g.groups * width, value_base = g.value_base(n, 0, grp);
  const T* base = value + value_base;
  T* grad_base = grad_value + value_base;
  const T* go = grad_out + g.out_base(n, p, grp);
  T* goff = grad_offset + g.offset_index(n, p, grp, 0);
  T* gwt = grad_weight + g.weight_index(n, p, grp, 0);
  for (int64_t k0 = 0; k0 < whole; k0 += 8) {
    stencils.fill_block(k0);
    const StencilBlock<T>& b = stencils.block;
    T d[4][8];
    for (int l = 0; l < 8; ++l) {
      const int64_t e[4] = {b.index[0][l] * pixel_stride, b.index[1][l] * pixel_stride,
                            b.index[2][l] * pixel_stride, b.index[3][l] * pixel_stride};
      T dl[4] = {T(0), T(0), T(0), T(0)};
      add_neighbour_dots<W>(go, base, e, width, dl);
      for (int i = 0; i < 4; ++i) d[i][l] = dl[i];
      for (int i = 0; i < 4; ++i) {
        const T w = b.w[i][l] * b.mask[l];
        // as aggregate_backward_sample: nothing for a zero bilinear weight, whatever m
        if (b.w[i][l] == T(0) || w == T(0)) continue;
        add_scaled_lanes<W>(go, w, grad_base + e[i], width);
      }
    }
    const V zero = V{} * T(0);
    V gx = zero, gy = zero, gm = zero;
    for (int i = 0; i < 4; ++i) {
      V di, wi, wyi, wxi;
      load_lanes8(d[i], &di);
      load_lanes8(b.w[i], &wi);
      load_lanes8(b.wy[i], &wyi);
      load_lanes8(b.wx[i], &wxi);
      const M outside = (wxi == zero) & (wyi == zero);  // outside_map_as_zero
      di = outside ? zero : di;
      gm += wi * di;
      gy += wyi * di;
      gx += wxi * di;
    }
    V m;
    load_lanes8(b.mask, &m);
    const V sm = scale * m;
    gx *= sm;
    gy *= sm;
    const V lo = __builtin_shufflevector(gx, gy, 0, 8, 1, 9, 2, 10, 3, 11);
    const V hi = __builtin_shufflevector(gx, gy, 4, 12, 5, 13, 6, 14, 7, 15);
    std::memcpy(goff + 2 * k0, &lo, sizeof(lo));
    std::memcpy(goff + 2 * k0 + 8, &hi, sizeof(hi));
    std::memcpy(gwt + k0, &gm, sizeof(gm));
  }
  for (int64_t k = whole; k < K; ++k) {
    const DeformSampleStencil<T> st = stencils(k);
    T gx = 0, gy = 0, gm = 0;
    aggregate_backward_sample<W>(st, base, grad_base, go, pixel_stride, width, &gx, &gy, &gm);
    aggregate_coord_grad_store<T, T>(g, st, gx, gy, gm, grad_offset, grad_weight, n, p, grp, k);
  }
}
#endif

// The backward's work items: image n and a run of consecutive groups. The run
// is as long as it can be (a divisor of G) with at least max(16, 4 x threads)
// items, one group when the batch is small: a longer run reads each pixel's
// offsets and weights of all its groups in one contiguous row instead of a
// strided slice per group (backward 15.1 -> 8.7 ms at dcnv3_r50 conv2_x, one
// thread, with aggregate_backward_pixel_group). The results do not depend on
// the decomposition: the groups own disjoint elements of every gradient, each
// summed in the same (p, k) order whatever the run.
inline int64_t aggregate_backward_groups_per_item(const AggregateGeometry& g) {
  const int64_t items = std::max<int64_t>(16, 4 * static_cast<int64_t>(cpu_thread_count()));
  for (int64_t run = g.groups; run > 1; --run) {
    if (g.groups % run == 0 && g.batch * (g.groups / run) >= items) return run;
  }
  return 1;
}

// All three gradients of work item (n, group run) in one pass: it owns its
// groups' slices of grad_value and the offset / weight gradients of its
// pixels, visits every (p, grp, k) in a fixed order (deterministic) and
// computes each stencil once.
template <int W, typename T>
PDCN_CPU_INLINE void aggregate_backward_item(const AggregateGeometry& g,
                                             const AggregatePoints<acc_t<T>>& points,
                                             const T* value, const T* offset, const T* weight,
                                             const T* grad_out, T* grad_value, T* grad_offset,
                                             T* grad_weight, int64_t run, int64_t item) {
  using Acc = acc_t<T>;
  const int64_t K = g.kernel_size(), width = W > 0 ? W : g.group_channels;
  const int64_t runs = g.groups / run, n = item / runs, grp0 = (item % runs) * run;
  for (int64_t i = 0; i < g.out_h; ++i) {
    for (int64_t j = 0; j < g.out_w; ++j) {
      const int64_t p = i * g.out_w + j;
      const AggregateOrigin<Acc> pixel = aggregate_pixel_origin<Acc>(g, i, j);
      for (int64_t grp = grp0; grp < grp0 + run; ++grp) {
        AggregateStencils<T> stencils{g, points, pixel, offset + g.offset_index(n, p, grp, 0),
                                      weight + g.weight_index(n, p, grp, 0)};
#if PDCN_CPU_VECTOR_EXT
        // float only: in double the eight-lane vectors are two ymm registers each, and
        // GCC spilled them (op backward 31 -> 44 ms at dcnv3_r50 conv2_x, one thread)
        if constexpr (std::is_same<T, float>::value) {
          aggregate_backward_pixel_group<W>(g, stencils, value, grad_out, grad_value, grad_offset,
                                            grad_weight, n, p, grp, width);
        } else
#endif
        {
          for (int64_t k = 0; k < K; ++k) {
            const DeformSampleStencil<Acc> st = stencils(k);
            Acc gx = 0, gy = 0, gm = 0;
#if PDCN_CPU_VECTOR_EXT
            if constexpr (std::is_same<T, Acc>::value) {
              const int64_t base = g.value_base(n, 0, grp);
              aggregate_backward_sample<W>(st, value + base, grad_value + base,
                                           grad_out + g.out_base(n, p, grp), g.groups * width,
                                           width, &gx, &gy, &gm);
            } else
#endif
            {
              const auto add = [&](int64_t e, Acc v) PDCN_LAMBDA_INLINE {
                grad_value[e] += cast<T>(v);
              };
              aggregate_backward_point<true, true, T, Acc>(g, st, value, grad_out, n, p, grp, 0,
                                                           width, add, &gx, &gy, &gm);
            }
            aggregate_coord_grad_store<T, Acc>(g, st, gx, gy, gm, grad_offset, grad_weight, n,
                                               p, grp, k);
          }
        }
      }
    }
  }
}

#if PDCN_CPU_AVX2
template <int W, typename T>
PDCN_TARGET_AVX2 void aggregate_backward_item_avx2(const AggregateGeometry& g,
                                                   const AggregatePoints<acc_t<T>>& points,
                                                   const T* value, const T* offset,
                                                   const T* weight, const T* grad_out,
                                                   T* grad_value, T* grad_offset, T* grad_weight,
                                                   int64_t run, int64_t item) {
  aggregate_backward_item<W>(g, points, value, offset, weight, grad_out, grad_value, grad_offset,
                             grad_weight, run, item);
}
#endif

// grad_offset / grad_weight entries outside the layout (fused padding) are
// left as they are: the caller zeroes them.
template <typename T>
void deform_aggregate_backward(const AggregateGeometry& g, const T* value, const T* offset,
                               const T* weight, const T* grad_out, T* grad_value, T* grad_offset,
                               T* grad_weight) {
  std::fill(grad_value, grad_value + g.value_elements(), T(0));
  if (g.in_plane() == 0) {  // every sample zero (deform_aggregate.h)
    std::fill(grad_offset, grad_offset + g.offset_elements(), T(0));
    std::fill(grad_weight, grad_weight + g.weight_elements(), T(0));
    return;
  }
  const AggregatePoints<acc_t<T>> points(g);
  dispatch_group_width(g.group_channels, [&](auto width) {
    constexpr int W = decltype(width)::value;
    const int64_t run = aggregate_backward_groups_per_item(g);
    cpu_parallel_for(g.batch * (g.groups / run), [&](int64_t item) {
#if PDCN_CPU_AVX2
      if (cpu_has_avx2_fma()) {
        return aggregate_backward_item_avx2<W>(g, points, value, offset, weight, grad_out,
                                               grad_value, grad_offset, grad_weight, run, item);
      }
#endif
      aggregate_backward_item<W>(g, points, value, offset, weight, grad_out, grad_value,
                                 grad_offset, grad_weight, run, item);
    });
  });
}

}  // namespace cpu
}  // namespace pdcn
