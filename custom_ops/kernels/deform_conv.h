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
  // Per-image stride, in elements, of the offset array (and of its
  // gradient); 0 means the offset tensor's own, 2*dg*K*Ho*Wo. DeformConv2D's
  // packed offset branch output ([N, 3*dg*K, Ho, Wo], offsets first) is read
  // in place with 3*dg*K*Ho*Wo.
  int64_t offset_image_stride = 0;

  PDCN_HD int64_t kernel_size() const { return kernel_h * kernel_w; }
  PDCN_HD int64_t out_plane() const { return out_h * out_w; }
  PDCN_HD int64_t in_plane() const { return in_h * in_w; }
  PDCN_HD int64_t channels_per_dgroup() const { return in_channels / deformable_groups; }
  PDCN_HD int64_t offset_stride() const {
    return offset_image_stride > 0 ? offset_image_stride
                                   : 2 * deformable_groups * kernel_size() * out_plane();
  }
  // Where the offset pair (y at +0, x at +out_plane) and the mask of (n, dg,
  // k, p) are.
  PDCN_HD int64_t offset_index(int64_t n, int64_t dg, int64_t k, int64_t p) const {
    return n * offset_stride() + (dg * 2 * kernel_size() + 2 * k) * out_plane() + p;
  }
  PDCN_HD int64_t mask_index(int64_t n, int64_t dg, int64_t k, int64_t p) const {
    return ((n * deformable_groups + dg) * kernel_size() + k) * out_plane() + p;
  }
  // Rows of the column matrix (= C*K) and its size for a chunk of B images.
  PDCN_HD int64_t column_rows() const { return in_channels * kernel_size(); }
  PDCN_HD int64_t column_elements(int64_t chunk) const {
    return column_rows() * chunk * out_plane();
  }
};

// Where kernel point k = a*kernel_w + b of output pixel p = i*out_w + j of
// image n, deformable group dg, samples the input (callers that loop over
// i, j, a, b pass them; the form below derives them from p and k).
template <typename Acc, typename T>
PDCN_HD void deform_sample_position_at(const DeformConvGeometry& g, const T* offset, int64_t n,
                                       int64_t dg, int64_t k, int64_t p, int64_t i, int64_t j,
                                       int64_t a, int64_t b, Acc* y, Acc* x) {
  const int64_t hw = g.out_plane();
  const T* off = offset + g.offset_index(n, dg, k, p);
  *y = cast<Acc>(i * g.stride_h - g.pad_h + a * g.dilation_h) + cast<Acc>(off[0]);
  *x = cast<Acc>(j * g.stride_w - g.pad_w + b * g.dilation_w) + cast<Acc>(off[hw]);
}

template <typename Acc, typename T>
PDCN_HD void deform_sample_position(const DeformConvGeometry& g, const T* offset, int64_t n,
                                    int64_t dg, int64_t k, int64_t p, Acc* y, Acc* x) {
  const int64_t i = p / g.out_w, j = p - (p / g.out_w) * g.out_w;
  const int64_t a = k / g.kernel_w, b = k - (k / g.kernel_w) * g.kernel_w;
  deform_sample_position_at<Acc>(g, offset, n, dg, k, p, i, j, a, b, y, x);
}

template <typename Acc, typename T>
PDCN_HD Acc deform_mask_value(const DeformConvGeometry& g, const T* mask, int64_t n, int64_t dg,
                              int64_t k, int64_t p) {
  if (mask == nullptr) return Acc(1);
  return cast<Acc>(mask[g.mask_index(n, dg, k, p)]);
}

template <typename Acc, typename T>
PDCN_HD DeformSampleStencil<Acc> deform_sample_stencil(const DeformConvGeometry& g,
                                                       const T* offset, const T* mask, int64_t n,
                                                       int64_t dg, int64_t k, int64_t p) {
  Acc y, x;
  deform_sample_position<Acc>(g, offset, n, dg, k, p, &y, &x);
  return sample_stencil_at(y, x, g.in_h, g.in_w, deform_mask_value<Acc>(g, mask, n, dg, k, p));
}

// deform_sample_stencil for a caller that knows p = i*out_w + j and
// k = a*kernel_w + b; outside_index as sample_stencil_at's.
template <typename Acc, typename T>
PDCN_HD DeformSampleStencil<Acc> deform_sample_stencil_at(const DeformConvGeometry& g,
                                                          const T* offset, const T* mask,
                                                          int64_t n, int64_t dg, int64_t k,
                                                          int64_t p, int64_t i, int64_t j,
                                                          int64_t a, int64_t b,
                                                          int32_t outside_index = 0) {
  Acc y, x;
  deform_sample_position_at<Acc>(g, offset, n, dg, k, p, i, j, a, b, &y, &x);
  return sample_stencil_at(y, x, g.in_h, g.in_w, deform_mask_value<Acc>(g, mask, n, dg, k, p),
                           outside_index);
}

// sum_i w_i v_i, a neighbour outside the map counting as zero
// (outside_map_as_zero: the stencil points it at pixel 0 of the plane).
template <typename Acc, typename T>
PDCN_HD Acc stencil_sample(const DeformSampleStencil<Acc>& st, const T* plane) {
  return st.w[0] * outside_map_as_zero(st, 0, cast<Acc>(plane[st.index[0]])) +
         st.w[1] * outside_map_as_zero(st, 1, cast<Acc>(plane[st.index[1]])) +
         st.w[2] * outside_map_as_zero(st, 2, cast<Acc>(plane[st.index[2]])) +
         st.w[3] * outside_map_as_zero(st, 3, cast<Acc>(plane[st.index[3]]));
}

// columns[c*K + k, b*HWo + p] = mask * bilinear(x[n0 + b, c], position).
template <typename T, typename Acc>
PDCN_HD void deform_im2col_element(const DeformConvGeometry& g, const DeformSampleStencil<Acc>& st,
                                   const T* x, T* columns, int64_t n0, int64_t chunk, int64_t c,
                                   int64_t k, int64_t b, int64_t p) {
  const T* plane = x + ((n0 + b) * g.in_channels + c) * g.in_plane();
  columns[((c * g.kernel_size() + k) * chunk + b) * g.out_plane() + p] =
      cast<T>(st.mask * stencil_sample(st, plane));
}

// Scatters one column gradient into the input-gradient plane of (n0 + b, c):
// add(index_in_plane, value). Callers own the plane (CPU, deterministic CUDA)
// or add atomically (fast CUDA).
PDCN_HD_CALLS_FUNCTOR
template <typename T, typename Acc, typename Add>
PDCN_HD void deform_col2im_element(const DeformConvGeometry& g, const DeformSampleStencil<Acc>& st,
                                   const T* grad_columns, int64_t chunk, int64_t c, int64_t k,
                                   int64_t b, int64_t p, const Add& add) {
  const Acc gcol = cast<Acc>(
      grad_columns[((c * g.kernel_size() + k) * chunk + b) * g.out_plane() + p]) * st.mask;
  if (gcol == Acc(0)) return;
  for (int i = 0; i < 4; ++i) {
    if (st.w[i] != Acc(0)) add(st.index[i], st.w[i] * gcol);
  }
}

// Contribution of one channel to the coordinate gradients of a sample:
// adds gcol * d(sample)/dy (unmasked), gcol * d/dx and gcol * sample (the
// mask gradient) to the accumulators. A neighbour outside the map counts as
// zero (outside_map_as_zero), whatever the value its index 0 reads.
template <typename Acc, typename T>
PDCN_HD void deform_coord_grad_accumulate(const DeformSampleStencil<Acc>& st, const T* plane,
                                          Acc gcol, Acc* gy, Acc* gx, Acc* gm) {
  Acc v[4];
  for (int i = 0; i < 4; ++i) v[i] = outside_map_as_zero(st, i, cast<Acc>(plane[st.index[i]]));
  *gy += gcol * (st.wy[0] * v[0] + st.wy[1] * v[1] + st.wy[2] * v[2] + st.wy[3] * v[3]);
  *gx += gcol * (st.wx[0] * v[0] + st.wx[1] * v[1] + st.wx[2] * v[2] + st.wx[3] * v[3]);
  *gm += gcol * (st.w[0] * v[0] + st.w[1] * v[1] + st.w[2] * v[2] + st.w[3] * v[3]);
}

// Writes the offset pair and mask gradients of (n, dg, k, p).
template <typename T, typename Acc>
PDCN_HD void deform_coord_grad_store(const DeformConvGeometry& g, const DeformSampleStencil<Acc>& st,
                                     Acc gy, Acc gx, Acc gm, T* grad_offset, T* grad_mask,
                                     int64_t n, int64_t dg, int64_t k, int64_t p) {
  const int64_t hw = g.out_plane();
  T* go = grad_offset + g.offset_index(n, dg, k, p);
  go[0] = cast<T>(gy * st.mask);
  go[hw] = cast<T>(gx * st.mask);
  if (grad_mask != nullptr) {
    grad_mask[g.mask_index(n, dg, k, p)] = cast<T>(gm);
  }
}

// The whole coordinate gradient of (n0 + b, dg, k, p): sums over the channels
// of the deformable group (the CUDA driver's unit of work).
template <typename T, typename Acc>
PDCN_HD void deform_coord_grad_element(const DeformConvGeometry& g, const DeformSampleStencil<Acc>& st,
                                       const T* grad_columns, const T* x, T* grad_offset,
                                       T* grad_mask, int64_t n0, int64_t chunk, int64_t dg,
                                       int64_t k, int64_t b, int64_t p) {
  const int64_t hw = g.out_plane(), K = g.kernel_size(), cpg = g.channels_per_dgroup();
  const int64_t row_stride = K * chunk * hw;
  const T* gcol = grad_columns + ((dg * cpg * K + k) * chunk + b) * hw + p;
  const T* plane = x + ((n0 + b) * g.in_channels + dg * cpg) * g.in_plane();
  Acc gy = 0, gx = 0, gm = 0;
  for (int64_t ci = 0; ci < cpg; ++ci) {
    deform_coord_grad_accumulate(st, plane + ci * g.in_plane(),
                                 cast<Acc>(gcol[ci * row_stride]), &gy, &gx, &gm);
  }
  deform_coord_grad_store(g, st, gy, gx, gm, grad_offset, grad_mask, n0 + b, dg, k, p);
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
