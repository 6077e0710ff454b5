// extern "C" face of the framework-neutral CUDA entry points, for ctypes
// (validate.py). Each call returns the entry point's own status: 0, or the
// cudaError_t (as int) of its first failed launch; pdcn_error_string names it.
// cpu_shim.cc implements the same C API over the CPU drivers (--cpu-mock).

#include "deform_aggregate_cuda.h"
#include "deform_conv_cuda.h"
#include "deform_roi_pool_cuda.h"
#include "shim_geometry.h"

using pdcn::DeformConvGeometry;
using pdcn::DeformPSRoiPoolGeometry;
using pdcn::DeformRoiPoolGeometry;
using pdcn::cuda::DType;

namespace {
using shim::conv;
using shim::psroi;
using shim::roi;
DType dt(int d) { return static_cast<DType>(d); }
}  // namespace

extern "C" {
const char* pdcn_error_string(int code) { return pdcn::cuda::error_string(code); }
// 1: the real kernels (cpu_shim.cc answers 0).
int pdcn_is_cuda() { return 1; }
long long pdcn_col2im_scratch_bytes(int d, const long long* g, long long chunk, int det) {
  return pdcn::cuda::col2im_scratch_bytes(dt(d), conv(g), chunk, det != 0);
}
int pdcn_im2col(int d, const long long* g, const void* x, const void* off, const void* mask,
                void* cols, long long n0, long long chunk, void* s) {
  return pdcn::cuda::deform_im2col(dt(d), conv(g), x, off, mask, cols, n0, chunk, s);
}
int pdcn_col2im(int d, const long long* g, const void* gcols, const void* off, const void* mask,
                void* gx, void* scratch, long long n0, long long chunk, int det, void* s) {
  return pdcn::cuda::deform_col2im(dt(d), conv(g), gcols, off, mask, gx, scratch, n0, chunk,
                                   det != 0, s);
}
int pdcn_coord_grad(int d, const long long* g, const void* gcols, const void* x, const void* off,
                    const void* mask, void* goff, void* gmask, long long n0, long long chunk,
                    void* s) {
  return pdcn::cuda::deform_coord_grad(dt(d), conv(g), gcols, x, off, mask, goff, gmask, n0,
                                       chunk, s);
}
int pdcn_columns_to_output(int d, const long long* g, const void* res, void* out, long long n0,
                           long long chunk, void* s) {
  return pdcn::cuda::deform_columns_to_output(dt(d), conv(g), res, out, n0, chunk, s);
}
int pdcn_output_to_columns(int d, const long long* g, const void* gout, void* gathered,
                           long long n0, long long chunk, void* s) {
  return pdcn::cuda::deform_output_to_columns(dt(d), conv(g), gout, gathered, n0, chunk, s);
}
// acc [n] in the accumulation type (float32 for float16/bfloat16), src [n] in T: acc += src.
int pdcn_accumulate(int d, void* acc, const void* src, long long n, void* s) {
  return pdcn::cuda::accumulate(dt(d), acc, src, n, s);
}
int pdcn_convert_from_acc(int d, const void* acc, void* dst, long long n, void* s) {
  return pdcn::cuda::convert_from_acc(dt(d), acc, dst, n, s);
}
int pdcn_roi_batch_from_counts(const void* counts, int counts_int64, long long batch,
                               long long num_rois, int* roi_batch, void* s) {
  return pdcn::cuda::roi_batch_from_counts(counts, counts_int64 != 0, batch, num_rois, roi_batch,
                                           s);
}
long long pdcn_roi_scratch_bytes(int d, const long long* i, const float* f, int det) {
  return pdcn::cuda::deform_roi_pool_backward_scratch_bytes(dt(d), roi(i, f), det != 0);
}
int pdcn_roi_forward(int d, const long long* i, const float* f, const void* x, const void* boxes,
                     const int* batch, const void* off, void* out, void* s) {
  return pdcn::cuda::deform_roi_pool_forward(dt(d), roi(i, f), x, boxes, batch, off, out, s);
}
int pdcn_roi_backward(int d, const long long* i, const float* f, const void* gout, const void* x,
                      const void* boxes, const int* batch, const void* off, void* gx, void* goff,
                      void* scratch, int det, void* s) {
  return pdcn::cuda::deform_roi_pool_backward(dt(d), roi(i, f), gout, x, boxes, batch, off, gx,
                                         goff, scratch, det != 0, s);
}
long long pdcn_psroi_scratch_bytes(int d, const long long* i, const float* f, int det) {
  return pdcn::cuda::deform_psroi_pool_backward_scratch_bytes(dt(d), psroi(i, f), det != 0);
}
int pdcn_psroi_forward(int d, const long long* i, const float* f, const void* x, const void* boxes,
                       const int* batch, const void* off, void* out, void* s) {
  return pdcn::cuda::deform_psroi_pool_forward(dt(d), psroi(i, f), x, boxes, batch, off, out, s);
}
int pdcn_psroi_backward(int d, const long long* i, const float* f, const void* gout,
                        const void* x, const void* boxes, const int* batch, const void* off,
                        void* gx, void* goff, void* scratch, int det, void* s) {
  return pdcn::cuda::deform_psroi_pool_backward(dt(d), psroi(i, f), gout, x, boxes, batch, off,
                                           gx, goff, scratch, det != 0, s);
}
// DCNv3/v4 aggregation (fused: offset and weight are the same pointer)
long long pdcn_aggregate_scratch_bytes(int d, const long long* g, double scale, int det) {
  return pdcn::cuda::deform_aggregate_backward_scratch_bytes(dt(d), shim::aggregate(g, scale), det != 0);
}
int pdcn_aggregate_forward(int d, const long long* g, double scale, const void* value, const void* off,
                           const void* w, void* out, void* s) {
  return pdcn::cuda::deform_aggregate_forward(dt(d), shim::aggregate(g, scale), value, off, w, out, s);
}
int pdcn_aggregate_backward(int d, const long long* g, double scale, const void* value, const void* off,
                            const void* w, const void* gout, void* gv, void* goff, void* gw, void* scratch,
                            int det, void* s) {
  return pdcn::cuda::deform_aggregate_backward(dt(d), shim::aggregate(g, scale), value, off, w, gout, gv, goff,
                                               gw, scratch, det != 0, s);
}
}
