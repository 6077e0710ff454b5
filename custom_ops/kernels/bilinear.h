// The one bilinear sample of deformable convolution and its gradients.
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

// The four neighbour values (zero outside the map): v[0] top-left, v[1]
// top-right, v[2] bottom-left, v[3] bottom-right.
template <typename Acc, typename T>
PDCN_HD void stencil_values(const BilinearStencil<Acc>& s, const T* plane, int64_t height,
                            int64_t width, Acc v[4]) {
  const int64_t y1 = s.y0 + 1, x1 = s.x0 + 1;
  const bool top = s.y0 >= 0, bottom = y1 < height, left = s.x0 >= 0, right = x1 < width;
  v[0] = (top && left) ? static_cast<Acc>(plane[s.y0 * width + s.x0]) : Acc(0);
  v[1] = (top && right) ? static_cast<Acc>(plane[s.y0 * width + x1]) : Acc(0);
  v[2] = (bottom && left) ? static_cast<Acc>(plane[y1 * width + s.x0]) : Acc(0);
  v[3] = (bottom && right) ? static_cast<Acc>(plane[y1 * width + x1]) : Acc(0);
}

template <typename Acc>
PDCN_HD Acc stencil_blend(const BilinearStencil<Acc>& s, const Acc v[4]) {
  const Acc hy = Acc(1) - s.ly, hx = Acc(1) - s.lx;
  return hy * hx * v[0] + hy * s.lx * v[1] + s.ly * hx * v[2] + s.ly * s.lx * v[3];
}

// Bilinear sample of a [height, width] plane at (y, x).
template <typename Acc, typename T>
PDCN_HD Acc bilinear_sample(const T* plane, int64_t height, int64_t width, Acc y, Acc x) {
  const BilinearStencil<Acc> s = make_stencil(y, x, height, width);
  if (!s.valid) return Acc(0);
  Acc v[4];
  stencil_values(s, plane, height, width, v);
  return stencil_blend(s, v);
}

// Sample value and its derivatives with respect to y and x.
template <typename Acc, typename T>
PDCN_HD Acc bilinear_sample_and_grad(const T* plane, int64_t height, int64_t width, Acc y, Acc x,
                                     Acc* d_dy, Acc* d_dx) {
  const BilinearStencil<Acc> s = make_stencil(y, x, height, width);
  if (!s.valid) {
    *d_dy = *d_dx = Acc(0);
    return Acc(0);
  }
  Acc v[4];
  stencil_values(s, plane, height, width, v);
  const Acc hy = Acc(1) - s.ly, hx = Acc(1) - s.lx;
  *d_dy = hx * (v[2] - v[0]) + s.lx * (v[3] - v[1]);
  *d_dx = hy * (v[1] - v[0]) + s.ly * (v[3] - v[2]);
  return stencil_blend(s, v);
}

// Distributes `grad` of one sample at (y, x) onto the in-map neighbours:
// add(index_in_plane, weighted_grad). The caller decides how to add (plain
// += on a plane it owns, or an atomic add).
template <typename Acc, typename Add>
PDCN_HD void bilinear_scatter(int64_t height, int64_t width, Acc y, Acc x, Acc grad,
                              const Add& add) {
  const BilinearStencil<Acc> s = make_stencil(y, x, height, width);
  if (!s.valid) return;
  const int64_t y1 = s.y0 + 1, x1 = s.x0 + 1;
  const bool top = s.y0 >= 0, bottom = y1 < height, left = s.x0 >= 0, right = x1 < width;
  const Acc hy = Acc(1) - s.ly, hx = Acc(1) - s.lx;
  if (top && left) add(s.y0 * width + s.x0, hy * hx * grad);
  if (top && right) add(s.y0 * width + x1, hy * s.lx * grad);
  if (bottom && left) add(y1 * width + s.x0, s.ly * hx * grad);
  if (bottom && right) add(y1 * width + x1, s.ly * s.lx * grad);
}

}  // namespace pdcn
