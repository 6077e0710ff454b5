// Host-side entry points of the CUDA deformable convolution kernels.
//
// Deliberately free of CUDA and Paddle types so that the Paddle binding and
// the native test can call them: tensors are raw device pointers whose element
// type is named by `DType`, the stream is a cudaStream_t passed as void*.
#pragma once

#include <cstdint>

#include "deform_conv.h"

namespace pdcn {
namespace cuda {

enum class DType { kFloat32, kFloat64, kFloat16, kBFloat16 };

// Every entry point returns 0 on success, else the cudaError_t (as int) of the
// first call or kernel launch that failed; error_string names it.
const char* error_string(int status);

// Makes `device` current for its lifetime (the bindings' device guard).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  int status() const { return status_; }  // of switching to `device`

 private:
  int previous_ = -1;
  int status_ = 0;
};

// Bytes of scratch deform_col2im needs for a chunk (256-byte aligned): the
// deterministic fixed-point state, or the float32 accumulator of the half
// types; zero for the atomic float32/float64 path.
int64_t col2im_scratch_bytes(DType dtype, const DeformConvGeometry& g, int64_t chunk,
                             bool deterministic);

int deform_im2col(DType dtype, const DeformConvGeometry& g, const void* x, const void* offset,
                  const void* mask, void* columns, int64_t n0, int64_t chunk, void* stream);

// Overwrites grad_x planes of images [n0, n0 + chunk). deterministic: a
// fixed-point scatter (64-bit integer atomics, see fixed_point.h), bitwise
// reproducible; else float atomicAdd (order not fixed).
int deform_col2im(DType dtype, const DeformConvGeometry& g, const void* grad_columns,
                  const void* offset, const void* mask, void* grad_x, void* scratch,
                  int64_t n0, int64_t chunk, bool deterministic, void* stream);

int deform_coord_grad(DType dtype, const DeformConvGeometry& g, const void* grad_columns,
                      const void* x, const void* offset, const void* mask, void* grad_offset,
                      void* grad_mask, int64_t n0, int64_t chunk, void* stream);

int deform_columns_to_output(DType dtype, const DeformConvGeometry& g, const void* result,
                             void* out, int64_t n0, int64_t chunk, void* stream);

int deform_output_to_columns(DType dtype, const DeformConvGeometry& g, const void* grad_out,
                             void* gathered, int64_t n0, int64_t chunk, void* stream);

// The weight gradient summed over chunks in the accumulation type: acc points
// to n acc_t<T> (float32 for float16/bfloat16, T itself otherwise), src to n T;
// acc[i] += acc_t<T>(src[i]). convert_from_acc writes dst[i] = T(acc[i]).
int accumulate(DType dtype, void* acc, const void* src, int64_t n, void* stream);
int convert_from_acc(DType dtype, const void* acc, void* dst, int64_t n, void* stream);

}  // namespace cuda
}  // namespace pdcn
