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
// neighbour indices in the plane (clamped to 0 where the neighbour is outside,
// with its weights zeroed), the bilinear weights, their derivatives with
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
template <typename Acc>
PDCN_HD DeformSampleStencil<Acc> sample_stencil_at(Acc y, Acc x, int64_t height, int64_t width,
                                                   Acc mask) {
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
    st.index[i] = in[i] ? static_cast<int32_t>(idx[i]) : 0;
    st.w[i] = in[i] ? w[i] : Acc(0);
    st.wy[i] = in[i] ? wy[i] : Acc(0);
    st.wx[i] = in[i] ? wx[i] : Acc(0);
  }
  return st;
}

}  // namespace pdcn
