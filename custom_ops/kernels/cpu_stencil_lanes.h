// Eight sample stencils at once on the CPU (host only): sample_stencil_at
// (bilinear.h) computed in eight vector lanes, shared by the channels-last
// deformable conv (deform_conv_cpu_cl.h) and the DCNv3/v4 aggregation
// (deform_aggregate_cpu.h). With few channels per group the scalar stencil,
// not the channel loop, is most of a sample's work.
#pragma once

#include <cstdint>
#include <cstring>

#include "bilinear.h"
#include "cpu_simd.h"

namespace pdcn {
namespace cpu {

// Up to eight stencils, struct of arrays (lane l: sample l of the block).
// The deformable conv fills a block with eight consecutive output pixels of
// one row at one kernel point, the aggregation with eight kernel points of
// one (pixel, group).
template <typename Acc>
struct StencilBlock {
  int32_t index[4][8];
  Acc w[4][8], wy[4][8], wx[4][8], mask[8];

  PDCN_CPU_INLINE DeformSampleStencil<Acc> lane(int l) const {
    DeformSampleStencil<Acc> st;
    for (int s = 0; s < 4; ++s) {
      st.index[s] = index[s][l];
      st.w[s] = w[s][l];
      st.wy[s] = wy[s][l];
      st.wx[s] = wx[s][l];
    }
    st.mask = mask[l];
    return st;
  }
  PDCN_CPU_INLINE void set_lane(int l, const DeformSampleStencil<Acc>& st) {
    for (int s = 0; s < 4; ++s) {
      index[s][l] = st.index[s];
      w[s][l] = st.w[s];
      wy[s][l] = st.wy[s];
      wx[s][l] = st.wx[s];
    }
    mask[l] = st.mask;
  }
};

#if PDCN_CPU_VECTOR_EXT
// sample_stencil_at (bilinear.h) for eight samples at once, lanes in vectors:
// the same formulas and the same rule (a sample outside (-1, H) x (-1, W),
// NaN included, is zero with zero weights; a neighbour outside the map has
// zero weight and index outside_index). floor is the conversion's truncation
// corrected by one below zero, exact on (-1, W), the only range it sees.
template <typename T>
PDCN_CPU_INLINE void stencil_lanes(const Lanes8<T>& y_in, const Lanes8<T>& x_in,
                                   const Lanes8<T>& m, int64_t height, int64_t width,
                                   int32_t outside_index, StencilBlock<T>* out) {
  using V = Lanes8<T>;
  using I = typename LaneVectors<T>::ints;
  using M = typename LaneVectors<T>::mask;
  const V zero = V{} * T(0), one = zero + T(1);
  const M valid = (y_in > T(-1)) & (x_in > T(-1)) & (y_in < T(height)) & (x_in < T(width));
  const V y = valid ? y_in : zero, x = valid ? x_in : zero;
  V fy = __builtin_convertvector(__builtin_convertvector(y, I), V);
  V fx = __builtin_convertvector(__builtin_convertvector(x, I), V);
  fy = fy > y ? fy - one : fy;
  fx = fx > x ? fx - one : fx;
  const I y0 = __builtin_convertvector(fy, I), x0 = __builtin_convertvector(fx, I);
  const I y1 = y0 + 1, x1 = x0 + 1;
  const I ok = __builtin_convertvector(valid, I);
  const I w_ = I{} + static_cast<int32_t>(width), h_ = I{} + static_cast<int32_t>(height);
  const I in[4] = {ok & (y0 >= 0) & (x0 >= 0), ok & (y0 >= 0) & (x1 < w_),
                   ok & (y1 < h_) & (x0 >= 0), ok & (y1 < h_) & (x1 < w_)};
  const I idx[4] = {y0 * w_ + x0, y0 * w_ + x1, y1 * w_ + x0, y1 * w_ + x1};
  const V ly = y - fy, lx = x - fx, hy = one - ly, hx = one - lx;
  const V w[4] = {hy * hx, hy * lx, ly * hx, ly * lx};
  const V wy[4] = {-hx, -lx, hx, lx};
  const V wx[4] = {-hy, hy, -ly, ly};
  for (int s = 0; s < 4; ++s) {
    const I index = in[s] ? idx[s] : I{} + outside_index;
    const M keep = __builtin_convertvector(in[s], M);
    const V ws = keep ? w[s] : zero, wys = keep ? wy[s] : zero, wxs = keep ? wx[s] : zero;
    std::memcpy(out->index[s], &index, sizeof(index));
    std::memcpy(out->w[s], &ws, sizeof(ws));
    std::memcpy(out->wy[s], &wys, sizeof(wys));
    std::memcpy(out->wx[s], &wxs, sizeof(wxs));
  }
  std::memcpy(out->mask, &m, sizeof(m));
}
#endif

}  // namespace cpu
}  // namespace pdcn
