// Host-side entry points of the CUDA deformable RoI pooling kernels (the
// RoIAlign-based op and the position-sensitive op).
//
// Free of CUDA and Paddle types, like deform_conv_cuda.h: tensors are raw
// device pointers whose element type is named by pdcn::cuda::DType, boxes are
// in the accumulation type (float32 for float32/float16/bfloat16 data, float64
// for float64), roi_batch is an int32 device array [K] (roi_batch_from_counts;
// a negative entry: the box pools to zero and gets no gradient), the stream is
// a cudaStream_t passed as void*. offset may be nullptr (no offset). Every
// entry point returns 0 or the first CUDA error (see deform_conv_cuda.h).
#pragma once

#include <cstdint>

#include "deform_conv_cuda.h"  // pdcn::cuda::DType
#include "deform_psroi_pool.h"
#include "deform_roi_pool.h"

namespace pdcn {
namespace cuda {

// The image index of every box from boxes_num [batch] (int32, or int64 when
// counts_int64; device memory), computed on the device with no host sync:
// box k belongs to the first image whose running count exceeds k. Boxes beyond
// the counts' sum get -1 (negative counts count as zero).
int roi_batch_from_counts(const void* boxes_num, bool counts_int64, int64_t batch,
                          int64_t num_rois, int* roi_batch, void* stream);

// ---- RoIAlign-based ---------------------------------------------------------

int deform_roi_pool_forward(DType dtype, const DeformRoiPoolGeometry& g, const void* x,
                             const void* boxes, const int* roi_batch, const void* offset,
                             void* out, void* stream);

// Bytes of scratch the backward needs (256-byte aligned): the deterministic
// fixed-point state, or float32 to accumulate grad_x of the half types (zero
// for atomic float32/float64, which accumulate in place).
int64_t deform_roi_pool_backward_scratch_bytes(DType dtype, const DeformRoiPoolGeometry& g,
                                               bool deterministic);

// Overwrites grad_x [N, C, H, W] and, when grad_offset is not nullptr,
// grad_offset [K, 2, PH, PW] (one thread per entry: deterministic). grad_x:
// one thread per output element; deterministic -> fixed-point integer atomics
// (fixed_point.h), bitwise reproducible; else float atomicAdd (order not fixed).
int deform_roi_pool_backward(DType dtype, const DeformRoiPoolGeometry& g, const void* grad_out,
                              const void* x, const void* boxes, const int* roi_batch,
                              const void* offset, void* grad_x, void* grad_offset, void* scratch,
                              bool deterministic, void* stream);

// ---- position-sensitive ------------------------------------------------------

int deform_psroi_pool_forward(DType dtype, const DeformPSRoiPoolGeometry& g, const void* x,
                               const void* boxes, const int* roi_batch, const void* offset,
                               void* out, void* stream);

int64_t deform_psroi_pool_backward_scratch_bytes(DType dtype, const DeformPSRoiPoolGeometry& g,
                                                 bool deterministic);

int deform_psroi_pool_backward(DType dtype, const DeformPSRoiPoolGeometry& g,
                                const void* grad_out, const void* x, const void* boxes,
                                const int* roi_batch, const void* offset, void* grad_x,
                                void* grad_offset, void* scratch, bool deterministic,
                                void* stream);

}  // namespace cuda
}  // namespace pdcn
