// Native CPU test of the DCNv3/v4 aggregation's deterministic value gradient,
// the CUDA path's arithmetic run on the host: the bound of its max pass
// (aggregate_value_grad_bound), the exponent (fixed_point::scale_exponent over
// out_plane * K contributions per element, as deform_aggregate_cuda.cu) and
// its scatter (aggregate_backward_point's value half into fixed-point sums and
// flags, as deform_aggregate_value_grad_fixed_point_kernel), against the CPU
// driver's float sums. The same per-element functions run in the CUDA kernels,
// so this covers them without a GPU. Cases: random weights; an infinite
// weight at a (pixel, group) whose other weights are 1e6 times everyone
// else's (its bound once came out infinite and was dropped from the maximum:
// that item's finite contributions overflowed the encoding); NaN and infinite
// grad_out; float and double. Built and run under ASan/UBSan by
// run_cpu_native.sh.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "aggregate_test_geometry.h"
#include "deform_aggregate_cpu.h"
#include "fixed_point.h"

namespace fp = pdcn::fixed_point;
using pdcn::AggregateGeometry;

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  std::printf("  %-66s %s\n", what, ok ? "ok" : "FAIL");
  if (!ok) ++failures;
}

// The deterministic value gradient as the CUDA driver forms it (the order of the
// integer adds does not matter, so one host loop stands for the kernels).
template <typename T>
std::vector<double> deterministic_value_grad(const AggregateGeometry& g, const std::vector<T>& offset,
                                             const std::vector<T>& weight, const std::vector<T>& grad_out,
                                             int* exponent) {
  using Acc = pdcn::acc_t<T>;
  unsigned long long max_bits = 0;
  for (int64_t n = 0; n < g.batch; ++n) {
    for (int64_t p = 0; p < g.out_plane(); ++p) {
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        max_bits = std::max(max_bits, fp::ordered_bits(pdcn::aggregate_value_grad_bound(
                                          g, weight.data(), grad_out.data(), n, p, grp)));
      }
    }
  }
  const int e = fp::scale_exponent(fp::from_ordered_bits(max_bits),
                                   static_cast<double>(g.out_plane() * g.kernel_size()));
  *exponent = e;
  std::vector<unsigned long long> totals(g.value_elements(), 0ull);
  std::vector<unsigned> flags(g.value_elements(), 0u);
  for (int64_t n = 0; n < g.batch; ++n) {
    for (int64_t p = 0; p < g.out_plane(); ++p) {
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        for (int64_t k = 0; k < g.kernel_size(); ++k) {
          const auto st = pdcn::aggregate_stencil<Acc>(g, offset.data(), weight.data(), n, p, grp, k);
          pdcn::aggregate_backward_point<false, true, T, Acc>(
              g, st, static_cast<const T*>(nullptr), grad_out.data(), n, p, grp, 0, g.group_channels,
              [&](int64_t i, Acc v) {
                const unsigned f = fp::flags_of(v);
                if (f != 0u) {
                  flags[i] |= f;
                } else if (v != Acc(0)) {
                  totals[i] += static_cast<unsigned long long>(fp::encode(v, e));
                }
              },
              nullptr, nullptr, nullptr);
        }
      }
    }
  }
  std::vector<double> out(g.value_elements());
  for (size_t i = 0; i < out.size(); ++i) out[i] = fp::decode(static_cast<long long>(totals[i]), flags[i], e);
  return out;
}

// The deterministic gradient against the CPU driver's (a float sum): non-finite
// entries of the same class, finite ones within the float sum's rounding plus the
// fixed point's resolution per contribution.
template <typename T>
void check_case(const char* name, const AggregateGeometry& g, const std::vector<T>& value,
                const std::vector<T>& offset, const std::vector<T>& weight,
                const std::vector<T>& grad_out, bool fine = true) {
  std::printf("%s (%s)\n", name, sizeof(T) == 4 ? "float" : "double");
  std::vector<T> gv(g.value_elements()), go(offset.size()), gw(weight.size());
  pdcn::cpu::deform_aggregate_backward<T>(g, value.data(), offset.data(), weight.data(), grad_out.data(),
                                          gv.data(), go.data(), gw.data());
  int e = 0;
  const std::vector<double> det = deterministic_value_grad<T>(g, offset, weight, grad_out, &e);
  const double resolution = std::ldexp(1.0, e - 62) * static_cast<double>(g.out_plane() * g.kernel_size());
  const double rel = sizeof(T) == 4 ? 1e-5 : 1e-12;
  size_t bad = 0, non_finite = 0;
  double worst = 0, largest = 0;
  for (size_t i = 0; i < det.size(); ++i) {
    const double want = static_cast<double>(gv[i]);
    if (!std::isfinite(want)) {
      ++non_finite;
      if (std::isnan(want) ? !std::isnan(det[i]) : det[i] != want) ++bad;
      continue;
    }
    const double err = std::fabs(det[i] - want);
    worst = std::max(worst, err);
    largest = std::max(largest, std::fabs(want));
    if (!(err <= resolution + rel * (std::fabs(want) + 1.0))) ++bad;
  }
  std::printf("  max abs err %.3e over %zu elements (%zu non-finite), exponent %d\n", worst, det.size(),
              non_finite, e);
  expect(bad == 0, "deterministic value gradient equals the float sums");
  // fine: the exponent from the finite contributions alone (an infinite bound clamped
  // to DBL_MAX would keep the sums from overflowing but leave no precision)
  if (fine) expect(resolution <= 1e-9 * largest, "resolution below 1e-9 of the largest gradient");
}

template <typename T>
std::vector<T> normal(size_t n, double scale, std::mt19937_64& rng) {
  std::normal_distribution<double> d(0.0, scale);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(d(rng));
  return v;
}

template <typename T>
void run_all() {
  std::mt19937_64 rng(5);
  const AggregateGeometry g = make_aggregate_geometry(2, 6, 7, 3, 4, 3, 1, 1, 1.0);
  const int64_t K = g.kernel_size();
  const std::vector<T> value = normal<T>(g.value_elements(), 1.0, rng);
  const std::vector<T> offset = normal<T>(g.batch * g.out_plane() * g.groups * K * 2, 1.5, rng);
  const std::vector<T> weight = normal<T>(g.batch * g.out_plane() * g.groups * K, 1.0, rng);
  const std::vector<T> grad_out = normal<T>(g.out_elements(), 1.0, rng);
  check_case<T>("random weights", g, value, offset, weight, grad_out);

  // (n=0, p=9, grp=1): one weight inf, its others 1e4 times their size, everyone else's
  // 1e-2 times (the contributions of the item 1e6 times the rest's)
  std::vector<T> huge = weight;
  for (auto& w : huge) w *= T(1e-2);
  const int64_t at = g.weight_index(0, 9, 1, 0);
  for (int64_t k = 0; k < K; ++k) huge[at + k] = k == 4 ? T(INFINITY) : T(1e4) * weight[at + k];
  check_case<T>("an inf weight beside weights 1e6 x the others'", g, value, offset, huge, grad_out);
  const double bound = pdcn::aggregate_value_grad_bound(g, huge.data(), grad_out.data(), 0, 9, 1);
  expect(std::isfinite(bound) && bound > 1e3, "the item's bound: finite, from its finite weights");

  std::vector<T> bad_grad = grad_out;
  bad_grad[g.out_base(1, 20, 2) + 1] = T(NAN);
  bad_grad[g.out_base(0, 3, 0) + 2] = T(-INFINITY);
  for (int64_t c = 0; c < g.group_channels; ++c) bad_grad[g.out_base(0, 3, 0) + c] *= T(c == 2 ? 1 : 1e4);
  check_case<T>("NaN and -inf grad_out beside grad_out 1e4 x the others'", g, value, offset, weight, bad_grad);

  // The largest finite weights and grad_out: the product overflows to inf in float and
  // past DBL_MAX in double; the bound stays finite (clamped) and the exponent valid.
  std::vector<T> top = weight;
  std::vector<T> top_grad = grad_out;
  top[g.weight_index(1, 2, 0, 3)] = std::numeric_limits<T>::max();
  top_grad[g.out_base(1, 2, 0)] = std::numeric_limits<T>::max();
  check_case<T>("the dtype's largest weight and grad_out", g, value, offset, top, top_grad, false);
}

}  // namespace

int main() {
  run_all<float>();
  run_all<double>();
  std::printf(failures ? "FAILED: %d checks\n" : "all aggregation fixed-point checks passed\n", failures);
  return failures ? 1 : 0;
}
