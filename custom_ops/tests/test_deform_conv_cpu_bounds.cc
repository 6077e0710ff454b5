// Native test of the CPU deformable-convolution kernels under AddressSanitizer:
// NaN, Inf and huge offsets (1e30, 3e9) must never read or write outside the
// buffers, and must give exactly what an offset far outside the map gives
// (a zero sample with zero gradients). Run by custom_ops/tests/run_cpu_native.sh.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "deform_conv_cpu.h"

using pdcn::DeformConvGeometry;

namespace {

struct Outputs {
  std::vector<double> columns, grad_x, grad_offset, grad_mask;
};

// All passes with the given stencil source (a table or on-the-fly stencils).
template <typename Source>
Outputs run_with(const DeformConvGeometry& g, const Source& table, const std::vector<double>& x,
                 const std::vector<double>& offset, const std::vector<double>& mask,
                 const std::vector<double>& grad_columns) {
  Outputs o;
  const int64_t chunk = g.batch;
  o.columns.assign(g.column_elements(chunk), 0.0);
  o.grad_x.assign(x.size(), 0.0);
  o.grad_offset.assign(offset.size(), 0.0);
  o.grad_mask.assign(mask.size(), 0.0);
  pdcn::cpu::deform_im2col(g, table, x.data(), o.columns.data(), 0, chunk);
  pdcn::cpu::deform_coord_grad(g, table, grad_columns.data(), x.data(),
                               o.grad_offset.data(), o.grad_mask.data(), 0, chunk);
  pdcn::cpu::deform_col2im(g, table, grad_columns.data(), o.grad_x.data(), 0, chunk);
  return o;
}

bool same(const char* what, const std::vector<double>& a, const std::vector<double>& b);

// Runs with a stencil table and with on-the-fly stencils; both must agree exactly.
Outputs run(const DeformConvGeometry& g, const std::vector<double>& x,
            const std::vector<double>& offset, const std::vector<double>& mask,
            const std::vector<double>& grad_columns) {
  std::vector<pdcn::cpu::Stencil<double>> stencils(pdcn::cpu::deform_stencil_count(g, g.batch));
  pdcn::cpu::deform_build_stencils(g, offset.data(), mask.data(), 0, g.batch, stencils.data());
  const Outputs a = run_with(g, pdcn::cpu::StencilTable<double>{stencils.data()}, x, offset, mask,
                             grad_columns);
  const pdcn::cpu::StencilOnTheFly<double> on_the_fly{offset.data(), mask.data(), 0};
  const Outputs b = run_with(g, on_the_fly, x, offset, mask, grad_columns);
  if (!(same("table vs on-the-fly columns", a.columns, b.columns) &&
        same("table vs on-the-fly grad_x", a.grad_x, b.grad_x) &&
        same("table vs on-the-fly grad_offset", a.grad_offset, b.grad_offset) &&
        same("table vs on-the-fly grad_mask", a.grad_mask, b.grad_mask))) {
    std::exit(1);
  }
  return a;
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
  const int64_t K = g.kernel_size(), hw = g.out_plane();
  const auto x = randoms(g.batch * g.in_channels * g.in_plane(), 1.0);
  const auto offset = randoms(g.batch * g.deformable_groups * 2 * K * hw, 2.0);
  const auto mask = randoms(g.batch * g.deformable_groups * K * hw, 1.0);
  const auto grad_columns = randoms(g.column_elements(g.batch), 1.0);
  const double poisons[] = {NAN, INFINITY, -INFINITY, 1e30, -1e30, 3e9, -3e9, 2.5e9};
  int failures = 0;
  for (double poison : poisons) {
    auto bad = offset, far = offset;
    for (size_t i = 0; i < bad.size(); i += 3) {
      bad[i] = poison;
      far[i] = 1e4;
    }
    const Outputs a = run(g, x, bad, mask, grad_columns), b = run(g, x, far, mask, grad_columns);
    const bool ok = same("columns", a.columns, b.columns) && same("grad_x", a.grad_x, b.grad_x) &&
                    same("grad_mask", a.grad_mask, b.grad_mask);
    // Offset gradients of the poisoned entries are zero in both runs; compare all.
    const bool ok_offset = same("grad_offset", a.grad_offset, b.grad_offset);
    std::printf("offset %-8g %s\n", poison, ok && ok_offset ? "ok" : "FAIL");
    failures += !(ok && ok_offset);
  }
  // One channel per deformable group: the fused backward equals the two passes.
  DeformConvGeometry one = g;
  one.deformable_groups = one.in_channels;
  const auto offset1 = randoms(one.batch * one.deformable_groups * 2 * K * hw, 2.0);
  auto poisoned1 = offset1;
  for (size_t i = 0; i < poisoned1.size(); i += 5) poisoned1[i] = poisons[(i / 5) % 8];
  const auto mask1 = randoms(one.batch * one.deformable_groups * K * hw, 1.0);
  const pdcn::cpu::StencilOnTheFly<double> source{poisoned1.data(), mask1.data(), 0};
  const Outputs separate = run_with(one, source, x, poisoned1, mask1, grad_columns);
  Outputs fused = separate;
  std::fill(fused.grad_x.begin(), fused.grad_x.end(), -7.0);
  std::fill(fused.grad_offset.begin(), fused.grad_offset.end(), -7.0);
  std::fill(fused.grad_mask.begin(), fused.grad_mask.end(), -7.0);
  pdcn::cpu::deform_backward_one_channel_groups(one, source, grad_columns.data(), x.data(),
                                                fused.grad_x.data(), fused.grad_offset.data(),
                                                fused.grad_mask.data(), 0, one.batch);
  const bool fused_ok = same("fused grad_x", fused.grad_x, separate.grad_x) &&
                        same("fused grad_offset", fused.grad_offset, separate.grad_offset) &&
                        same("fused grad_mask", fused.grad_mask, separate.grad_mask);
  std::printf("one channel per group, fused backward %s\n", fused_ok ? "ok" : "FAIL");
  failures += !fused_ok;
  std::printf(failures ? "FAILED\n" : "CPU kernels: poisoned offsets stay in bounds and give zero samples\n");
  return failures ? 1 : 0;
}
