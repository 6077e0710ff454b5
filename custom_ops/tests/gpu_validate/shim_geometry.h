// The geometry structs from the flat arrays that validate.py passes through ctypes, shared by
// pdcn_shim.cu and cpu_shim.cc (the same C API).
#pragma once

#include "deform_aggregate.h"
#include "deform_conv.h"
#include "deform_psroi_pool.h"
#include "deform_roi_pool.h"

namespace shim {
using pdcn::DeformConvGeometry;
using pdcn::DeformPSRoiPoolGeometry;
using pdcn::DeformRoiPoolGeometry;

// g: batch, C, H, W, Cout, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, groups, dgroups
inline DeformConvGeometry conv(const long long* a) {
  DeformConvGeometry g;
  g.batch = a[0]; g.in_channels = a[1]; g.in_h = a[2]; g.in_w = a[3];
  g.out_channels = a[4]; g.out_h = a[5]; g.out_w = a[6];
  g.kernel_h = a[7]; g.kernel_w = a[8]; g.stride_h = a[9]; g.stride_w = a[10];
  g.pad_h = a[11]; g.pad_w = a[12]; g.dilation_h = a[13]; g.dilation_w = a[14];
  g.groups = a[15]; g.deformable_groups = a[16];
  return g;
}
// i: batch, C, H, W, K, PH, PW, sampling_ratio, max_grid, aligned; f: scale, gamma
inline DeformRoiPoolGeometry roi(const long long* i, const float* f) {
  DeformRoiPoolGeometry g;
  g.batch = i[0]; g.channels = i[1]; g.in_h = i[2]; g.in_w = i[3]; g.num_rois = i[4];
  g.pooled_h = i[5]; g.pooled_w = i[6]; g.sampling_ratio = i[7]; g.max_grid = i[8];
  g.aligned = i[9] != 0; g.spatial_scale = f[0]; g.gamma = f[1];
  return g;
}
// i: batch, Cin, H, W, K, OC, PH, PW, part_h, part_w, offset_groups, S; f: scale, trans_std
inline DeformPSRoiPoolGeometry psroi(const long long* i, const float* f) {
  DeformPSRoiPoolGeometry g;
  g.batch = i[0]; g.in_channels = i[1]; g.in_h = i[2]; g.in_w = i[3]; g.num_rois = i[4];
  g.out_channels = i[5]; g.pooled_h = i[6]; g.pooled_w = i[7]; g.part_h = i[8]; g.part_w = i[9];
  g.offset_groups = i[10]; g.sample_per_part = i[11]; g.spatial_scale = f[0]; g.trans_std = f[1];
  return g;
}
// a: batch, H, W, groups, group_channels, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, fused width
// (0: separate offset / weight tensors); scale: offset_scale
inline pdcn::AggregateGeometry aggregate(const long long* a, double scale) {
  pdcn::AggregateGeometry g;
  g.batch = a[0]; g.in_h = a[1]; g.in_w = a[2]; g.groups = a[3]; g.group_channels = a[4];
  g.out_h = a[5]; g.out_w = a[6]; g.kernel_h = a[7]; g.kernel_w = a[8]; g.stride_h = a[9];
  g.stride_w = a[10]; g.pad_h = a[11]; g.pad_w = a[12]; g.dilation_h = a[13]; g.dilation_w = a[14];
  g.offset_scale = scale;
  if (a[15] > 0) g.set_fused_layout(a[15]); else g.set_separate_layout();
  return g;
}
}  // namespace shim
