// Host-side entry points of the CUDA DCNv3/v4 aggregation kernels (raw device
// pointers, element type by DType, stream as void*; see deform_conv_cuda.h).
#pragma once

#include <cstdint>

#include "deform_aggregate.h"
#include "deform_conv_cuda.h"  // DType, error_string, DeviceGuard

namespace pdcn {
namespace cuda {

int deform_aggregate_forward(DType dtype, const AggregateGeometry& g, const void* value,
                             const void* offset, const void* weight, void* out, void* stream);

// Bytes of scratch the backward needs (the deterministic fixed-point state, or
// the float32 accumulator of a half-type value gradient; else 0).
int64_t deform_aggregate_backward_scratch_bytes(DType dtype, const AggregateGeometry& g,
                                                bool deterministic);

// Writes grad_value, grad_offset and grad_weight. deterministic: the value
// gradient by fixed-point scatter (bitwise reproducible), else float atomics.
int deform_aggregate_backward(DType dtype, const AggregateGeometry& g, const void* value,
                              const void* offset, const void* weight, const void* grad_out,
                              void* grad_value, void* grad_offset, void* grad_weight,
                              void* scratch, bool deterministic, void* stream);

}  // namespace cuda
}  // namespace pdcn
