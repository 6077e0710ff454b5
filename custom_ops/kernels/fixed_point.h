// Deterministic summation by fixed-point accumulation: the arithmetic shared
// by the CUDA deterministic backward (atomic integer adds, whose result does
// not depend on the order of the adds) and its CPU tests.
//
// A scatter whose contributions v each satisfy |v| <= bound_each and of which
// at most `count` land on one output element has every partial sum below
// bound_each * count < 2^e. Each contribution is encoded as the 64-bit
// integer round(v * 2^(62 - e)); the integer sums cannot overflow, and integer
// addition is associative, so any order of the adds gives the same bits.
// Resolution: 2^(e - 62), i.e. about bound_each * count * 2^-62 absolute per
// add (float32 keeps 2^-24 relative, so at float32 the fixed point is finer
// for every contribution above about 2^-38 of the largest sum).
//
// Non-finite contributions cannot be encoded: they set flags instead
// (kPositiveInf, kNegativeInf; NaN sets both), ORed per element (also order
// independent), and decode gives +inf, -inf or NaN as a float sum would.
#pragma once

#include <cmath>

#include "common.h"

namespace pdcn {
namespace fixed_point {

constexpr unsigned kPositiveInf = 1u, kNegativeInf = 2u;
// Flags are packed 16 elements (2 bits each) to a 32-bit word.
constexpr int64_t kFlagsPerWord = 16;

PDCN_HD int64_t flag_words(int64_t elements) {
  return (elements + kFlagsPerWord - 1) / kFlagsPerWord;
}

PDCN_HD bool is_finite_value(double v) { return v - v == 0.0; }  // false for inf and NaN

// The exponent e with bound_each * count < 2^e (bound_each finite, >= 0).
// The encoding scale is 2^(62 - e). Where the product overflows a double
// (bound_each near DBL_MAX), the exponents add: bound_each < 2^eb and
// count < 2^ec give bound_each * count < 2^(eb + ec).
PDCN_HD int scale_exponent(double bound_each, double count) {
  const double c = count < 1.0 ? 1.0 : count;
  if (!(bound_each > 0.0)) return 0;  // nothing but zeros to encode
  const double bound = bound_each * c;
  int e = 0;
  if (is_finite_value(bound)) {
    ::frexp(bound, &e);  // bound = m * 2^e, 0.5 <= m < 1: bound < 2^e
    return e;
  }
  int ec = 0;
  ::frexp(bound_each, &e);
  ::frexp(c, &ec);
  return e + ec;
}

// round(v * 2^(62 - e)) for a finite v with |v| <= bound_each.
PDCN_HD long long encode(double v, int e) { return ::llrint(::ldexp(v, 62 - e)); }

// Flags of a non-finite contribution (0 for a finite one).
PDCN_HD unsigned flags_of(double v) {
  if (is_finite_value(v)) return 0u;
  if (v != v) return kPositiveInf | kNegativeInf;
  return v > 0 ? kPositiveInf : kNegativeInf;
}

PDCN_HD unsigned flag_shift(int64_t element) {
  return static_cast<unsigned>(2 * (element % kFlagsPerWord));
}

// The sum an encoded total and its flags stand for.
PDCN_HD double decode(long long total, unsigned flags, int e) {
  if (flags == (kPositiveInf | kNegativeInf)) return NAN;
  if (flags == kPositiveInf) return INFINITY;
  if (flags == kNegativeInf) return -INFINITY;
  return ::ldexp(static_cast<double>(total), e - 62);
}

// Bits of a non-negative float / double that order as the values do, for an
// atomic maximum over unsigned integers (negative and NaN inputs map to 0).
PDCN_HD unsigned long long ordered_bits(double v) {
  if (!(v > 0.0) || !is_finite_value(v)) return 0ull;
  union {
    double d;
    unsigned long long u;
  } bits;
  bits.d = v;
  return bits.u;
}

PDCN_HD double from_ordered_bits(unsigned long long u) {
  union {
    double d;
    unsigned long long u;
  } bits;
  bits.u = u;
  return bits.d;
}

}  // namespace fixed_point
}  // namespace pdcn
