// Native CPU test of fixed_point.h, the arithmetic of the deterministic CUDA
// backward: sums of encoded contributions are bitwise the same in any order,
// close to the exact sum within the documented resolution, never overflow at
// the bound, and non-finite contributions decode as a float sum would.
// Built and run under ASan/UBSan by run_cpu_native.sh.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "fixed_point.h"

namespace fp = pdcn::fixed_point;

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  std::printf("  %-60s %s\n", what, ok ? "ok" : "FAIL");
  if (!ok) ++failures;
}

// The device scatter's sum: wrapping unsigned 64-bit adds of the encodings
// (atomicAdd on unsigned long long) plus ORed flags.
double scatter_sum(const std::vector<double>& v, int e) {
  unsigned long long total = 0;
  unsigned flags = 0;
  for (double x : v) {
    const unsigned f = fp::flags_of(x);
    if (f != 0u) {
      flags |= f;
    } else {
      total += static_cast<unsigned long long>(fp::encode(x, e));
    }
  }
  return fp::decode(static_cast<long long>(total), flags, e);
}

double max_abs(const std::vector<double>& v) {
  unsigned long long bits = 0;  // as the device's atomicMax over ordered bits
  for (double x : v) bits = std::max(bits, fp::ordered_bits(std::fabs(x)));
  return fp::from_ordered_bits(bits);
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

}  // namespace

int main() {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> unit(-1.0, 1.0);

  // Wide dynamic range: magnitudes from 1e-6 to 1e3 with both signs.
  std::vector<double> v(20000);
  for (auto& x : v) x = normal(rng) * std::pow(10.0, 9.0 * (unit(rng) + 1.0) / 2.0 - 6.0);
  const double m = max_abs(v);
  const int e = fp::scale_exponent(m, static_cast<double>(v.size()));
  long double exact = 0;
  for (double x : v) exact += x;
  const double s1 = scatter_sum(v, e);
  std::vector<double> shuffled = v;
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  const double s2 = scatter_sum(shuffled, e);
  std::reverse(shuffled.begin(), shuffled.end());
  const double s3 = scatter_sum(shuffled, e);
  expect(same_bits(s1, s2) && same_bits(s1, s3), "sum is bitwise the same in three orders");
  const double resolution = std::ldexp(1.0, e - 62);
  const double err = std::fabs(s1 - static_cast<double>(exact));
  std::printf("  error %.3e, resolution %.3e, bound %.3e\n", err, resolution,
              resolution * v.size());
  expect(err <= resolution * v.size(), "error within count * resolution");
  expect(err <= 1e-12 * m, "error below 1e-12 of the largest contribution");

  // At the bound: every contribution +max (the worst case for overflow).
  std::vector<double> full(1 << 16, 3.5);
  const int ef = fp::scale_exponent(3.5, static_cast<double>(full.size()));
  const double sf = scatter_sum(full, ef);
  expect(sf == 3.5 * full.size(), "count contributions at the bound: exact, no overflow");
  std::vector<double> neg(1 << 16, -3.5);
  expect(scatter_sum(neg, ef) == -3.5 * neg.size(), "negative bound: exact, no overflow");

  // A bound near DBL_MAX: bound * count overflows a double, the exponent still bounds
  // the sums (no encoding past 2^62, no garbage exponent).
  const double big = std::numeric_limits<double>::max() / 4;
  const int eb = fp::scale_exponent(big, 1e6);
  expect(eb > std::numeric_limits<double>::max_exponent &&
             std::ldexp(big, 62 - eb) * 1e6 < std::ldexp(1.0, 62),
         "bound * count past DBL_MAX: a finite exponent above both");
  std::vector<double> bigs(1000, big / 1e3);
  bigs[7] = -big;
  long double big_sum = 0;
  for (double x : bigs) big_sum += x;
  expect(std::fabs(scatter_sum(bigs, eb) - static_cast<double>(big_sum)) <=
             std::ldexp(1.0, eb - 62) * bigs.size(),
         "sum at that exponent: within count * resolution");

  // Non-finite contributions decode as a float sum would.
  std::vector<double> with_inf = {1.0, INFINITY, 2.0};
  expect(scatter_sum(with_inf, fp::scale_exponent(2.0, 3)) == INFINITY, "+inf contribution");
  std::vector<double> with_neg_inf = {1.0, -INFINITY};
  expect(scatter_sum(with_neg_inf, fp::scale_exponent(1.0, 2)) == -INFINITY, "-inf contribution");
  std::vector<double> both = {INFINITY, -INFINITY};
  expect(std::isnan(scatter_sum(both, 0)), "+inf and -inf give NaN");
  std::vector<double> with_nan = {1.0, NAN};
  expect(std::isnan(scatter_sum(with_nan, fp::scale_exponent(1.0, 2))), "NaN contribution");
  expect(max_abs(with_nan) == 1.0 && max_abs(with_inf) == 2.0,
         "the maximum skips non-finite contributions");

  // Zeros only: scale exponent 0 and a zero result.
  std::vector<double> zeros(10, 0.0);
  expect(scatter_sum(zeros, fp::scale_exponent(max_abs(zeros), 10)) == 0.0, "all-zero sum");

  // The 2-bit flags pack 16 elements to a word without overlap.
  unsigned word = 0;
  for (int64_t i = 0; i < fp::kFlagsPerWord; ++i) word |= (i % 3 + 1u) << fp::flag_shift(i);
  bool unpacked = true;
  for (int64_t i = 0; i < fp::kFlagsPerWord; ++i) {
    unpacked = unpacked && ((word >> fp::flag_shift(i)) & 3u) == i % 3 + 1u;
  }
  expect(unpacked && fp::flag_words(17) == 2 && fp::flag_words(16) == 1, "flag packing");

  std::printf(failures ? "FAILED: %d checks\n" : "all fixed-point checks passed\n", failures);
  return failures ? 1 : 0;
}
