// Deformable position-sensitive RoI pooling (the R-FCN head of DCN v1):
// geometry and per-element math, shared by the CPU driver
// (deform_psroi_pool_cpu.h) and the CUDA driver (deform_psroi_pool_cuda.cuh).
//
// Layouts (row-major):
//   x          [N, OC * PH * PW, H, W], channel (c, i, j) = (c * PH + i) * PW + j
//   boxes      [K, 4]  (x1, y1, x2, y2) in input-image units, accumulation type
//   roi_batch  [K]     image index of each box (int32)
//   offset     [K, 2 * G, PART_H, PART_W]  per offset group g (OC / G output
//              channels each) an (x, y) pair per part cell (nullptr: none)
//   out        [K, OC, PH, PW]
//
// Semantics (DCN v1's deformable_psroi_pooling, group size = output size):
//   roi_x = round(x1) * scale - 0.5,  roi_w = max((round(x2) + 1) * scale - 0.5 - roi_x, 0.1)
//   bin_w = roi_w / PW,  sub_w = bin_w / S   (S = sample_per_part)
//   part cell of bin (i, j): (i * PART_H / PH, j * PART_W / PW)  (integer division)
//   bin (i, j) of output channel c starts at
//     (roi_y + i * bin_h + trans_std * roi_h * offset[k, 2g + 1, cell],
//      roi_x + j * bin_w + trans_std * roi_w * offset[k, 2g, cell]),  g = c / (OC / G)
//   samples (a, b) at start + (a * sub_h, b * sub_w), a, b in [0, S);
//   samples outside [-0.5, H - 0.5] x [-0.5, W - 0.5] are skipped, the rest
//   clamped onto the map and bilinearly sampled from input channel (c, i, j);
//   out = mean of the kept samples (0 when none is kept).
#pragma once

#include "bilinear_clamped.h"

namespace pdcn {

struct DeformPSRoiPoolGeometry {
  int64_t batch, in_channels, in_h, in_w;  // x; in_channels = out_channels * PH * PW
  int64_t num_rois;                        // K
  int64_t out_channels;                    // OC
  int64_t pooled_h, pooled_w;              // PH, PW
  int64_t part_h, part_w;                  // offset grid
  int64_t offset_groups;                   // G (ignored without offset)
  int64_t sample_per_part;                 // S
  float spatial_scale, trans_std;

  PDCN_HD int64_t in_plane() const { return in_h * in_w; }
  PDCN_HD int64_t bins() const { return pooled_h * pooled_w; }
  PDCN_HD int64_t parts() const { return part_h * part_w; }
  PDCN_HD int64_t out_elements() const { return num_rois * out_channels * bins(); }
  PDCN_HD int64_t channels_per_group() const { return out_channels / offset_groups; }
};

template <typename Acc>
struct PSRoiBox {
  Acc start_y, start_x;  // top-left corner in feature-map pixels
  Acc height, width;     // roi size (the unit of offsets)
  Acc bin_h, bin_w, sub_h, sub_w;
  int64_t image;
};

PDCN_HD float round_acc(float v) { return roundf(v); }
PDCN_HD double round_acc(double v) { return ::round(v); }

template <typename Acc>
PDCN_HD PSRoiBox<Acc> psroi_box(const DeformPSRoiPoolGeometry& g, const Acc* boxes,
                                const int* roi_batch, int64_t k) {
  PSRoiBox<Acc> b;
  const Acc scale = cast<Acc>(g.spatial_scale);
  const Acc* box = boxes + 4 * k;
  b.start_x = round_acc(box[0]) * scale - Acc(0.5);
  b.start_y = round_acc(box[1]) * scale - Acc(0.5);
  const Acc w = (round_acc(box[2]) + Acc(1)) * scale - Acc(0.5) - b.start_x;
  const Acc h = (round_acc(box[3]) + Acc(1)) * scale - Acc(0.5) - b.start_y;
  b.width = w < Acc(0.1) ? Acc(0.1) : w;  // a NaN size stays NaN: no sample is kept
  b.height = h < Acc(0.1) ? Acc(0.1) : h;
  b.bin_h = b.height / cast<Acc>(g.pooled_h);
  b.bin_w = b.width / cast<Acc>(g.pooled_w);
  b.sub_h = b.bin_h / cast<Acc>(g.sample_per_part);
  b.sub_w = b.bin_w / cast<Acc>(g.sample_per_part);
  b.image = roi_batch[k];
  if (b.image < 0) {  // a box that boxes_num does not cover (GPU): no sample is kept
    b.image = 0;
    b.start_x = b.start_y = cast<Acc>(NAN);
  }
  return b;
}

// Index of the x-shift of (box k, output channel c, bin (i, j)) in offset; the
// y-shift follows parts() elements later.
PDCN_HD int64_t psroi_offset_index(const DeformPSRoiPoolGeometry& g, int64_t k, int64_t c,
                                   int64_t i, int64_t j) {
  const int64_t group = c / g.channels_per_group();
  const int64_t py = i * g.part_h / g.pooled_h, px = j * g.part_w / g.pooled_w;
  return (k * g.offset_groups + group) * 2 * g.parts() + py * g.part_w + px;
}

template <typename Acc, typename T>
PDCN_HD void psroi_bin_origin(const DeformPSRoiPoolGeometry& g, const PSRoiBox<Acc>& b,
                              const T* offset, int64_t k, int64_t c, int64_t i, int64_t j,
                              Acc* y, Acc* x) {
  Acc oy = cast<Acc>(i) * b.bin_h + b.start_y;
  Acc ox = cast<Acc>(j) * b.bin_w + b.start_x;
  if (offset != nullptr) {
    const T* o = offset + psroi_offset_index(g, k, c, i, j);
    const Acc ts = cast<Acc>(g.trans_std);
    ox += cast<Acc>(o[0]) * ts * b.width;
    oy += cast<Acc>(o[g.parts()]) * ts * b.height;
  }
  *y = oy;
  *x = ox;
}

// Calls f(stencil) for every kept sample of a bin starting at (oy, ox),
// row-major over the S x S sub-grid; returns the number of kept samples.
PDCN_HD_CALLS_FUNCTOR
template <typename Acc, typename F>
PDCN_HD int64_t for_each_psroi_sample(const DeformPSRoiPoolGeometry& g, const PSRoiBox<Acc>& b,
                                      Acc oy, Acc ox, const F& f) {
  int64_t kept = 0;
  for (int64_t a = 0; a < g.sample_per_part; ++a) {
    const Acc y = oy + cast<Acc>(a) * b.sub_h;
    for (int64_t c = 0; c < g.sample_per_part; ++c) {
      const Acc x = ox + cast<Acc>(c) * b.sub_w;
      const ClampedStencil<Acc> s = make_clamped_stencil(y, x, g.in_h, g.in_w, Acc(0.5));
      if (!s.valid) continue;
      ++kept;
      f(s);
    }
  }
  return kept;
}

PDCN_HD int64_t psroi_input_channel(const DeformPSRoiPoolGeometry& g, int64_t c, int64_t i,
                                    int64_t j) {
  return (c * g.pooled_h + i) * g.pooled_w + j;
}

// out[k, c, i, j].
PDCN_HD_CALLS_FUNCTOR
template <typename T, typename Acc = acc_t<T>>
PDCN_HD void deform_psroi_pool_forward_element(const DeformPSRoiPoolGeometry& g, const T* x,
                                               const Acc* boxes, const int* roi_batch,
                                               const T* offset, T* out, int64_t k, int64_t c,
                                               int64_t i, int64_t j) {
  const PSRoiBox<Acc> b = psroi_box(g, boxes, roi_batch, k);
  Acc oy, ox;
  psroi_bin_origin(g, b, offset, k, c, i, j, &oy, &ox);
  const T* plane = x + (b.image * g.in_channels + psroi_input_channel(g, c, i, j)) * g.in_plane();
  Acc sum = 0;
  const int64_t kept = for_each_psroi_sample(
      g, b, oy, ox, [&](const ClampedStencil<Acc>& s) { sum += clamped_sample(s, plane, g.in_w); });
  out[((k * g.out_channels + c) * g.pooled_h + i) * g.pooled_w + j] =
      cast<T>(kept > 0 ? sum / cast<Acc>(kept) : Acc(0));
}

// Scatters grad_out[k, c, i, j] into the gradient plane of input channel
// (c, i, j) of the box's image: add(index_in_plane, value).
PDCN_HD_CALLS_FUNCTOR
template <typename T, typename Add, typename Acc = acc_t<T>>
PDCN_HD void deform_psroi_pool_backward_x_element(const DeformPSRoiPoolGeometry& g,
                                                  const T* grad_out, const Acc* boxes,
                                                  const int* roi_batch, const T* offset,
                                                  int64_t k, int64_t c, int64_t i, int64_t j,
                                                  const Add& add) {
  const Acc go =
      cast<Acc>(grad_out[((k * g.out_channels + c) * g.pooled_h + i) * g.pooled_w + j]);
  if (go == Acc(0)) return;
  const PSRoiBox<Acc> b = psroi_box(g, boxes, roi_batch, k);
  Acc oy, ox;
  psroi_bin_origin(g, b, offset, k, c, i, j, &oy, &ox);
  const int64_t kept = for_each_psroi_sample(g, b, oy, ox, [](const ClampedStencil<Acc>&) {});
  if (kept == 0) return;
  const Acc gb = go / cast<Acc>(kept);
  for_each_psroi_sample(g, b, oy, ox, [&](const ClampedStencil<Acc>& s) {
    Acc w[4];
    int64_t idx[4];
    clamped_weights(s, w);
    clamped_indices(s, g.in_w, idx);
    for (int t = 0; t < 4; ++t) add(idx[t], w[t] * gb);
  });
}

// d loss / d (x-shift, y-shift) through output element (k, c, i, j), before
// the trans_std * roi size factor is applied: the caller sums these over the
// elements that share an offset entry.
PDCN_HD_CALLS_FUNCTOR
template <typename T, typename Acc = acc_t<T>>
PDCN_HD void deform_psroi_pool_offset_grad_element(const DeformPSRoiPoolGeometry& g,
                                                   const T* grad_out, const T* x,
                                                   const PSRoiBox<Acc>& b, const T* offset,
                                                   int64_t k, int64_t c, int64_t i, int64_t j,
                                                   Acc* gx, Acc* gy) {
  *gx = *gy = Acc(0);
  const Acc go =
      cast<Acc>(grad_out[((k * g.out_channels + c) * g.pooled_h + i) * g.pooled_w + j]);
  if (go == Acc(0)) return;
  Acc oy, ox;
  psroi_bin_origin(g, b, offset, k, c, i, j, &oy, &ox);
  const T* plane = x + (b.image * g.in_channels + psroi_input_channel(g, c, i, j)) * g.in_plane();
  Acc sy = 0, sx = 0;
  const int64_t kept = for_each_psroi_sample(g, b, oy, ox, [&](const ClampedStencil<Acc>& s) {
    Acc v[4], dy[4], dx[4];
    clamped_values(s, plane, g.in_w, v);
    clamped_weight_derivatives(s, dy, dx);
    sy += dy[0] * v[0] + dy[1] * v[1] + dy[2] * v[2] + dy[3] * v[3];
    sx += dx[0] * v[0] + dx[1] * v[1] + dx[2] * v[2] + dx[3] * v[3];
  });
  if (kept == 0) return;
  const Acc scale = go / cast<Acc>(kept);
  *gx = sx * scale;
  *gy = sy * scale;
}

// grad_offset[k, 2g + (0, 1), py, px]: sums the elements that use this entry
// (output channels of group g, bins whose part cell is (py, px)). Each call
// owns its two outputs.
template <typename T, typename Acc = acc_t<T>>
PDCN_HD void deform_psroi_pool_offset_grad_entry(const DeformPSRoiPoolGeometry& g,
                                                 const T* grad_out, const T* x, const Acc* boxes,
                                                 const int* roi_batch, const T* offset,
                                                 T* grad_offset, int64_t k, int64_t group,
                                                 int64_t py, int64_t px) {
  const PSRoiBox<Acc> b = psroi_box(g, boxes, roi_batch, k);
  const int64_t cpg = g.channels_per_group();
  Acc gx = 0, gy = 0;
  for (int64_t i = 0; i < g.pooled_h; ++i) {
    if (i * g.part_h / g.pooled_h != py) continue;
    for (int64_t j = 0; j < g.pooled_w; ++j) {
      if (j * g.part_w / g.pooled_w != px) continue;
      for (int64_t c = group * cpg; c < (group + 1) * cpg; ++c) {
        Acc ex, ey;
        deform_psroi_pool_offset_grad_element(g, grad_out, x, b, offset, k, c, i, j, &ex, &ey);
        gx += ex;
        gy += ey;
      }
    }
  }
  // An entry that no kept sample uses has a zero gradient, even for a NaN box.
  const Acc ts = cast<Acc>(g.trans_std);
  T* o = grad_offset + (k * g.offset_groups + group) * 2 * g.parts() + py * g.part_w + px;
  o[0] = cast<T>(gx == Acc(0) ? Acc(0) : gx * ts * b.width);
  o[g.parts()] = cast<T>(gy == Acc(0) ? Acc(0) : gy * ts * b.height);
}

}  // namespace pdcn
