// Native test of the CPU inline-stencil path (one channel per deformable group, as in
// per-channel deformable sampling) under AddressSanitizer: im2col, the separate coordinate
// gradient and col2im passes, and the fused backward must equal the stencil-table kernels
// bit for bit (same math, same summation order), also with NaN / Inf / huge offsets.
// Run by custom_ops/tests/run_cpu_native.sh.
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

Outputs zeros(const DeformConvGeometry& g, size_t x, size_t offset, size_t mask) {
  Outputs o;
  o.columns.assign(g.column_elements(g.batch), 0.0);
  o.grad_x.assign(x, 0.0);
  o.grad_offset.assign(offset, 0.0);
  o.grad_mask.assign(mask, 0.0);
  return o;
}

// mode 0: stencil table; 1: inline passes; 2: inline im2col + fused backward.
Outputs run(int mode, const DeformConvGeometry& g, const std::vector<double>& x,
            const std::vector<double>& offset, const double* mask,
            const std::vector<double>& grad_columns) {
  const size_t mask_size = mask ? g.batch * g.deformable_groups * g.kernel_size() * g.out_plane() : 0;
  Outputs o = zeros(g, x.size(), offset.size(), mask_size);
  double* gm = mask ? o.grad_mask.data() : nullptr;
  const int64_t chunk = g.batch;
  if (mode == 0) {
    std::vector<pdcn::cpu::Stencil<double>> st(pdcn::cpu::deform_stencil_count(g, chunk));
    pdcn::cpu::deform_build_stencils(g, offset.data(), mask, 0, chunk, st.data());
    pdcn::cpu::deform_im2col(g, st.data(), x.data(), o.columns.data(), 0, chunk);
    pdcn::cpu::deform_coord_grad(g, st.data(), grad_columns.data(), x.data(),
                                 o.grad_offset.data(), gm, 0, chunk);
    pdcn::cpu::deform_col2im(g, st.data(), grad_columns.data(), o.grad_x.data(), 0, chunk);
    return o;
  }
  pdcn::cpu::deform_im2col_inline(g, offset.data(), mask, x.data(), o.columns.data(), 0, chunk);
  if (mode == 1) {
    pdcn::cpu::deform_coord_grad_inline(g, offset.data(), mask, grad_columns.data(), x.data(),
                                        o.grad_offset.data(), gm, 0, chunk);
    pdcn::cpu::deform_col2im_inline(g, offset.data(), mask, grad_columns.data(),
                                    o.grad_x.data(), 0, chunk);
  } else {
    pdcn::cpu::deform_backward_inline(g, offset.data(), mask, grad_columns.data(), x.data(),
                                      o.grad_x.data(), o.grad_offset.data(), gm, 0, chunk);
  }
  return o;
}

bool same(const char* what, int mode, const std::vector<double>& a, const std::vector<double>& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || a[i] != b[i]) {
      std::printf("FAIL mode %d %s at %zu: %g vs %g\n", mode, what, i, a[i], b[i]);
      return false;
    }
  }
  return true;
}

}  // namespace

int main() {
  DeformConvGeometry g{};
  g.batch = 2; g.in_channels = 3; g.in_h = 5; g.in_w = 6; g.out_channels = 3;
  g.kernel_h = 2; g.kernel_w = 3; g.stride_h = 1; g.stride_w = 2; g.pad_h = 1; g.pad_w = 1;
  g.dilation_h = 2; g.dilation_w = 1; g.groups = 3; g.deformable_groups = 3;  // 1 channel each
  g.out_h = (g.in_h + 2 * g.pad_h - (g.dilation_h * (g.kernel_h - 1) + 1)) / g.stride_h + 1;
  g.out_w = (g.in_w + 2 * g.pad_w - (g.dilation_w * (g.kernel_w - 1) + 1)) / g.stride_w + 1;
  if (!pdcn::cpu::deform_stencils_inline(g)) {
    std::printf("FAIL: geometry should take the inline path\n");
    return 1;
  }
  std::mt19937_64 rng(11);
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
  const double poisons[] = {0.0 /* none */, NAN, INFINITY, -INFINITY, 1e30, -3e9};
  int failures = 0, cases = 0;
  for (double poison : poisons) {
    auto off = offset;
    if (poison != 0.0) {
      for (size_t i = 0; i < off.size(); i += 3) off[i] = poison;
    }
    for (const double* m : {mask.data(), static_cast<const double*>(nullptr)}) {
      const Outputs ref = run(0, g, x, off, m, grad_columns);
      for (int mode = 1; mode <= 2; ++mode) {
        const Outputs o = run(mode, g, x, off, m, grad_columns);
        const bool ok = same("columns", mode, o.columns, ref.columns) &&
                        same("grad_x", mode, o.grad_x, ref.grad_x) &&
                        same("grad_offset", mode, o.grad_offset, ref.grad_offset) &&
                        same("grad_mask", mode, o.grad_mask, ref.grad_mask);
        failures += ok ? 0 : 1;
        ++cases;
      }
    }
  }
  if (failures) {
    std::printf("%d of %d inline-path cases FAILED\n", failures, cases);
    return 1;
  }
  std::printf("inline stencil path: %d cases equal to the stencil table\n", cases);
  return 0;
}
