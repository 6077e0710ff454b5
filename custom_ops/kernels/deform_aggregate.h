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
// Kernel point k = iw * kernel_h + ih (InternImage's order: the kernel's
// column index is the outer one). With cw = (dilation_w * (kernel_w - 1)) / 2
// (integer division) and s = offset_scale, output pixel (i, j) samples
//   x = j*stride_w - pad_w + cw + s * (iw*dilation_w - cw + dx)
//   y = i*stride_h - pad_h + ch + s * (ih*dilation_h - ch + dy)
// (s = 1: the plain deformable-conv sampling grid). The sampling rule is
// deformable conv's (bilinear.h): a neighbour outside the map is zero, a
// non-finite or huge position gives a zero sample.
#pragma once

#include "bilinear.h"

namespace pdcn {

struct AggregateGeometry {
  int64_t batch, in_h, in_w, groups, group_channels, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  double offset_scale;

  PDCN_HD int64_t kernel_size() const { return kernel_h * kernel_w; }
  PDCN_HD int64_t out_plane() const { return out_h * out_w; }
  PDCN_HD int64_t in_plane() const { return in_h * in_w; }
  PDCN_HD int64_t channels() const { return groups * group_channels; }
  PDCN_HD int64_t value_elements() const { return batch * in_plane() * channels(); }
  PDCN_HD int64_t out_elements() const { return batch * out_plane() * channels(); }
  // Index of (n, p, g, k = 0) in weight (and / 2 of offset).
  PDCN_HD int64_t point_base(int64_t n, int64_t p, int64_t g) const {
    return ((n * out_plane() + p) * groups + g) * kernel_size();
  }
  // Index of (n, pixel, g, c = 0) in value (pixel in the input plane) or out.
  PDCN_HD int64_t value_base(int64_t n, int64_t pixel, int64_t g) const {
    return ((n * in_plane() + pixel) * groups + g) * group_channels;
  }
  PDCN_HD int64_t out_base(int64_t n, int64_t p, int64_t g) const {
    return ((n * out_plane() + p) * groups + g) * group_channels;
  }
};

// The sample of kernel point k of (n, p, g): stencil with the aggregation
// weight as its mask.
template <typename Acc, typename T>
PDCN_HD DeformSampleStencil<Acc> aggregate_stencil(const AggregateGeometry& g, const T* offset,
                                                   const T* weight, int64_t n, int64_t p,
                                                   int64_t grp, int64_t k) {
  const int64_t i = p / g.out_w, j = p - (p / g.out_w) * g.out_w;
  const int64_t iw = k / g.kernel_h, ih = k - (k / g.kernel_h) * g.kernel_h;
  const int64_t cw = (g.dilation_w * (g.kernel_w - 1)) / 2, ch = (g.dilation_h * (g.kernel_h - 1)) / 2;
  const int64_t point = g.point_base(n, p, grp) + k;
  const Acc s = static_cast<Acc>(g.offset_scale);
  const Acc x = static_cast<Acc>(j * g.stride_w - g.pad_w + cw) +
                s * (static_cast<Acc>(iw * g.dilation_w - cw) + cast<Acc>(offset[2 * point]));
  const Acc y = static_cast<Acc>(i * g.stride_h - g.pad_h + ch) +
                s * (static_cast<Acc>(ih * g.dilation_h - ch) + cast<Acc>(offset[2 * point + 1]));
  return sample_stencil_at(y, x, g.in_h, g.in_w, cast<Acc>(weight[point]));
}

// out[n, p, grp, c0 .. c0+nc) for nc <= CB channels (the drivers' channel
// block: the K stencils are computed once per block and shared by its
// channels, DCNv4's observation).
template <int CB, typename T, typename Acc>
PDCN_HD void aggregate_forward_block(const AggregateGeometry& g, const T* value, const T* offset,
                                     const T* weight, T* out, int64_t n, int64_t p, int64_t grp,
                                     int64_t c0, int nc) {
  Acc acc[CB];
  for (int c = 0; c < CB; ++c) acc[c] = Acc(0);
  const int64_t pixel_stride = g.groups * g.group_channels;
  const T* base = value + g.value_base(n, 0, grp) + c0;
  for (int64_t k = 0; k < g.kernel_size(); ++k) {
    const DeformSampleStencil<Acc> st = aggregate_stencil<Acc>(g, offset, weight, n, p, grp, k);
    if (st.mask == Acc(0)) continue;
    for (int i = 0; i < 4; ++i) {
      const Acc w = st.w[i] * st.mask;
      if (w == Acc(0)) continue;
      const T* v = base + static_cast<int64_t>(st.index[i]) * pixel_stride;
      for (int c = 0; c < nc; ++c) acc[c] += w * cast<Acc>(v[c]);
    }
  }
  T* o = out + g.out_base(n, p, grp) + c0;
  for (int c = 0; c < nc; ++c) o[c] = cast<T>(acc[c]);
}

// Gradients of the offset pair and the weight of (n, p, grp, k): sums over
// the group's channels of grad_out * d out / d (dx, dy, m).
template <typename T, typename Acc>
PDCN_HD void aggregate_coord_grad_element(const AggregateGeometry& g, const T* value,
                                          const T* offset, const T* weight, const T* grad_out,
                                          T* grad_offset, T* grad_weight, int64_t n, int64_t p,
                                          int64_t grp, int64_t k) {
  const DeformSampleStencil<Acc> st = aggregate_stencil<Acc>(g, offset, weight, n, p, grp, k);
  const int64_t pixel_stride = g.groups * g.group_channels;
  const T* base = value + g.value_base(n, 0, grp);
  const T* v[4];
  for (int i = 0; i < 4; ++i) v[i] = base + static_cast<int64_t>(st.index[i]) * pixel_stride;
  const T* go = grad_out + g.out_base(n, p, grp);
  Acc gx = 0, gy = 0, gm = 0;
  for (int64_t c = 0; c < g.group_channels; ++c) {
    const Acc d = cast<Acc>(go[c]);
    const Acc v0 = cast<Acc>(v[0][c]), v1 = cast<Acc>(v[1][c]), v2 = cast<Acc>(v[2][c]),
              v3 = cast<Acc>(v[3][c]);
    gm += d * (st.w[0] * v0 + st.w[1] * v1 + st.w[2] * v2 + st.w[3] * v3);
    gy += d * (st.wy[0] * v0 + st.wy[1] * v1 + st.wy[2] * v2 + st.wy[3] * v3);
    gx += d * (st.wx[0] * v0 + st.wx[1] * v1 + st.wx[2] * v2 + st.wx[3] * v3);
  }
  const int64_t point = g.point_base(n, p, grp) + k;
  const Acc s = static_cast<Acc>(g.offset_scale) * st.mask;
  grad_offset[2 * point] = cast<T>(gx * s);
  grad_offset[2 * point + 1] = cast<T>(gy * s);
  grad_weight[point] = cast<T>(gm);
}

// Scatters the value gradient of kernel point k of (n, p, grp) for channels
// [c0, c0+nc): add(element of value, contribution). Callers own the elements
// (CPU) or add atomically / in fixed point (CUDA).
PDCN_HD_CALLS_FUNCTOR
template <typename T, typename Acc, typename Add>
PDCN_HD void aggregate_value_grad_point(const AggregateGeometry& g, const DeformSampleStencil<Acc>& st,
                                        const T* grad_out, int64_t n, int64_t p, int64_t grp,
                                        int64_t c0, int64_t nc, const Add& add) {
  if (st.mask == Acc(0)) return;
  const int64_t pixel_stride = g.groups * g.group_channels;
  const T* go = grad_out + g.out_base(n, p, grp) + c0;
  for (int i = 0; i < 4; ++i) {
    const Acc w = st.w[i] * st.mask;
    if (w == Acc(0)) continue;
    const int64_t e = g.value_base(n, 0, grp) + static_cast<int64_t>(st.index[i]) * pixel_stride + c0;
    for (int64_t c = 0; c < nc; ++c) add(e + c, w * cast<Acc>(go[c]));
  }
}

}  // namespace pdcn
