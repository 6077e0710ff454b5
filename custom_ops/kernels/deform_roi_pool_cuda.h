// Host-side entry points of the CUDA deformable RoI pooling kernels (the
// RoIAlign-based op and the position-sensitive op).
//
// Free of CUDA and Paddle types, like deform_conv_cuda.h: tensors are raw
// device pointers whose element type is named by pdcn::cuda::DType, boxes are
// in the accumulation type (float32 for float32/float16/bfloat16 data, float64
// for float64), roi_batch is an int32 device array [K], the stream is a
// cudaStream_t passed as void*. offset may be nullptr (no offset).
#pragma once

#include <cstdint>

#include "deform_conv_cuda.h"  // pdcn::cuda::DType
#include "deform_psroi_pool.h"
#include "deform_roi_pool.h"

namespace pdcn {
namespace cuda {

// ---- RoIAlign-based ---------------------------------------------------------

void deform_roi_pool_forward(DType dtype, const DeformRoiPoolGeometry& g, const void* x,
                             const void* boxes, const int* roi_batch, const void* offset,
                             void* out, void* stream);

// Bytes of float32 scratch the backward needs to accumulate grad_x of half
// types (zero for float32/float64, which accumulate in place).
int64_t deform_roi_pool_backward_scratch_bytes(DType dtype, const DeformRoiPoolGeometry& g);

// Overwrites grad_x [N, C, H, W] and, when grad_offset is not nullptr,
// grad_offset [K, 2, PH, PW] (one thread per entry: deterministic). grad_x:
// deterministic -> one thread per (image, channel) plane visiting the boxes in
// order, bitwise reproducible; else one thread per output element with
// atomicAdd (faster, order not fixed).
void deform_roi_pool_backward(DType dtype, const DeformRoiPoolGeometry& g, const void* grad_out,
                              const void* x, const void* boxes, const int* roi_batch,
                              const void* offset, void* grad_x, void* grad_offset, void* scratch,
                              bool deterministic, void* stream);

// ---- position-sensitive ------------------------------------------------------

void deform_psroi_pool_forward(DType dtype, const DeformPSRoiPoolGeometry& g, const void* x,
                               const void* boxes, const int* roi_batch, const void* offset,
                               void* out, void* stream);

int64_t deform_psroi_pool_backward_scratch_bytes(DType dtype, const DeformPSRoiPoolGeometry& g);

void deform_psroi_pool_backward(DType dtype, const DeformPSRoiPoolGeometry& g,
                                const void* grad_out, const void* x, const void* boxes,
                                const int* roi_batch, const void* offset, void* grad_x,
                                void* grad_offset, void* scratch, bool deterministic,
                                void* stream);

}  // namespace cuda
}  // namespace pdcn
