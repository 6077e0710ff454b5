// The bilinear sample of RoI pooling: RoIAlign's edge convention.
//
// Unlike the zero-padded sample of deformable convolution (bilinear.h), a
// sample within `margin` outside the map is clamped onto the border:
//   valid  <=>  -margin <= y <= (H - 1) + margin  and the same for x
//   y' = min(max(y, 0), H - 1),  y0 = floor(y'),  y1 = min(y0 + 1, H - 1)
// and blended from the four (always in-map) neighbours of (y', x').
// margin = 1 is Paddle's / Caffe2's roi_align (-1 <= y <= H); margin = 0.5 is
// the position-sensitive pooling of the DCN v1 R-FCN head (-0.5 <= y <= H - 0.5).
// What an invalid sample means (a zero counted in the average, or a skipped
// sample) is the caller's choice.
//
// The derivative along a clamped coordinate is zero (the value does not move);
// `y_free` / `x_free` say whether the coordinate was strictly inside
// (0, H - 1). The range test is written so that NaN fails it: non-finite and
// huge coordinates never reach the float->int conversion.
#pragma once

#include "common.h"

namespace pdcn {

template <typename Acc>
struct ClampedStencil {
  int64_t y0, x0, y1, x1;  // neighbours, inside the map when valid
  Acc hy, hx;              // weights of row y0 / column x0
  Acc ly, lx;              // weights of row y1 / column x1 (1 - hy, 1 - hx)
  bool valid;              // false: no sample (zero value, zero gradient)
  bool y_free, x_free;     // false: that coordinate was clamped (zero derivative)
};

// One axis of the stencil: clamp, split into neighbours and weights.
template <typename Acc>
PDCN_HD void clamped_axis(Acc v, int64_t size, int64_t* lo, int64_t* hi, Acc* w_lo, Acc* w_hi,
                          bool* free) {
  *free = (v > Acc(0)) && (v < Acc(size - 1));
  Acc c = v <= Acc(0) ? Acc(0) : v;
  int64_t l = static_cast<int64_t>(c);  // c >= 0: truncation is floor
  int64_t h;
  if (l >= size - 1) {
    l = h = size - 1;
    c = cast<Acc>(l);
  } else {
    h = l + 1;
  }
  *lo = l;
  *hi = h;
  *w_lo = cast<Acc>(h) - c;  // h - c: as Paddle's roi_align computes it
  *w_hi = Acc(1) - *w_lo;
}

// Whether a coordinate is inside [-margin, size - 1 + margin] (NaN is not).
// A sample is valid when both of its coordinates are: validity is separable.
template <typename Acc>
PDCN_HD bool clamped_axis_valid(Acc v, int64_t size, Acc margin) {
  return (v >= -margin) && (v <= Acc(size - 1) + margin);
}

template <typename Acc>
PDCN_HD ClampedStencil<Acc> make_clamped_stencil(Acc y, Acc x, int64_t height, int64_t width,
                                                 Acc margin) {
  ClampedStencil<Acc> s;
  s.valid = clamped_axis_valid(y, height, margin) && clamped_axis_valid(x, width, margin);
  if (!s.valid) {
    s.y0 = s.x0 = s.y1 = s.x1 = 0;
    s.hy = s.hx = s.ly = s.lx = Acc(0);
    s.y_free = s.x_free = false;
    return s;
  }
  clamped_axis(y, height, &s.y0, &s.y1, &s.hy, &s.ly, &s.y_free);
  clamped_axis(x, width, &s.x0, &s.x1, &s.hx, &s.lx, &s.x_free);
  return s;
}

// The four neighbour values: v[0] (y0, x0), v[1] (y0, x1), v[2] (y1, x0), v[3] (y1, x1).
template <typename Acc, typename T>
PDCN_HD void clamped_values(const ClampedStencil<Acc>& s, const T* plane, int64_t width,
                            Acc v[4]) {
  v[0] = cast<Acc>(plane[s.y0 * width + s.x0]);
  v[1] = cast<Acc>(plane[s.y0 * width + s.x1]);
  v[2] = cast<Acc>(plane[s.y1 * width + s.x0]);
  v[3] = cast<Acc>(plane[s.y1 * width + s.x1]);
}

// Bilinear weights of v[0..3]; all zero for an invalid stencil.
template <typename Acc>
PDCN_HD void clamped_weights(const ClampedStencil<Acc>& s, Acc w[4]) {
  w[0] = s.hy * s.hx;
  w[1] = s.hy * s.lx;
  w[2] = s.ly * s.hx;
  w[3] = s.ly * s.lx;
}

// Derivatives of the weights with respect to y and x (zero along a clamped axis).
template <typename Acc>
PDCN_HD void clamped_weight_derivatives(const ClampedStencil<Acc>& s, Acc dy[4], Acc dx[4]) {
  const Acc fy = s.y_free ? Acc(1) : Acc(0), fx = s.x_free ? Acc(1) : Acc(0);
  dy[0] = -fy * s.hx;
  dy[1] = -fy * s.lx;
  dy[2] = fy * s.hx;
  dy[3] = fy * s.lx;
  dx[0] = -fx * s.hy;
  dx[1] = fx * s.hy;
  dx[2] = -fx * s.ly;
  dx[3] = fx * s.ly;
}

// Flat in-plane indices of the four neighbours.
template <typename Acc>
PDCN_HD void clamped_indices(const ClampedStencil<Acc>& s, int64_t width, int64_t idx[4]) {
  idx[0] = s.y0 * width + s.x0;
  idx[1] = s.y0 * width + s.x1;
  idx[2] = s.y1 * width + s.x0;
  idx[3] = s.y1 * width + s.x1;
}

template <typename Acc, typename T>
PDCN_HD Acc clamped_sample(const ClampedStencil<Acc>& s, const T* plane, int64_t width) {
  if (!s.valid) return Acc(0);
  Acc v[4], w[4];
  clamped_values(s, plane, width, v);
  clamped_weights(s, w);
  return w[0] * v[0] + w[1] * v[1] + w[2] * v[2] + w[3] * v[3];
}

}  // namespace pdcn
