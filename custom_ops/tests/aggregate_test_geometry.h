// The DCNv3/v4 aggregation geometry of the native tests (host code, shared by the CPU
// fixed-point test and the CUDA-vs-CPU test): square kernel, stride and dilation, the padding
// dilation*(kernel-1)/2 that keeps the layers' output grid, separate offset / weight layout.
#pragma once

#include <cstdint>

#include "deform_aggregate.h"

inline pdcn::AggregateGeometry make_aggregate_geometry(int64_t n, int64_t h, int64_t w, int64_t groups,
                                                       int64_t channels, int64_t kernel, int64_t stride,
                                                       int64_t dilation, double scale) {
  pdcn::AggregateGeometry g{};
  g.batch = n;
  g.in_h = h;
  g.in_w = w;
  g.groups = groups;
  g.group_channels = channels;
  g.kernel_h = g.kernel_w = kernel;
  g.stride_h = g.stride_w = stride;
  g.dilation_h = g.dilation_w = dilation;
  g.pad_h = g.pad_w = dilation * (kernel - 1) / 2;
  g.out_h = (h + 2 * g.pad_h - (dilation * (kernel - 1) + 1)) / stride + 1;
  g.out_w = (w + 2 * g.pad_w - (dilation * (kernel - 1) + 1)) / stride + 1;
  g.offset_scale = scale;
  g.set_separate_layout();
  return g;
}
