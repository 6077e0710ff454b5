// Inputs of our ops in the plain (NCHW / row-major) layout the kernels read.
//
// Paddle Inference with oneDNN on (its CPU default) may hand a custom op a
// tensor that a oneDNN kernel left in oneDNN's blocked memory layout; the
// framework does not convert it for custom kernels. assign() runs through
// Paddle's data transform and returns the plain layout; every other tensor is
// passed through untouched.
#pragma once

#include "paddle/extension.h"

namespace pdcn {

inline paddle::Tensor plain_layout(const paddle::Tensor& t) {
  if (t.initialized() && t.layout() == phi::DataLayout::ONEDNN) {
    return paddle::experimental::assign(t);
  }
  return t;
}

// The same for an optional input: fills `storage` and returns its address,
// or nullptr when there is no input.
inline const paddle::Tensor* plain_layout(const paddle::Tensor* t, paddle::Tensor* storage) {
  if (t == nullptr) return nullptr;
  *storage = plain_layout(*t);
  return storage;
}

}  // namespace pdcn
