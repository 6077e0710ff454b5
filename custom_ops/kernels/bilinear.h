// The bilinear stencil of deformable convolution: which four neighbours a
// sample blends and with what fractional weights (deform_conv.h turns it into
// weights, weight derivatives and in-map flags).
//
// Convention (DCN v1/v2, Paddle's deform_conv2d): a sample at (y, x) with
// y <= -1 or y >= H or x <= -1 or x >= W is zero; otherwise the four integer
// neighbours are blended and a neighbour outside the map contributes zero.
// The range test is written so that NaN fails it: non-finite and huge
// coordinates give a zero sample and never reach the float->int conversion.
#pragma once

#include "common.h"

namespace pdcn {

// The four neighbours of a sample point and their bilinear weights.
template <typename Acc>
struct BilinearStencil {
  int64_t y0, x0;  // top-left neighbour (may be -1)
  Acc ly, lx;      // fractional parts: weight of the bottom / right neighbours
  bool valid;      // false: the sample is zero and has zero gradient
};

template <typename Acc>
PDCN_HD BilinearStencil<Acc> make_stencil(Acc y, Acc x, int64_t height, int64_t width) {
  BilinearStencil<Acc> s;
  s.valid = (y > Acc(-1)) && (x > Acc(-1)) && (y < Acc(height)) && (x < Acc(width));
  if (!s.valid) {
    s.y0 = s.x0 = 0;
    s.ly = s.lx = Acc(0);
    return s;
  }
  const Acc fy = floor_acc(y), fx = floor_acc(x);
  s.y0 = static_cast<int64_t>(fy);
  s.x0 = static_cast<int64_t>(fx);
  s.ly = y - fy;
  s.lx = x - fx;
  return s;
}

// Everything one deformable sample needs, independent of the channel: the four
// neighbour indices in the plane (outside_index where the neighbour is outside
// the map, with its weights zeroed), the bilinear weights, their derivatives with
// respect to y and x, and the modulation scalar. Every quantity is linear in
// the neighbour values v_i:
//   sample = m * sum_i w_i v_i,  d sample/dy = m * sum_i wy_i v_i,  (x alike).
// Neighbour order: (y0, x0), (y0, x0+1), (y0+1, x0), (y0+1, x0+1).
template <typename Acc>
struct DeformSampleStencil {
  int32_t index[4];
  Acc w[4], wy[4], wx[4];
  Acc mask;
};

// The stencil of a sample at (y, x) of a height x width plane, scaled by mask
// (deformable conv's and the DCNv3/v4 aggregation's shared sampling rule).
// outside_index: where a neighbour outside the map points, 0 (a pixel of the
// plane, so readers must not let its value through: outside_map_as_zero) or,
// where the driver has one, a pixel of zeros beside the plane (the CPU
// deformable conv's channels-last copy, index -1: no select per neighbour).
template <typename Acc>
PDCN_HD DeformSampleStencil<Acc> sample_stencil_at(Acc y, Acc x, int64_t height, int64_t width,
                                                   Acc mask, int32_t outside_index = 0) {
  DeformSampleStencil<Acc> st;
  st.mask = mask;
  const BilinearStencil<Acc> s = make_stencil(y, x, height, width);
  const int64_t y1 = s.y0 + 1, x1 = s.x0 + 1;
  const bool in[4] = {s.valid && s.y0 >= 0 && s.x0 >= 0, s.valid && s.y0 >= 0 && x1 < width,
                      s.valid && y1 < height && s.x0 >= 0, s.valid && y1 < height && x1 < width};
  const int64_t idx[4] = {s.y0 * width + s.x0, s.y0 * width + x1, y1 * width + s.x0,
                          y1 * width + x1};
  const Acc hy = Acc(1) - s.ly, hx = Acc(1) - s.lx;
  const Acc w[4] = {hy * hx, hy * s.lx, s.ly * hx, s.ly * s.lx};
  const Acc wy[4] = {-hx, -s.lx, hx, s.lx};
  const Acc wx[4] = {-hy, hy, -s.ly, s.ly};
  for (int i = 0; i < 4; ++i) {
    st.index[i] = in[i] ? static_cast<int32_t>(idx[i]) : outside_index;
    st.w[i] = in[i] ? w[i] : Acc(0);
    st.wy[i] = in[i] ? wy[i] : Acc(0);
    st.wx[i] = in[i] ? wx[i] : Acc(0);
  }
  return st;
}

// A value (or a dot product over values) read at neighbour i, or 0 where the
// neighbour is outside the map (all its factors zero; with outside_index 0 it
// was read at pixel 0 of the plane): a non-finite value there must not turn
// 0 * v into NaN in the samples, or their coordinate gradients, that do not
// touch it. Inside the map one of wx, wy is never zero, so this changes
// nothing there. A select, not a branch (three selects, one per factor, cost
// the aggregation's forward+backward ~10% at InternImage-T stage 1; this one
// measured nothing).
template <typename Acc>
PDCN_HD Acc outside_map_as_zero(const DeformSampleStencil<Acc>& st, int i, Acc d) {
  return (st.wx[i] == Acc(0) && st.wy[i] == Acc(0)) ? Acc(0) : d;
}

}  // namespace pdcn
