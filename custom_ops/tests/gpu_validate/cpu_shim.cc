// CPU stand-in for pdcn_shim.cu with the same C API (float32/float64 only), built over the
// project's CPU drivers: lets validate.py --cpu-mock test the harness without a GPU.
#include <cstdint>
#include "deform_conv_cpu.h"
#include "deform_psroi_pool_cpu.h"
#include "deform_roi_pool_cpu.h"
#include "shim_geometry.h"
using namespace pdcn;
namespace {
using shim::conv;
using shim::psroi;
using shim::roi;
template <typename F> int by_dtype(int d, const F& f) {
  if (d == 0) f(float{}); else if (d == 1) f(double{}); else return 99;
  return 0;
}
}  // namespace
extern "C" {
const char* pdcn_error_string(int status) { return status == 0 ? "no error" : "unsupported dtype (CPU mock)"; }
long long pdcn_col2im_scratch_bytes(int, const long long*, long long, int) { return 0; }
int pdcn_im2col(int d, const long long* ga, const void* x, const void* off, const void* mask,
                void* cols, long long n0, long long chunk, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t); const auto g = conv(ga);
    cpu::StencilOnTheFly<T> s{(const T*)off, (const T*)mask, n0};
    cpu::deform_im2col(g, s, (const T*)x, (T*)cols, n0, chunk); });
}
int pdcn_col2im(int d, const long long* ga, const void* gc, const void* off, const void* mask,
                void* gx, void*, long long n0, long long chunk, int, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t); const auto g = conv(ga);
    cpu::StencilOnTheFly<T> s{(const T*)off, (const T*)mask, n0};
    cpu::deform_col2im(g, s, (const T*)gc, (T*)gx, n0, chunk); });
}
int pdcn_coord_grad(int d, const long long* ga, const void* gc, const void* x, const void* off,
                    const void* mask, void* goff, void* gmask, long long n0, long long chunk, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t); const auto g = conv(ga);
    cpu::StencilOnTheFly<T> s{(const T*)off, (const T*)mask, n0};
    cpu::deform_coord_grad(g, s, (const T*)gc, (const T*)x, (T*)goff, (T*)gmask, n0, chunk); });
}
int pdcn_columns_to_output(int d, const long long* ga, const void* r, void* o, long long n0,
                           long long chunk, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t);
    cpu::deform_columns_to_output(conv(ga), (const T*)r, (T*)o, n0, chunk); });
}
int pdcn_output_to_columns(int d, const long long* ga, const void* go, void* gt, long long n0,
                           long long chunk, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t);
    cpu::deform_output_to_columns(conv(ga), (const T*)go, (T*)gt, n0, chunk); });
}
int pdcn_accumulate(int d, void* acc, const void* src, long long n, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t); cpu::accumulate((T*)acc, (const T*)src, n); });
}
int pdcn_convert_from_acc(int d, const void* acc, void* dst, long long n, void*) {  // T == acc_t<T>
  return by_dtype(d, [&](auto t) { using T = decltype(t);
    for (long long i = 0; i < n; ++i) ((T*)dst)[i] = ((const T*)acc)[i]; });
}
int pdcn_roi_batch_from_counts(const void* counts, int wide, long long batch, long long k,
                               int* roi_batch, void*) {
  long long end = 0, n = 0;
  for (long long box = 0; box < k; ++box) {
    while (n < batch) {
      const long long c = wide ? ((const long long*)counts)[n] : ((const int*)counts)[n];
      if (box < end + (c > 0 ? c : 0)) break;
      end += c > 0 ? c : 0;
      ++n;
    }
    roi_batch[box] = n < batch ? (int)n : -1;
  }
  return 0;
}
long long pdcn_roi_scratch_bytes(int, const long long*, const float*, int) { return 0; }
int pdcn_roi_forward(int d, const long long* i, const float* f, const void* x, const void* b,
                     const int* batch, const void* off, void* out, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t);
    cpu::deform_roi_pool_forward<T>(roi(i, f), (const T*)x, (const acc_t<T>*)b, batch, (const T*)off, (T*)out); });
}
int pdcn_roi_backward(int d, const long long* i, const float* f, const void* go, const void* x,
                      const void* b, const int* batch, const void* off, void* gx, void* goff,
                      void*, int, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t); const auto g = roi(i, f);
    cpu::deform_roi_pool_backward_x<T>(g, (const T*)go, (const acc_t<T>*)b, batch, (const T*)off, (T*)gx);
    if (goff) cpu::deform_roi_pool_backward_offset<T>(g, (const T*)go, (const T*)x, (const acc_t<T>*)b,
                                                      batch, (const T*)off, (T*)goff); });
}
long long pdcn_psroi_scratch_bytes(int, const long long*, const float*, int) { return 0; }
int pdcn_psroi_forward(int d, const long long* i, const float* f, const void* x, const void* b,
                       const int* batch, const void* off, void* out, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t);
    cpu::deform_psroi_pool_forward<T>(psroi(i, f), (const T*)x, (const acc_t<T>*)b, batch, (const T*)off, (T*)out); });
}
int pdcn_psroi_backward(int d, const long long* i, const float* f, const void* go, const void* x,
                        const void* b, const int* batch, const void* off, void* gx, void* goff,
                        void*, int, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t); const auto g = psroi(i, f);
    cpu::deform_psroi_pool_backward_x<T>(g, (const T*)go, (const acc_t<T>*)b, batch, (const T*)off, (T*)gx);
    if (goff) cpu::deform_psroi_pool_backward_offset<T>(g, (const T*)go, (const T*)x, (const acc_t<T>*)b,
                                                        batch, (const T*)off, (T*)goff); });
}
}
