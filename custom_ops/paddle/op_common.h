// Shared by the bindings: the one-place rule of an op's inputs and, with CUDA,
// the device guard, the stream, the dtype mapping and the launch-status check.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "paddle/extension.h"
#include "paddle/common/enforce.h"
#if defined(PADDLE_WITH_CUDA)
#include "paddle/phi/core/cuda_stream.h"

#include "../kernels/deform_conv_cuda.h"
#endif

// The bindings' checks throw Paddle's own typed errors, not PD_CHECK's
// PD_Exception: those become Python ValueError (bad arguments),
// NotImplementedError and RuntimeError alike in dygraph *and* under to_static,
// where Paddle's static executor aborts the process on a PD_Exception.
#define PDCN_RAISE(kind, ...)                                                            \
  do {                                                                                   \
    const std::string pdcn_message_ = ::common::ErrorMessage(__VA_ARGS__).to_string();  \
    PADDLE_THROW(::common::errors::kind("%s", pdcn_message_.c_str()));                   \
  } while (0)

// A bad argument (ValueError in Python), the message built from the pieces.
#define PDCN_CHECK(COND, ...)                                 \
  do {                                                        \
    if (PD_UNLIKELY(!(COND))) PDCN_RAISE(InvalidArgument, __VA_ARGS__); \
  } while (0)

namespace pdcn {

// "[2, 3, 8, 8]": how a check names a shape or an attribute it got and wanted.
// The bindings' checks run alone under Paddle Inference (no Python in front),
// so each says the value it got and the one it expected.
template <typename T>
std::string shape_str(const std::vector<T>& s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

inline const char* dtype_name(paddle::DataType d) {
  switch (d) {
    case paddle::DataType::FLOAT32: return "float32";
    case paddle::DataType::FLOAT64: return "float64";
    case paddle::DataType::FLOAT16: return "float16";
    case paddle::DataType::BFLOAT16: return "bfloat16";
    case paddle::DataType::INT32: return "int32";
    case paddle::DataType::INT64: return "int64";
    default: return "another dtype";
  }
}

using NamedTensors = std::initializer_list<std::pair<const char*, const paddle::Tensor*>>;

// check(first, other) for every present tensor of `named` after the first
// present one ({name, tensor} pairs; absent, uninitialised tensors skipped).
template <typename Check>
void check_against_first(NamedTensors named, const Check& check) {
  const std::pair<const char*, const paddle::Tensor*>* first = nullptr;
  for (const auto& entry : named) {
    if (entry.second == nullptr || !entry.second->initialized()) continue;
    if (first == nullptr) {
      first = &entry;
    } else {
      check(*first, entry);
    }
  }
}

// Output size of a conv-like op along one axis (zero padding); -1 stays -1
// (an unknown static-graph dimension).
inline int64_t conv_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation) {
  if (in < 0) return -1;
  return (in + 2 * pad - (dilation * (kernel - 1) + 1)) / stride + 1;
}

// A two-value attribute (kernel, stride, padding, dilation) of op, each >= minimum.
inline void check_attr_pair(const char* op, const std::vector<int>& v, const char* what, int minimum) {
  PDCN_CHECK(v.size() == 2 && v[0] >= minimum && v[1] >= minimum, op, ": ", what,
           " needs two values >= ", minimum, ", got ", shape_str(v));
}

// Every tensor of an op call lives where the first one does ("x on gpu:0 but
// offset on cpu" is an error, not a crash or a silent copy).
inline void check_same_place(const char* op, NamedTensors named) {
  check_against_first(named, [op](const auto& first, const auto& other) {
    PDCN_CHECK(other.second->place() == first.second->place(), op, ": ", other.first, " is on ",
             other.second->place().DebugString(), " but ", first.first, " is on ",
             first.second->place().DebugString(), "; move all inputs to one device");
  });
}

// Every tensor of an op call has the first one's dtype (a float64 offset with
// a float32 x is an error, not a silent reinterpretation).
inline void check_same_dtype(const char* op, NamedTensors named) {
  check_against_first(named, [op](const auto& first, const auto& other) {
    PDCN_CHECK(other.second->dtype() == first.second->dtype(), op, ": ", other.first, " must have ",
             first.first, "'s dtype (", dtype_name(first.second->dtype()), "), got ",
             dtype_name(other.second->dtype()));
  });
}

#if defined(PADDLE_WITH_CUDA)
inline cuda::DType cuda_dtype(paddle::DataType dtype, const char* op) {
  switch (dtype) {
    case paddle::DataType::FLOAT32: return cuda::DType::kFloat32;
    case paddle::DataType::FLOAT64: return cuda::DType::kFloat64;
    case paddle::DataType::FLOAT16: return cuda::DType::kFloat16;
    case paddle::DataType::BFLOAT16: return cuda::DType::kBFloat16;
    default:
      PDCN_RAISE(InvalidArgument, op,
                 ": unsupported dtype on GPU (float32, float64, float16 and bfloat16 are)");
  }
}

// The current stream of the tensor's own device (Tensor::stream() is the
// current device's stream, which differs when x is on another GPU).
inline void* stream_of(const paddle::Tensor& t) {
  return paddle::GetCurrentCUDAStream(t.place())->raw_stream();
}

inline void check_cuda(int status, const char* op, const char* step) {
  if (status != 0) {
    PDCN_RAISE(External, op, ": CUDA error in ", step, ": ", cuda::error_string(status), " (cudaError ",
               status, ")");
  }
}

// Makes the tensor's device current for the op's kernels and allocations
// (nothing for a CPU tensor).
class DeviceScope {
 public:
  DeviceScope(const paddle::Tensor& t, const char* op) {
    if (!t.is_gpu()) return;
    guard_ = std::make_unique<cuda::DeviceGuard>(t.place().GetDeviceId());
    check_cuda(guard_->status(), op, "selecting the inputs' device");
  }

 private:
  std::unique_ptr<cuda::DeviceGuard> guard_;
};
#endif

// Calls f(float{}) or f(double{}) for a float32 / float64 tensor (the CPU-only
// helper ops' dtypes; their checks have refused every other dtype).
template <typename F>
void dispatch_cpu_float(const paddle::Tensor& x, const F& f) {
  if (x.dtype() == paddle::DataType::FLOAT64) {
    f(double{});
  } else {
    f(float{});
  }
}

// Every op registers a double-gradient op that raises (PDCN_NO_DOUBLE_GRAD_KERNEL
// below): without one, Paddle runs the gradient op under create_graph=True and
// then treats its result as a constant, so a second derivative through the op
// (a gradient penalty, say) would come out silently without the op's terms.
[[noreturn]] inline void no_double_backward(const char* op) {
  PDCN_RAISE(Unimplemented, op, " has no double backward: a gradient taken through it with create_graph=True "
           "cannot be differentiated again (its second-order terms would be silently "
           "missing). Use create_graph=False, or keep the op out of the differentiated "
           "gradient's path.");
}

}  // namespace pdcn

// A double-gradient kernel that raises, for op `op`, over its inputs (required
// tensors: const paddle::Tensor&; the gradients of the gradient op's outputs:
// const paddle::optional<paddle::Tensor>&, present only for those the second
// backward reaches).
#define PDCN_DG_T const paddle::Tensor&
#define PDCN_DG_O const paddle::optional<paddle::Tensor>&
#define PDCN_NO_DOUBLE_GRAD_KERNEL(fn, op, ...)            \
  std::vector<paddle::Tensor> fn(__VA_ARGS__) {            \
    pdcn::no_double_backward(op);                          \
  }
