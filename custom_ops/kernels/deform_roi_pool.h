// Deformable RoI pooling, RoIAlign-based (DCN v2): geometry and per-element
// math, shared by the CPU driver (deform_roi_pool_cpu.h) and the CUDA driver
// (deform_roi_pool_cuda.cuh).
//
// Layouts (row-major):
//   x          [N, C, H, W]
//   boxes      [K, 4]  (x1, y1, x2, y2) in input-image units, accumulation type
//   roi_batch  [K]     image index of each box (int32)
//   offset     [K, 2, PH, PW]  channel 0 moves a bin along x, channel 1 along y
//              (nullptr: no offset, plain roi_align)
//   out        [K, C, PH, PW]
//
// Semantics (identical to paddle.vision.ops.roi_align when offset is zero):
//   s = aligned ? 0.5 : 0
//   roi_x = x1 * scale - s,  roi_w = x2 * scale - s - roi_x   (at least 1 unless aligned)
//   bin_w = roi_w / PW,  grid_w = sampling_ratio > 0 ? sampling_ratio : ceil(roi_w / PW)
//   bin (i, j) starts at (roi_y + gamma * roi_h * offset[k, 1, i, j] + i * bin_h,
//                         roi_x + gamma * roi_w * offset[k, 0, i, j] + j * bin_w)
//   sample (a, b): y = roi_y' + bin_h * (i + (a + 0.5) / grid_h), x likewise
//   out = sum of bilinear samples (roi_align clamping, margin 1) / (grid_h * grid_w)
// Degenerate boxes (roi size <= 0 with aligned, NaN) have an empty grid and
// pool to zero; the adaptive grid is capped at `max_grid` per axis so that a
// huge box cannot make a kernel run for ever.
#pragma once

#include "bilinear_clamped.h"

namespace pdcn {

struct DeformRoiPoolGeometry {
  int64_t batch, channels, in_h, in_w;  // x
  int64_t num_rois;                     // K
  int64_t pooled_h, pooled_w;           // PH, PW
  int64_t sampling_ratio;               // > 0 fixed grid, else adaptive
  int64_t max_grid;                     // cap of the adaptive grid per axis
  float spatial_scale, gamma;
  bool aligned;

  PDCN_HD int64_t in_plane() const { return in_h * in_w; }
  PDCN_HD int64_t bins() const { return pooled_h * pooled_w; }
  PDCN_HD int64_t out_elements() const { return num_rois * channels * bins(); }
};

// The adaptive-grid cap the bindings use: exact roi_align behaviour for any
// bin up to twice the size of the feature map (and at least 64 samples).
inline int64_t default_max_grid(int64_t in_h, int64_t in_w) {
  const int64_t m = 2 * (in_h > in_w ? in_h : in_w) + 2;
  return m > 64 ? m : 64;
}

template <typename Acc>
struct RoiAlignBox {
  Acc start_y, start_x;    // top-left corner in feature-map pixels
  Acc height, width;       // roi size (the unit of offsets)
  Acc bin_h, bin_w;
  int64_t grid_h, grid_w;  // samples per bin along each axis (0: empty)
  Acc inv_count;           // 1 / max(grid_h * grid_w, 1)
  int64_t image;
};

// ceil(ratio), with NaN and ratio <= 0 giving 0 and huge ratios `cap`.
template <typename Acc>
PDCN_HD int64_t adaptive_grid(Acc ratio, int64_t cap) {
  if (!(ratio > Acc(0))) return 0;
  if (!(ratio < cast<Acc>(cap))) return cap;
  return static_cast<int64_t>(ceil(ratio));
}

template <typename Acc>
PDCN_HD RoiAlignBox<Acc> roi_align_box(const DeformRoiPoolGeometry& g, const Acc* boxes,
                                       const int* roi_batch, int64_t k) {
  RoiAlignBox<Acc> b;
  const Acc scale = cast<Acc>(g.spatial_scale);
  const Acc shift = g.aligned ? Acc(0.5) : Acc(0);
  const Acc* box = boxes + 4 * k;
  b.start_x = box[0] * scale - shift;
  b.start_y = box[1] * scale - shift;
  b.width = box[2] * scale - shift - b.start_x;
  b.height = box[3] * scale - shift - b.start_y;
  if (!g.aligned) {  // written so that a NaN size stays NaN (and the box pools to zero)
    b.width = b.width < Acc(1) ? Acc(1) : b.width;
    b.height = b.height < Acc(1) ? Acc(1) : b.height;
  }
  b.bin_h = b.height / cast<Acc>(g.pooled_h);
  b.bin_w = b.width / cast<Acc>(g.pooled_w);
  if (g.sampling_ratio > 0) {
    b.grid_h = b.grid_w = g.sampling_ratio;
  } else {
    b.grid_h = adaptive_grid(b.height / cast<Acc>(g.pooled_h), g.max_grid);
    b.grid_w = adaptive_grid(b.width / cast<Acc>(g.pooled_w), g.max_grid);
  }
  const int64_t count = b.grid_h * b.grid_w;
  b.inv_count = Acc(1) / cast<Acc>(count > 0 ? count : 1);
  b.image = roi_batch[k];
  if (b.image < 0) {  // a box that boxes_num does not cover (GPU): no samples, zero output
    b.image = 0;
    b.grid_h = b.grid_w = 0;
  }
  return b;
}

// Top-left corner of bin (i, j) of box k, moved by its offset.
template <typename Acc, typename T>
PDCN_HD void roi_bin_origin(const DeformRoiPoolGeometry& g, const RoiAlignBox<Acc>& b,
                            const T* offset, int64_t k, int64_t i, int64_t j, Acc* y, Acc* x) {
  Acc oy = b.start_y, ox = b.start_x;
  if (offset != nullptr) {
    const T* o = offset + k * 2 * g.bins() + i * g.pooled_w + j;
    const Acc gamma = cast<Acc>(g.gamma);
    ox += gamma * b.width * cast<Acc>(o[0]);
    oy += gamma * b.height * cast<Acc>(o[g.bins()]);
  }
  *y = oy;
  *x = ox;
}

// Coordinate of sample a of bin i along one axis: origin + bin * (i + (a + 0.5) / grid).
template <typename Acc>
PDCN_HD Acc roi_sample_coord(Acc origin, Acc bin, int64_t i, int64_t a, int64_t grid) {
  return origin + bin * (cast<Acc>(i) +
                         (cast<Acc>(a) + Acc(0.5)) / cast<Acc>(grid));
}

// roi_align's margin: a sample is zero beyond one pixel outside the map.
template <typename Acc>
PDCN_HD Acc roi_align_margin() {
  return Acc(1);
}

// Calls f(stencil) for every sample of bin (i, j), row-major over the grid;
// (oy, ox) is the moved box corner from roi_bin_origin.
PDCN_HD_CALLS_FUNCTOR
template <typename Acc, typename F>
PDCN_HD void for_each_roi_sample(const DeformRoiPoolGeometry& g, const RoiAlignBox<Acc>& b,
                                 Acc oy, Acc ox, int64_t i, int64_t j, const F& f) {
  for (int64_t a = 0; a < b.grid_h; ++a) {
    const Acc y = roi_sample_coord(oy, b.bin_h, i, a, b.grid_h);
    for (int64_t c = 0; c < b.grid_w; ++c) {
      const Acc x = roi_sample_coord(ox, b.bin_w, j, c, b.grid_w);
      f(make_clamped_stencil(y, x, g.in_h, g.in_w, roi_align_margin<Acc>()));
    }
  }
}

// out[k, c, i, j].
PDCN_HD_CALLS_FUNCTOR
template <typename T, typename Acc = acc_t<T>>
PDCN_HD void deform_roi_pool_forward_element(const DeformRoiPoolGeometry& g, const T* x,
                                             const Acc* boxes, const int* roi_batch,
                                             const T* offset, T* out, int64_t k, int64_t c,
                                             int64_t i, int64_t j) {
  const RoiAlignBox<Acc> b = roi_align_box(g, boxes, roi_batch, k);
  Acc oy, ox;
  roi_bin_origin(g, b, offset, k, i, j, &oy, &ox);
  const T* plane = x + (b.image * g.channels + c) * g.in_plane();
  Acc sum = 0;
  for_each_roi_sample(g, b, oy, ox, i, j, [&](const ClampedStencil<Acc>& s) {
    sum += clamped_sample(s, plane, g.in_w);
  });
  out[((k * g.channels + c) * g.pooled_h + i) * g.pooled_w + j] = cast<T>(sum * b.inv_count);
}

// Scatters grad_out[k, c, i, j] into the input-gradient plane of (image, c):
// add(index_in_plane, value); the caller owns the plane or adds atomically.
PDCN_HD_CALLS_FUNCTOR
template <typename T, typename Add, typename Acc = acc_t<T>>
PDCN_HD void deform_roi_pool_backward_x_element(const DeformRoiPoolGeometry& g, const T* grad_out,
                                                const Acc* boxes, const int* roi_batch,
                                                const T* offset, int64_t k, int64_t c, int64_t i,
                                                int64_t j, const Add& add) {
  const Acc go =
      cast<Acc>(grad_out[((k * g.channels + c) * g.pooled_h + i) * g.pooled_w + j]);
  if (go == Acc(0)) return;
  const RoiAlignBox<Acc> b = roi_align_box(g, boxes, roi_batch, k);
  const Acc gb = go * b.inv_count;
  Acc oy, ox;
  roi_bin_origin(g, b, offset, k, i, j, &oy, &ox);
  for_each_roi_sample(g, b, oy, ox, i, j, [&](const ClampedStencil<Acc>& s) {
    if (!s.valid) return;
    Acc w[4];
    int64_t idx[4];
    clamped_weights(s, w);
    clamped_indices(s, g.in_w, idx);
    for (int t = 0; t < 4; ++t) add(idx[t], w[t] * gb);
  });
}

// d loss / d offset from the summed sample derivatives of a bin. A bin with
// no valid sample has a zero gradient, even when the box size is NaN.
template <typename Acc>
PDCN_HD Acc roi_offset_grad_scale(const DeformRoiPoolGeometry& g, Acc summed, Acc roi_size,
                                  Acc inv_count) {
  if (summed == Acc(0)) return Acc(0);
  return summed * cast<Acc>(g.gamma) * roi_size * inv_count;
}

// grad_offset[k, :, i, j]: sums over the channels; each call owns its outputs.
PDCN_HD_CALLS_FUNCTOR
template <typename T, typename Acc = acc_t<T>>
PDCN_HD void deform_roi_pool_offset_grad_element(const DeformRoiPoolGeometry& g,
                                                 const T* grad_out, const T* x, const Acc* boxes,
                                                 const int* roi_batch, const T* offset,
                                                 T* grad_offset, int64_t k, int64_t i, int64_t j) {
  const RoiAlignBox<Acc> b = roi_align_box(g, boxes, roi_batch, k);
  Acc oy, ox;
  roi_bin_origin(g, b, offset, k, i, j, &oy, &ox);
  const int64_t bin = i * g.pooled_w + j;
  const T* gout = grad_out + k * g.channels * g.bins() + bin;
  const T* image = x + b.image * g.channels * g.in_plane();
  Acc gy = 0, gx = 0;
  for_each_roi_sample(g, b, oy, ox, i, j, [&](const ClampedStencil<Acc>& s) {
    if (!s.valid || !(s.y_free || s.x_free)) return;
    Acc dy[4], dx[4];
    int64_t idx[4];
    clamped_weight_derivatives(s, dy, dx);
    clamped_indices(s, g.in_w, idx);
    for (int64_t c = 0; c < g.channels; ++c) {
      const Acc go = cast<Acc>(gout[c * g.bins()]);
      // as the CPU driver and the PS kernel: a channel of zero gradient adds nothing (an
      // inf in its input would make 0*inf = NaN of the offset gradient)
      if (go == Acc(0)) continue;
      const T* plane = image + c * g.in_plane();
      Acc vy = 0, vx = 0;
      for (int t = 0; t < 4; ++t) {
        const Acc v = cast<Acc>(plane[idx[t]]);
        vy += dy[t] * v;
        vx += dx[t] * v;
      }
      gy += go * vy;
      gx += go * vx;
    }
  });
  T* o = grad_offset + k * 2 * g.bins() + bin;
  o[0] = cast<T>(roi_offset_grad_scale(g, gx, b.width, b.inv_count));
  o[g.bins()] = cast<T>(roi_offset_grad_scale(g, gy, b.height, b.inv_count));
}

}  // namespace pdcn
