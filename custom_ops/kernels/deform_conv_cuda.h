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

// Bytes of the float32 scratch that deform_col2im needs for a chunk (zero for
// float32/float64: half types accumulate their input gradient in float32).
int64_t col2im_scratch_bytes(DType dtype, const DeformConvGeometry& g, int64_t chunk);

void deform_im2col(DType dtype, const DeformConvGeometry& g, const void* x, const void* offset,
                   const void* mask, void* columns, int64_t n0, int64_t chunk, void* stream);

// Overwrites grad_x planes of images [n0, n0 + chunk). deterministic: one
// thread per (image, channel) plane, no atomics, bitwise reproducible; else
// one thread per column entry with atomicAdd (faster, order not fixed).
void deform_col2im(DType dtype, const DeformConvGeometry& g, const void* grad_columns,
                   const void* offset, const void* mask, void* grad_x, void* scratch,
                   int64_t n0, int64_t chunk, bool deterministic, void* stream);

void deform_coord_grad(DType dtype, const DeformConvGeometry& g, const void* grad_columns,
                       const void* x, const void* offset, const void* mask, void* grad_offset,
                       void* grad_mask, int64_t n0, int64_t chunk, void* stream);

void deform_columns_to_output(DType dtype, const DeformConvGeometry& g, const void* result,
                              void* out, int64_t n0, int64_t chunk, void* stream);

void deform_output_to_columns(DType dtype, const DeformConvGeometry& g, const void* grad_out,
                              void* gathered, int64_t n0, int64_t chunk, void* stream);

void accumulate(DType dtype, void* dst, const void* src, int64_t n, void* stream);

}  // namespace cuda
}  // namespace pdcn
