// Deformable convolution v1/v2: geometry and per-element math, shared by the
// CPU driver (deform_conv_cpu.h) and the CUDA driver (deform_conv_cuda.cuh).
//
// Layouts (all row-major, NCHW):
//   x       [N, C, H, W]
//   offset  [N, dg, K, 2, Ho, Wo]  (channel 2*(g*K + k) is dy, the next dx)
//   mask    [N, dg, K, Ho, Wo]     (nullptr for DCN v1)
//   columns [C, K, B, Ho*Wo] for a chunk of B images starting at n0: row
//           r = c*K + k, column q = b*Ho*Wo + p. With groups, rows of group
//           gi are the contiguous block [gi*C/groups*K, (gi+1)*C/groups*K).
// K = kernel_h * kernel_w, kernel points row-major; p = i*Wo + j.
#pragma once

#include "bilinear.h"

namespace pdcn {

struct DeformConvGeometry {
  int64_t batch, in_channels, in_h, in_w;
  int64_t out_channels, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t groups, deformable_groups;

  PDCN_HD int64_t kernel_size() const { return kernel_h * kernel_w; }
  PDCN_HD int64_t out_plane() const { return out_h * out_w; }
  PDCN_HD int64_t in_plane() const { return in_h * in_w; }
  PDCN_HD int64_t channels_per_dgroup() const { return in_channels / deformable_groups; }
  // Rows of the column matrix (= C*K) and its size for a chunk of B images.
  PDCN_HD int64_t column_rows() const { return in_channels * kernel_size(); }
  PDCN_HD int64_t column_elements(int64_t chunk) const {
    return column_rows() * chunk * out_plane();
  }
};

// Where kernel point k of output pixel p of image n, deformable group dg,
// samples the input.
template <typename Acc, typename T>
PDCN_HD void deform_sample_position(const DeformConvGeometry& g, const T* offset, int64_t n,
                                    int64_t dg, int64_t k, int64_t p, Acc* y, Acc* x) {
  const int64_t hw = g.out_plane();
  const T* off = offset + ((n * g.deformable_groups + dg) * 2 * g.kernel_size() + 2 * k) * hw + p;
  const int64_t i = p / g.out_w, j = p - (p / g.out_w) * g.out_w;
  const int64_t a = k / g.kernel_w, b = k - (k / g.kernel_w) * g.kernel_w;
  *y = static_cast<Acc>(i * g.stride_h - g.pad_h + a * g.dilation_h) + static_cast<Acc>(off[0]);
  *x = static_cast<Acc>(j * g.stride_w - g.pad_w + b * g.dilation_w) + static_cast<Acc>(off[hw]);
}

template <typename Acc, typename T>
PDCN_HD Acc deform_mask_value(const DeformConvGeometry& g, const T* mask, int64_t n, int64_t dg,
                              int64_t k, int64_t p) {
  if (mask == nullptr) return Acc(1);
  return static_cast<Acc>(
      mask[((n * g.deformable_groups + dg) * g.kernel_size() + k) * g.out_plane() + p]);
}

// columns[c*K + k, b*HWo + p] = mask * bilinear(x[n0 + b, c], position).
template <typename T, typename Acc = acc_t<T>>
PDCN_HD void deform_im2col_element(const DeformConvGeometry& g, const T* x, const T* offset,
                                   const T* mask, T* columns, int64_t n0, int64_t chunk,
                                   int64_t c, int64_t k, int64_t b, int64_t p) {
  const int64_t n = n0 + b, dg = c / g.channels_per_dgroup();
  Acc y, xx;
  deform_sample_position<Acc>(g, offset, n, dg, k, p, &y, &xx);
  const T* plane = x + (n * g.in_channels + c) * g.in_plane();
  const Acc v = bilinear_sample<Acc>(plane, g.in_h, g.in_w, y, xx) *
                deform_mask_value<Acc>(g, mask, n, dg, k, p);
  columns[((c * g.kernel_size() + k) * chunk + b) * g.out_plane() + p] = static_cast<T>(v);
}

// Scatters one column gradient into the input gradient plane of (n0 + b, c):
// add(index_in_plane, value). Callers own the plane (CPU, deterministic CUDA)
// or add atomically (fast CUDA).
template <typename T, typename Add, typename Acc = acc_t<T>>
PDCN_HD void deform_col2im_element(const DeformConvGeometry& g, const T* grad_columns,
                                   const T* offset, const T* mask, int64_t n0, int64_t chunk,
                                   int64_t c, int64_t k, int64_t b, int64_t p, const Add& add) {
  const int64_t n = n0 + b, dg = c / g.channels_per_dgroup();
  const Acc gcol = static_cast<Acc>(
      grad_columns[((c * g.kernel_size() + k) * chunk + b) * g.out_plane() + p]);
  if (gcol == Acc(0)) return;
  Acc y, xx;
  deform_sample_position<Acc>(g, offset, n, dg, k, p, &y, &xx);
  bilinear_scatter<Acc>(g.in_h, g.in_w, y, xx, gcol * deform_mask_value<Acc>(g, mask, n, dg, k, p),
                        add);
}

// Gradients of the offset pair and the mask of (n0 + b, dg, k, p): sums over
// the channels of the deformable group. Each call owns its outputs.
template <typename T, typename Acc = acc_t<T>>
PDCN_HD void deform_coord_grad_element(const DeformConvGeometry& g, const T* grad_columns,
                                       const T* x, const T* offset, const T* mask,
                                       T* grad_offset, T* grad_mask, int64_t n0, int64_t chunk,
                                       int64_t dg, int64_t k, int64_t b, int64_t p) {
  const int64_t n = n0 + b, hw = g.out_plane(), K = g.kernel_size();
  const int64_t cpg = g.channels_per_dgroup();
  Acc y, xx;
  deform_sample_position<Acc>(g, offset, n, dg, k, p, &y, &xx);
  const Acc m = deform_mask_value<Acc>(g, mask, n, dg, k, p);
  Acc gy = 0, gx = 0, gm = 0;
  const BilinearStencil<Acc> s = make_stencil(y, xx, g.in_h, g.in_w);
  if (s.valid) {
    const Acc hy = Acc(1) - s.ly, hx = Acc(1) - s.lx;
    const int64_t row_stride = K * chunk * hw;
    const T* gcol = grad_columns + ((dg * cpg * K + k) * chunk + b) * hw + p;
    const T* plane = x + (n * g.in_channels + dg * cpg) * g.in_plane();
    for (int64_t ci = 0; ci < cpg; ++ci) {
      const Acc gc = static_cast<Acc>(gcol[ci * row_stride]);
      Acc v[4];
      stencil_values(s, plane + ci * g.in_plane(), g.in_h, g.in_w, v);
      gy += gc * (hx * (v[2] - v[0]) + s.lx * (v[3] - v[1]));
      gx += gc * (hy * (v[1] - v[0]) + s.ly * (v[3] - v[2]));
      gm += gc * stencil_blend(s, v);
    }
  }
  T* go = grad_offset + ((n * g.deformable_groups + dg) * 2 * K + 2 * k) * hw + p;
  go[0] = static_cast<T>(gy * m);
  go[hw] = static_cast<T>(gx * m);
  if (grad_mask != nullptr) {
    grad_mask[((n * g.deformable_groups + dg) * K + k) * hw + p] = static_cast<T>(gm);
  }
}

// GEMM result [Cout, B, HWo] -> out[n0 + b, co, p].
template <typename T>
PDCN_HD void deform_columns_to_output_element(const DeformConvGeometry& g, const T* result,
                                              T* out, int64_t n0, int64_t chunk, int64_t co,
                                              int64_t b, int64_t p) {
  const int64_t hw = g.out_plane();
  out[((n0 + b) * g.out_channels + co) * hw + p] = result[(co * chunk + b) * hw + p];
}

// grad_out[n0 + b, co, p] -> [Cout, B, HWo], the layout of the GEMMs.
template <typename T>
PDCN_HD void deform_output_to_columns_element(const DeformConvGeometry& g, const T* grad_out,
                                              T* gathered, int64_t n0, int64_t chunk, int64_t co,
                                              int64_t b, int64_t p) {
  const int64_t hw = g.out_plane();
  gathered[(co * chunk + b) * hw + p] = grad_out[((n0 + b) * g.out_channels + co) * hw + p];
}

}  // namespace pdcn
