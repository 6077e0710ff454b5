// Native test of the CPU deformable-convolution kernels under AddressSanitizer:
// NaN, Inf and huge offsets (1e30, 3e9) must never read or write outside the
// buffers, and must give exactly what an offset far outside the map gives
// (a zero sample with zero gradients), on both CPU paths: the plane-layout
// passes (deform_conv_cpu.h) and the channels-last path (deform_conv_cpu_cl.h),
// which must agree; and the plain convolution's integer-tap kernels
// (conv_cpu_cl.h) must equal the deformable ones at zero offsets and mask 1.
// Run by custom_ops/tests/run_cpu_native.sh.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "conv_cpu_cl.h"
#include "deform_conv_cpu.h"
#include "deform_conv_cpu_cl.h"

using pdcn::DeformConvGeometry;

namespace {

struct Outputs {
  std::vector<double> columns, grad_x, grad_offset, grad_mask;
};

// All plane-layout passes.
Outputs run_plane(const DeformConvGeometry& g, const std::vector<double>& x,
                  const std::vector<double>& offset, const std::vector<double>& mask,
                  const std::vector<double>& grad_columns) {
  Outputs o;
  const int64_t chunk = g.batch;
  const pdcn::cpu::StencilOnTheFly<double> source{offset.data(), mask.data(), 0};
  o.columns.assign(g.column_elements(chunk), 0.0);
  o.grad_x.assign(x.size(), 0.0);
  o.grad_offset.assign(offset.size(), 0.0);
  o.grad_mask.assign(mask.size(), 0.0);
  pdcn::cpu::deform_im2col(g, source, x.data(), o.columns.data(), 0, chunk);
  pdcn::cpu::deform_coord_grad(g, source, grad_columns.data(), x.data(),
                               o.grad_offset.data(), o.grad_mask.data(), 0, chunk);
  pdcn::cpu::deform_col2im(g, source, grad_columns.data(), o.grad_x.data(), 0, chunk);
  return o;
}

// The channels-last path on the same inputs, its columns and column gradients
// translated from / to the plane layout ([C*K, B*HW] <-> [G, B*HW, K*Cg]).
Outputs run_channels_last(const DeformConvGeometry& g, const std::vector<double>& x,
                          const std::vector<double>& offset, const std::vector<double>& mask,
                          const std::vector<double>& grad_columns) {
  const int64_t chunk = g.batch, K = g.kernel_size(), hw = g.out_plane();
  const int64_t Cg = g.in_channels / g.groups;
  auto pixel_major_index = [&](int64_t c, int64_t k, int64_t q) {
    return pdcn::cpu::channels_last_column_index(g, chunk, c / Cg, q, k, c);
  };
  std::vector<double> grad_pm(grad_columns.size()), columns_pm(grad_columns.size(), -7.0);
  for (int64_t c = 0; c < g.in_channels; ++c)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t q = 0; q < chunk * hw; ++q)
        grad_pm[pixel_major_index(c, k, q)] = grad_columns[(c * K + k) * chunk * hw + q];
  const size_t cl_elements = chunk * pdcn::cpu::channels_last_image_elements(g);
  std::vector<double> x_cl(cl_elements), grad_x_cl(cl_elements, -7.0),
      im2col_pm(grad_columns.size());
  Outputs o;
  o.grad_x.assign(x.size(), -7.0);
  o.grad_offset.assign(offset.size(), -7.0);
  o.grad_mask.assign(mask.size(), -7.0);
  pdcn::cpu::to_channels_last(g, x.data(), x_cl.data(), 0, chunk);
  pdcn::cpu::deform_im2col_cl(g, offset.data(), mask.data(), x_cl.data(), im2col_pm.data(), 0,
                              chunk);
  pdcn::cpu::deform_backward_cl(g, offset.data(), mask.data(), x_cl.data(), grad_pm.data(),
                                columns_pm.data(), grad_x_cl.data(), o.grad_offset.data(),
                                o.grad_mask.data(), 0, chunk);
  pdcn::cpu::from_channels_last(g, grad_x_cl.data(), o.grad_x.data(), 0, chunk);
  if (std::memcmp(im2col_pm.data(), columns_pm.data(), sizeof(double) * im2col_pm.size()) != 0) {
    std::printf("FAIL channels-last: the backward sweep's columns differ from im2col's\n");
    std::exit(1);
  }
  o.columns.resize(grad_columns.size());
  for (int64_t c = 0; c < g.in_channels; ++c)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t q = 0; q < chunk * hw; ++q)
        o.columns[(c * K + k) * chunk * hw + q] = columns_pm[pixel_major_index(c, k, q)];
  return o;
}

bool same(const char* what, const std::vector<double>& a, const std::vector<double>& b);
bool close(const char* what, const std::vector<double>& a, const std::vector<double>& b);

// Both paths; they must agree (to rounding: the channel sums run in another order).
Outputs run(const DeformConvGeometry& g, const std::vector<double>& x,
            const std::vector<double>& offset, const std::vector<double>& mask,
            const std::vector<double>& grad_columns) {
  const Outputs a = run_plane(g, x, offset, mask, grad_columns);
  const Outputs b = run_channels_last(g, x, offset, mask, grad_columns);
  if (!(close("plane vs channels-last columns", a.columns, b.columns) &&
        close("plane vs channels-last grad_x", a.grad_x, b.grad_x) &&
        close("plane vs channels-last grad_offset", a.grad_offset, b.grad_offset) &&
        close("plane vs channels-last grad_mask", a.grad_mask, b.grad_mask))) {
    std::exit(1);
  }
  return b;
}

bool close(const char* what, const std::vector<double>& a, const std::vector<double>& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i]) ||
        std::fabs(a[i] - b[i]) > 1e-12 * (1.0 + std::fabs(a[i]))) {
      std::printf("FAIL %s at %zu: %.17g vs %.17g\n", what, i, a[i], b[i]);
      return false;
    }
  }
  return true;
}

bool same(const char* what, const std::vector<double>& a, const std::vector<double>& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || a[i] != b[i]) {
      std::printf("FAIL %s at %zu: %g vs %g\n", what, i, a[i], b[i]);
      return false;
    }
  }
  return true;
}

}  // namespace

// conv_im2col_cl / conv_col2im_cl against the deformable channels-last kernels
// at zero offsets and mask 1 (one deformable group): the same columns, the
// same input gradient.
bool plain_conv_matches_zero_offsets(DeformConvGeometry g, const std::vector<double>& x,
                                     const std::vector<double>& grad_pm) {
  g.deformable_groups = 1;
  const int64_t chunk = g.batch, K = g.kernel_size(), hw = g.out_plane();
  const std::vector<double> zero(chunk * 2 * K * hw, 0.0), one(chunk * K * hw, 1.0);
  const size_t cl_elements = chunk * pdcn::cpu::channels_last_image_elements(g);
  std::vector<double> x_cl(cl_elements), plain(grad_pm.size(), -7.0), deform(grad_pm.size(), -5.0);
  pdcn::cpu::to_channels_last(g, x.data(), x_cl.data(), 0, chunk);
  pdcn::cpu::conv_im2col_cl(g, x_cl.data(), plain.data(), chunk);
  pdcn::cpu::deform_im2col_cl(g, zero.data(), one.data(), x_cl.data(), deform.data(), 0, chunk);
  std::vector<double> grad_plain(cl_elements, -7.0), grad_deform(cl_elements, -5.0);
  std::vector<double> columns(grad_pm.size()), grad_offset(zero.size()), grad_mask(one.size());
  pdcn::cpu::conv_col2im_cl(g, grad_pm.data(), grad_plain.data(), chunk);
  pdcn::cpu::deform_backward_cl(g, zero.data(), one.data(), x_cl.data(), grad_pm.data(),
                                columns.data(), grad_deform.data(), grad_offset.data(),
                                grad_mask.data(), 0, chunk);
  return same("plain columns", plain, deform) && close("plain grad_x", grad_plain, grad_deform);
}

// Entries of `bad` (run on a poisoned input) whose clean run `base` does not
// change when a marker is added at the poisoned pixels (`probe`) must equal
// `base` bit for bit; there must be such entries and dependent ones.
bool equal_where_independent(const char* what, const std::vector<double>& bad,
                             const std::vector<double>& base, const std::vector<double>& probe) {
  size_t dependent = 0;
  for (size_t i = 0; i < bad.size(); ++i) {
    if (probe[i] != base[i]) {
      ++dependent;
    } else if (std::memcmp(&bad[i], &base[i], sizeof(double)) != 0) {
      std::printf("FAIL %s at %zu: %g, independent of the bad pixels, vs %g\n", what, i, bad[i],
                  base[i]);
      return false;
    }
  }
  if (dependent == 0 || 2 * dependent >= bad.size()) {
    std::printf("FAIL %s: %zu of %zu entries depend on the bad pixels\n", what, dependent,
                bad.size());
    return false;
  }
  return true;
}

// A non-finite input value at pixel 0 of every plane (where the plane layout
// points an out-of-map neighbour) and at one inner pixel reaches, on both
// paths, only the columns and the offset/mask gradients that depend on it.
// Random offsets keep samples off the grid lines, so that every in-map
// neighbour has a nonzero weight (one of zero weight is multiplied by its
// value, as in Paddle's op: docs/ops.md).
bool non_finite_values_reach_only_dependents(const DeformConvGeometry& g,
                                             const std::vector<double>& x,
                                             const std::vector<double>& offset,
                                             const std::vector<double>& mask,
                                             const std::vector<double>& grad_columns) {
  auto clean = x, poisoned = x, probe = x;
  const int64_t plane = g.in_plane(), inner = (g.in_h / 2) * g.in_w + g.in_w / 2;
  for (int64_t nc = 0; nc < g.batch * g.in_channels; ++nc) {
    for (int64_t pixel : {int64_t{0}, inner}) {
      const int64_t i = nc * plane + pixel;
      clean[i] = 0.0;
      poisoned[i] = nc % 2 ? NAN : INFINITY;
      probe[i] = 1.0;
    }
  }
  bool ok = true;
  for (auto path : {run_plane, run_channels_last}) {
    const Outputs bad = path(g, poisoned, offset, mask, grad_columns);
    const Outputs base = path(g, clean, offset, mask, grad_columns);
    const Outputs marked = path(g, probe, offset, mask, grad_columns);
    ok = ok && equal_where_independent("columns", bad.columns, base.columns, marked.columns) &&
         equal_where_independent("grad_offset", bad.grad_offset, base.grad_offset,
                                       marked.grad_offset) &&
         equal_where_independent("grad_mask", bad.grad_mask, base.grad_mask, marked.grad_mask) &&
         same("grad_x", bad.grad_x, base.grad_x);
  }
  return ok;
}

int main() {
  DeformConvGeometry g{};
  g.batch = 2; g.in_channels = 4; g.in_h = 5; g.in_w = 7; g.out_channels = 4;
  g.kernel_h = 3; g.kernel_w = 3; g.stride_h = g.stride_w = 1; g.pad_h = g.pad_w = 1;
  g.dilation_h = g.dilation_w = 1; g.groups = 1; g.deformable_groups = 2;
  g.out_h = 5; g.out_w = 7;
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 1.0);
  auto randoms = [&](size_t n, double scale) {
    std::vector<double> v(n);
    for (auto& e : v) e = scale * normal(rng);
    return v;
  };
  int failures = 0;
  const double poisons[] = {NAN, INFINITY, -INFINITY, 1e30, -1e30, 3e9, -3e9, 2.5e9};
  // Conv groups that split deformable groups (6 channels, 3 conv groups, 2
  // deformable groups: runs of 1 and 2 channels), stride 2, dilation 2.
  DeformConvGeometry split = g;
  split.in_channels = 6; split.out_channels = 6; split.groups = 3; split.deformable_groups = 2;
  split.stride_h = split.stride_w = 2; split.dilation_h = 2; split.pad_h = 2;
  split.out_h = (split.in_h + 2 * split.pad_h - (2 * 2 + 1)) / 2 + 1;
  split.out_w = (split.in_w + 2 * split.pad_w - 3) / 2 + 1;
  for (const DeformConvGeometry& geo : {g, split}) {
    const int64_t K = geo.kernel_size(), hw = geo.out_plane();
    const auto x = randoms(geo.batch * geo.in_channels * geo.in_plane(), 1.0);
    const auto offset = randoms(geo.batch * geo.deformable_groups * 2 * K * hw, 2.0);
    const auto mask = randoms(geo.batch * geo.deformable_groups * K * hw, 1.0);
    const auto grad_columns = randoms(geo.column_elements(geo.batch), 1.0);
    for (double poison : poisons) {
      auto bad = offset, far = offset;
      for (size_t i = 0; i < bad.size(); i += 3) {
        bad[i] = poison;
        far[i] = 1e4;
      }
      const Outputs a = run(geo, x, bad, mask, grad_columns),
                    b = run(geo, x, far, mask, grad_columns);
      const bool ok = same("columns", a.columns, b.columns) && same("grad_x", a.grad_x, b.grad_x) &&
                      same("grad_mask", a.grad_mask, b.grad_mask);
      // Offset gradients of the poisoned entries are zero in both runs; compare all.
      const bool ok_offset = same("grad_offset", a.grad_offset, b.grad_offset);
      std::printf("groups %ld, offset %-8g %s\n", static_cast<long>(geo.groups), poison,
                  ok && ok_offset ? "ok" : "FAIL");
      failures += !(ok && ok_offset);
    }
  }
  const int64_t K = g.kernel_size(), hw = g.out_plane();
  const auto x = randoms(g.batch * g.in_channels * g.in_plane(), 1.0);
  const auto grad_columns = randoms(g.column_elements(g.batch), 1.0);
  // One channel per deformable group (per-channel sampling), poisoned offsets.
  DeformConvGeometry one = g;
  one.deformable_groups = one.in_channels;
  const auto offset1 = randoms(one.batch * one.deformable_groups * 2 * K * hw, 2.0);
  auto poisoned1 = offset1;
  for (size_t i = 0; i < poisoned1.size(); i += 5) poisoned1[i] = poisons[(i / 5) % 8];
  const auto mask1 = randoms(one.batch * one.deformable_groups * K * hw, 1.0);
  run(one, x, poisoned1, mask1, grad_columns);  // exits on a mismatch between the paths
  std::printf("one channel per group: both paths agree\n");
  for (const DeformConvGeometry& geo : {g, split, one}) {
    const int64_t points = geo.batch * geo.deformable_groups * geo.kernel_size() * geo.out_plane();
    const auto xs = randoms(geo.batch * geo.in_channels * geo.in_plane(), 1.0);
    const auto grads = randoms(geo.column_elements(geo.batch), 1.0);
    const bool ok = non_finite_values_reach_only_dependents(
        geo, xs, randoms(2 * points, 2.0), randoms(points, 1.0), grads);
    std::printf("non-finite input values, %ld groups, %ld deformable: %s\n",
                static_cast<long>(geo.groups), static_cast<long>(geo.deformable_groups),
                ok ? "ok" : "FAIL");
    failures += !ok;
  }
  for (const DeformConvGeometry& geo : {g, split}) {
    const bool ok = plain_conv_matches_zero_offsets(geo,
        randoms(geo.batch * geo.in_channels * geo.in_plane(), 1.0),
        randoms(geo.column_elements(geo.batch), 1.0));
    std::printf("plain conv, groups %ld: %s\n", static_cast<long>(geo.groups), ok ? "ok" : "FAIL");
    failures += !ok;
  }
  std::printf(failures ? "FAILED\n" : "CPU kernels: poisoned offsets stay in bounds and give zero samples\n");
  return failures ? 1 : 0;
}
