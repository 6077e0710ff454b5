// DCNv3 / DCNv4 aggregation ("deform_aggregate"): geometry and per-element
// math, shared by the CPU driver (deform_aggregate_cpu.h) and the CUDA driver
// (deform_aggregate_cuda.cuh).
//
// Per output pixel p and channel group g, the group samples the input at K
// deformed kernel points and sums the samples weighted by per-point
// aggregation weights m (softmax-normalised by the DCNv3 layer, free in
// DCNv4; the op takes them as given):
//   out[n, p, g, c] = sum_k m[n, p, g, k] * bilinear(value[n, :, :, g, c], pos(n, p, g, k))
// Layouts, channels-last and row-major (InternImage's):
//   value  [N, H, W, G, C]
//   offset [N, Ho, Wo, G, K, 2]   (dx then dy, in input pixels)
//   weight [N, Ho, Wo, G, K]
//   out    [N, Ho, Wo, G, C]
// or DCNv4's fused layout, offsets and weights in one tensor [N, Ho, Wo, S]
// holding per group 2K offsets then K weights (S >= G*3K, padding unused):
// the geometry's strides say which (fused: offset and weight point to the
// same tensor, the weights start 2K elements into each group's slice).
// Kernel point k = iw * kernel_h + ih (InternImage's order: the kernel's
// column index is the outer one). With cw = (dilation_w * (kernel_w - 1)) / 2
// (integer division) and s = offset_scale, output pixel (i, j) samples
//   x = j*stride_w - pad_w + cw + s * (iw*dilation_w - cw + dx)
//   y = i*stride_h - pad_h + ch + s * (ih*dilation_h - ch + dy)
// (s = 1: the plain deformable-conv sampling grid). The sampling rule is
// deformable conv's (bilinear.h): a neighbour outside the map is zero, a
// non-finite or huge position gives a zero sample. An empty input plane (H or
// W zero, the output not empty through the padding) has nothing to sample:
// the drivers write a zero output and zero offset / weight gradients without
// running the per-element math (whose outside-map neighbours point at pixel
// 0, which that plane does not have).
#pragma once

#include <cfloat>

#include "bilinear.h"

namespace pdcn {

struct AggregateGeometry {
  int64_t batch, in_h, in_w, groups, group_channels, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  double offset_scale;
  // Strides of offset (in offset pairs' elements) and weight per output pixel
  // and per group: separate layouts (G*2K, 2K) and (G*K, K); fused (S, 3K).
  int64_t offset_pixel_stride, offset_group_stride, weight_pixel_stride, weight_group_stride;
  int64_t weight_start;  // of each group's weights in its slice: 0, or 2K when fused

  // Separate offset / weight tensors (the strides of the DCNv3 layouts).
  PDCN_HD void set_separate_layout() {
    offset_pixel_stride = groups * 2 * kernel_size();
    offset_group_stride = 2 * kernel_size();
    weight_pixel_stride = groups * kernel_size();
    weight_group_stride = kernel_size();
    weight_start = 0;
  }
  // One fused tensor of `width` channels per pixel (DCNv4).
  PDCN_HD void set_fused_layout(int64_t width) {
    offset_pixel_stride = weight_pixel_stride = width;
    offset_group_stride = weight_group_stride = 3 * kernel_size();
    weight_start = 2 * kernel_size();
  }

  PDCN_HD int64_t kernel_size() const { return kernel_h * kernel_w; }
  // The kernel's centre offsets ch, cw of the sampling grid (integer division).
  PDCN_HD int64_t center_h() const { return (dilation_h * (kernel_h - 1)) / 2; }
  PDCN_HD int64_t center_w() const { return (dilation_w * (kernel_w - 1)) / 2; }
  PDCN_HD int64_t out_plane() const { return out_h * out_w; }
  PDCN_HD int64_t in_plane() const { return in_h * in_w; }
  PDCN_HD int64_t channels() const { return groups * group_channels; }
  PDCN_HD int64_t value_elements() const { return batch * in_plane() * channels(); }
  PDCN_HD int64_t out_elements() const { return batch * out_plane() * channels(); }
  // Elements of the offset / weight tensors (the same fused tensor when fused).
  PDCN_HD int64_t offset_elements() const { return batch * out_plane() * offset_pixel_stride; }
  PDCN_HD int64_t weight_elements() const { return batch * out_plane() * weight_pixel_stride; }
  // Index of the dx of (n, p, g, k) in offset (dy follows), and of its weight.
  PDCN_HD int64_t offset_index(int64_t n, int64_t p, int64_t g, int64_t k) const {
    return (n * out_plane() + p) * offset_pixel_stride + g * offset_group_stride + 2 * k;
  }
  PDCN_HD int64_t weight_index(int64_t n, int64_t p, int64_t g, int64_t k) const {
    return (n * out_plane() + p) * weight_pixel_stride + g * weight_group_stride + weight_start + k;
  }
  // Index of (n, pixel, g, c = 0) in value (pixel in the input plane) or out.
  PDCN_HD int64_t value_base(int64_t n, int64_t pixel, int64_t g) const {
    return ((n * in_plane() + pixel) * groups + g) * group_channels;
  }
  PDCN_HD int64_t out_base(int64_t n, int64_t p, int64_t g) const {
    return ((n * out_plane() + p) * groups + g) * group_channels;
  }
};

// The sampling grid before the offsets, split so that drivers walking pixels
// and kernel points in loops can hoist each part: the sample of output pixel
// (i, j) and kernel point (ih, iw) is at
//   x = pixel.x + s * (point.x + dx),  y = pixel.y + s * (point.y + dy)
// with pixel.x = j*stride_w - pad_w + cw, point.x = iw*dilation_w - cw (y alike).
template <typename Acc>
struct AggregateOrigin {
  Acc y, x;
};

template <typename Acc>
PDCN_HD AggregateOrigin<Acc> aggregate_pixel_origin(const AggregateGeometry& g, int64_t i, int64_t j) {
  return {static_cast<Acc>(i * g.stride_h - g.pad_h + g.center_h()),
          static_cast<Acc>(j * g.stride_w - g.pad_w + g.center_w())};
}

// Of kernel point k = iw * kernel_h + ih.
template <typename Acc>
PDCN_HD AggregateOrigin<Acc> aggregate_point_origin(const AggregateGeometry& g, int64_t k) {
  const int64_t iw = k / g.kernel_h, ih = k - (k / g.kernel_h) * g.kernel_h;
  return {static_cast<Acc>(ih * g.dilation_h - g.center_h()),
          static_cast<Acc>(iw * g.dilation_w - g.center_w())};
}

// The stencil of one sample from its origins, its offset pair (dx, dy) and its
// aggregation weight (the stencil's mask).
template <typename Acc, typename T>
PDCN_HD DeformSampleStencil<Acc> aggregate_stencil_at(const AggregateGeometry& g,
                                                      AggregateOrigin<Acc> pixel,
                                                      AggregateOrigin<Acc> point,
                                                      const T* offset_pair, T weight) {
  const Acc s = static_cast<Acc>(g.offset_scale);
  const Acc x = pixel.x + s * (point.x + cast<Acc>(offset_pair[0]));
  const Acc y = pixel.y + s * (point.y + cast<Acc>(offset_pair[1]));
  return sample_stencil_at(y, x, g.in_h, g.in_w, cast<Acc>(weight));
}

// The sample of kernel point k of (n, p, grp): stencil with the aggregation
// weight as its mask.
template <typename Acc, typename T>
PDCN_HD DeformSampleStencil<Acc> aggregate_stencil(const AggregateGeometry& g, const T* offset,
                                                   const T* weight, int64_t n, int64_t p,
                                                   int64_t grp, int64_t k) {
  const int64_t i = p / g.out_w, j = p - (p / g.out_w) * g.out_w;
  return aggregate_stencil_at<Acc>(g, aggregate_pixel_origin<Acc>(g, i, j), aggregate_point_origin<Acc>(g, k),
                                   offset + g.offset_index(n, p, grp, k),
                                   weight[g.weight_index(n, p, grp, k)]);
}

// o[0 .. nc) = sum_k over the K samples stencil_of(k) of one (pixel, group),
// for nc <= CB channels of a block: base points at the block's first channel
// in pixel 0 of the group's value plane. The drivers' channel block shares the
// K stencils among its channels (DCNv4's observation). A neighbour of zero
// weight (outside the map, or the sample's mask zero) adds nothing, even where
// the value it would scale is not finite: with zero_row (nc zeros; the CPU
// driver's) it reads zero_row instead of the value, a pointer select and no
// branch (a data-dependent branch per neighbour cost more than the multiply-adds
// at few channels per group: op forward 1.31 -> 1.06 ms at InternImage-T
// stage 1, 1.9 -> 1.25 at dcnv3_r50 conv3_x); without it (CUDA) it is skipped.
PDCN_HD_CALLS_FUNCTOR
template <int CB, typename T, typename Acc, typename StencilOf>
PDCN_HD void aggregate_forward_channels(int64_t K, const StencilOf& stencil_of, const T* base,
                                        int64_t pixel_stride, int nc, T* o,
                                        const T* zero_row = nullptr) {
  Acc acc[CB];
  for (int c = 0; c < CB; ++c) acc[c] = Acc(0);
  for (int64_t k = 0; k < K; ++k) {
    const DeformSampleStencil<Acc> st = stencil_of(k);
    if (zero_row == nullptr && st.mask == Acc(0)) continue;
    for (int i = 0; i < 4; ++i) {
      const Acc w = st.w[i] * st.mask;
      const T* v = base + static_cast<int64_t>(st.index[i]) * pixel_stride;
      if (zero_row != nullptr) {
        v = w != Acc(0) ? v : zero_row;
      } else if (w == Acc(0)) {
        continue;
      }
      PDCN_CHANNEL_LOOP(c, CB, nc) acc[c] += w * cast<Acc>(v[c]);
    }
  }
  PDCN_CHANNEL_LOOP(c, CB, nc) o[c] = cast<T>(acc[c]);
}

// out[n, p, grp, c0 .. c0+nc) for nc <= CB channels.
template <int CB, typename T, typename Acc>
PDCN_HD void aggregate_forward_block(const AggregateGeometry& g, const T* value, const T* offset,
                                     const T* weight, T* out, int64_t n, int64_t p, int64_t grp,
                                     int64_t c0, int nc) {
  aggregate_forward_channels<CB, T, Acc>(
      g.kernel_size(), [&](int64_t k) { return aggregate_stencil<Acc>(g, offset, weight, n, p, grp, k); },
      value + g.value_base(n, 0, grp) + c0, g.groups * g.group_channels, nc,
      out + g.out_base(n, p, grp) + c0);
}

// The backward of kernel point k of (n, p, grp) over channels [c0, c0+nc).
// kCoords: adds to *gx, *gy, *gm the sums over those channels of
// grad_out * d out / d(x, y, m), through the four dot products
// D_i = sum_c grad_out[c] * v_i[c] (d out/dx = m * sum_i wx_i v_i, ...).
// kValue: scatters the value gradient through add(element of value,
// contribution) (callers own the elements on the CPU, add atomically or in
// fixed point on CUDA). The CUDA driver runs the two halves in separate
// kernels, the CPU driver both at once.
PDCN_HD_CALLS_FUNCTOR
template <bool kCoords, bool kValue, typename T, typename Acc, typename Add>
PDCN_HD void aggregate_backward_point(const AggregateGeometry& g, const DeformSampleStencil<Acc>& st,
                                      const T* value, const T* grad_out, int64_t n, int64_t p,
                                      int64_t grp, int64_t c0, int64_t nc, const Add& add, Acc* gx,
                                      Acc* gy, Acc* gm) {
  const int64_t pixel_stride = g.groups * g.group_channels;
  const int64_t base = g.value_base(n, 0, grp) + c0;
  const T* go = grad_out + g.out_base(n, p, grp) + c0;
  for (int i = 0; i < 4; ++i) {
    const int64_t e = base + static_cast<int64_t>(st.index[i]) * pixel_stride;
    if (kCoords) {
      const Acc d = outside_map_as_zero(st, i, lane_dot<Acc>(go, value + e, nc));
      *gm += st.w[i] * d;
      *gy += st.wy[i] * d;
      *gx += st.wx[i] * d;
    }
    if (kValue) {
      const Acc w = st.w[i] * st.mask;
      // A neighbour outside the map or of zero bilinear weight gets nothing, whatever
      // the weight m (0 * NaN would land at the pixel its index points at).
      if (st.w[i] == Acc(0) || w == Acc(0)) continue;
      for (int64_t c = 0; c < nc; ++c) add(e + c, w * cast<Acc>(go[c]));
    }
  }
}

// A bound on |contribution| of the value-gradient scatter of (n, p, grp), for
// the deterministic backward's fixed-point sums (fixed_point.h): each
// contribution is bilinear weight (<= 1) * weight[k] * grad_out[c], so the
// largest |weight| over the K points times the largest |grad_out| over the
// group's channels, in double (a float product could overflow), at most
// DBL_MAX. Non-finite weights and grad_out are left out of both maxima: every
// contribution they take part in is non-finite (inf, or NaN where it meets a
// zero), and those go to the flags, not into the integer sums. (Counting them
// in gave an infinite bound, which the maximum over items drops: the item's
// finite contributions could then exceed the exponent's range.)
template <typename T>
PDCN_HD double aggregate_value_grad_bound(const AggregateGeometry& g, const T* weight,
                                          const T* grad_out, int64_t n, int64_t p, int64_t grp) {
  double wmax = 0.0, gmax = 0.0;
  for (int64_t k = 0; k < g.kernel_size(); ++k) {
    const double w = static_cast<double>(cast<acc_t<T>>(weight[g.weight_index(n, p, grp, k)]));
    const double a = w < 0.0 ? -w : w;
    if (a - a == 0.0 && a > wmax) wmax = a;  // a - a == 0: finite
  }
  const T* go = grad_out + g.out_base(n, p, grp);
  for (int64_t c = 0; c < g.group_channels; ++c) {
    const double d = static_cast<double>(cast<acc_t<T>>(go[c]));
    const double a = d < 0.0 ? -d : d;
    if (a - a == 0.0 && a > gmax) gmax = a;
  }
  const double bound = wmax * gmax;
  return bound <= DBL_MAX ? bound : DBL_MAX;
}

// Writes the offset-pair and weight gradients of (n, p, grp, k) from the
// channel sums of aggregate_backward_point.
template <typename T, typename Acc>
PDCN_HD void aggregate_coord_grad_store(const AggregateGeometry& g, const DeformSampleStencil<Acc>& st,
                                        Acc gx, Acc gy, Acc gm, T* grad_offset, T* grad_weight,
                                        int64_t n, int64_t p, int64_t grp, int64_t k) {
  const Acc s = static_cast<Acc>(g.offset_scale) * st.mask;
  const int64_t o = g.offset_index(n, p, grp, k);
  grad_offset[o] = cast<T>(gx * s);
  grad_offset[o + 1] = cast<T>(gy * s);
  grad_weight[g.weight_index(n, p, grp, k)] = cast<T>(gm);
}

}  // namespace pdcn
