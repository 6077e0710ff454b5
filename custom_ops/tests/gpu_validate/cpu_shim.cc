// CPU stand-in for pdcn_shim.cu with the same C API (float32/float64 only), built over the
// project's CPU drivers: lets validate.py --cpu-mock test the harness without a GPU.
//   g++ -O2 -std=c++17 -fopenmp -shared -fPIC -I custom_ops/kernels cpu_shim.cc -o libpdcn_cpu_shim.so
// Status codes: 0 ok, kUnsupported for a dtype the CPU drivers lack. Scratch sizes are 0.
// Boxes whose roi_batch entry is negative (roi_batch_from_counts: not covered by the counts)
// pool to zero and get no gradient, as the CUDA kernels promise; the shim arranges that itself
// so that it holds over CPU drivers that do not know the rule.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "deform_aggregate_cpu.h"
#include "deform_conv_cpu.h"
#include "deform_psroi_pool_cpu.h"
#include "deform_roi_pool_cpu.h"
#include "shim_geometry.h"
using namespace pdcn;
namespace {
constexpr int kUnsupported = 99;
using shim::conv;
using shim::psroi;
using shim::roi;
template <typename F> int by_dtype(int d, const F& f) {
  if (d == 0) f(float{}); else if (d == 1) f(double{}); else return kUnsupported;
  return 0;
}

// roi_batch with uncovered boxes (< 0) sent to image 0, and the list of those boxes.
struct CoveredBatch {
  std::vector<int> batch;
  std::vector<int64_t> uncovered;
  CoveredBatch(const int* b, int64_t k) : batch(b, b + k) {
    for (int64_t i = 0; i < k; ++i) {
      if (batch[i] < 0) { batch[i] = 0; uncovered.push_back(i); }
    }
  }
};
template <typename T> void zero_boxes(T* data, const std::vector<int64_t>& boxes, int64_t per_box) {
  for (int64_t k : boxes) std::fill(data + k * per_box, data + (k + 1) * per_box, T(0));
}
// grad_out with the rows of uncovered boxes zeroed (a copy only when there are any).
template <typename T> const T* masked_grad(const T* go, const CoveredBatch& cb, int64_t per_box,
                                           std::vector<T>* storage) {
  if (cb.uncovered.empty()) return go;
  storage->assign(go, go + static_cast<int64_t>(cb.batch.size()) * per_box);
  zero_boxes(storage->data(), cb.uncovered, per_box);
  return storage->data();
}
}  // namespace
extern "C" {
const char* pdcn_error_string(int code) {
  if (code == 0) return "no error";
  if (code == kUnsupported) return "cpu mock: dtype not supported by the CPU drivers";
  return "cpu mock: unknown status";
}
int pdcn_is_cuda() { return 0; }
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
// acc in acc_t<T> (T itself for float32/float64), src in T.
int pdcn_accumulate(int d, void* acc, const void* src, long long n, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t);
    acc_t<T>* a = static_cast<acc_t<T>*>(acc); const T* s = static_cast<const T*>(src);
    cpu_parallel_for(n, [&](int64_t i) { a[i] += static_cast<acc_t<T>>(s[i]); }); });
}
int pdcn_convert_from_acc(int d, const void* acc, void* dst, long long n, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t);
    const acc_t<T>* a = static_cast<const acc_t<T>*>(acc); T* o = static_cast<T*>(dst);
    cpu_parallel_for(n, [&](int64_t i) { o[i] = static_cast<T>(a[i]); }); });
}
// Box k belongs to the first image whose running count exceeds k; beyond the sum: -1.
// Negative counts count as zero. counts and roi_batch are host memory here.
int pdcn_roi_batch_from_counts(const void* counts, int counts_int64, long long batch,
                               long long num_rois, int* roi_batch, void*) {
  int64_t k = 0;
  for (int64_t n = 0; n < batch && k < num_rois; ++n) {
    int64_t c = counts_int64 ? static_cast<const int64_t*>(counts)[n]
                             : static_cast<const int32_t*>(counts)[n];
    for (c = std::max<int64_t>(c, 0); c > 0 && k < num_rois; --c) roi_batch[k++] = static_cast<int>(n);
  }
  for (; k < num_rois; ++k) roi_batch[k] = -1;
  return 0;
}
long long pdcn_roi_scratch_bytes(int, const long long*, const float*, int) { return 0; }
int pdcn_roi_forward(int d, const long long* i, const float* f, const void* x, const void* b,
                     const int* batch, const void* off, void* out, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t); const auto g = roi(i, f);
    const CoveredBatch cb(batch, g.num_rois);
    cpu::deform_roi_pool_forward<T>(g, (const T*)x, (const acc_t<T>*)b, cb.batch.data(),
                                    (const T*)off, (T*)out);
    zero_boxes((T*)out, cb.uncovered, g.channels * g.bins()); });
}
int pdcn_roi_backward(int d, const long long* i, const float* f, const void* go, const void* x,
                      const void* b, const int* batch, const void* off, void* gx, void* goff,
                      void*, int, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t); const auto g = roi(i, f);
    const CoveredBatch cb(batch, g.num_rois);
    std::vector<T> storage;
    const T* grad = masked_grad((const T*)go, cb, g.channels * g.bins(), &storage);
    const auto* boxes = (const acc_t<T>*)b;
    cpu::deform_roi_pool_backward_x<T>(g, grad, boxes, cb.batch.data(), (const T*)off, (T*)gx);
    if (goff) {
      cpu::deform_roi_pool_backward_offset<T>(g, grad, (const T*)x, boxes, cb.batch.data(),
                                              (const T*)off, (T*)goff);
      zero_boxes((T*)goff, cb.uncovered, 2 * g.bins());
    } });
}
long long pdcn_psroi_scratch_bytes(int, const long long*, const float*, int) { return 0; }
int pdcn_psroi_forward(int d, const long long* i, const float* f, const void* x, const void* b,
                       const int* batch, const void* off, void* out, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t); const auto g = psroi(i, f);
    const CoveredBatch cb(batch, g.num_rois);
    cpu::deform_psroi_pool_forward<T>(g, (const T*)x, (const acc_t<T>*)b, cb.batch.data(),
                                      (const T*)off, (T*)out);
    zero_boxes((T*)out, cb.uncovered, g.out_channels * g.bins()); });
}
int pdcn_psroi_backward(int d, const long long* i, const float* f, const void* go, const void* x,
                        const void* b, const int* batch, const void* off, void* gx, void* goff,
                        void*, int, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t); const auto g = psroi(i, f);
    const CoveredBatch cb(batch, g.num_rois);
    std::vector<T> storage;
    const T* grad = masked_grad((const T*)go, cb, g.out_channels * g.bins(), &storage);
    const auto* boxes = (const acc_t<T>*)b;
    cpu::deform_psroi_pool_backward_x<T>(g, grad, boxes, cb.batch.data(), (const T*)off, (T*)gx);
    if (goff) {
      cpu::deform_psroi_pool_backward_offset<T>(g, grad, (const T*)x, boxes, cb.batch.data(),
                                                (const T*)off, (T*)goff);
      zero_boxes((T*)goff, cb.uncovered, 2 * g.offset_groups * g.parts());
    } });
}
long long pdcn_aggregate_scratch_bytes(int, const long long*, double, int) { return 0; }
int pdcn_aggregate_forward(int d, const long long* ga, double scale, const void* value, const void* off,
                           const void* w, void* out, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t);
    cpu::deform_aggregate_forward<T>(shim::aggregate(ga, scale), (const T*)value, (const T*)off, (const T*)w,
                                     (T*)out); });
}
// grad_offset (and, when fused, the padding of the shared tensor) must be zeroed by the caller
int pdcn_aggregate_backward(int d, const long long* ga, double scale, const void* value, const void* off,
                            const void* w, const void* gout, void* gv, void* goff, void* gw, void*, int, void*) {
  return by_dtype(d, [&](auto t) { using T = decltype(t);
    cpu::deform_aggregate_backward<T>(shim::aggregate(ga, scale), (const T*)value, (const T*)off, (const T*)w,
                                      (const T*)gout, (T*)gv, (T*)goff, (T*)gw); });
}
}
