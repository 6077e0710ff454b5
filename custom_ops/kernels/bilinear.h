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

}  // namespace pdcn
