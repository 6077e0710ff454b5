// Paddle binding of the DCNv3/v4 aggregation (kernels/deform_aggregate.h):
//   pdcn_deform_aggregate(Value [N, H, W, G*C], Offset [N, Ho, Wo, G*K*2],
//                         Weight [N, Ho, Wo, G*K]) -> Out [N, Ho, Wo, G*C]
// with gradients for all three inputs. The Python wrapper
// (paddle_dcn/ops/deform_aggregate.py) validates user input with readable
// errors; the checks here are the second line of defence (they also run alone
// under Paddle Inference) and print the shapes they got.
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <vector>

#include "paddle/extension.h"
#include "op_common.h"
#include "plain_layout.h"

#include "../kernels/deform_aggregate_cpu.h"
#if defined(PADDLE_WITH_CUDA)
#include "../kernels/deform_aggregate_cuda.h"
#endif

namespace {

using pdcn::AggregateGeometry;

constexpr const char* kOp = "pdcn deform_aggregate";

using pdcn::dtype_name;
using pdcn::shape_str;

using pdcn::conv_out_size;

void check_pair(const std::vector<int>& v, const char* what, int minimum) {
  pdcn::check_attr_pair(kOp, v, what, minimum);
}

AggregateGeometry geometry(const paddle::Tensor& value, const std::vector<int>& kernel,
                           const std::vector<int>& stride, const std::vector<int>& padding,
                           const std::vector<int>& dilation, int groups, const std::vector<float>& offset_scale) {
  check_pair(kernel, "kernel_size", 1);
  check_pair(stride, "stride", 1);
  check_pair(padding, "padding", 0);
  check_pair(dilation, "dilation", 1);
  const auto& s = value.shape();
  PDCN_CHECK(s.size() == 4, kOp, ": value must be 4-D [N, H, W, G*C], got ", shape_str(s));
  PDCN_CHECK(groups > 0 && s[3] % groups == 0, kOp, ": value's channels (", s[3],
           ") must divide by groups (", groups, ")");
  AggregateGeometry g;
  g.batch = s[0];
  g.in_h = s[1];
  g.in_w = s[2];
  g.groups = groups;
  g.group_channels = s[3] / groups;
  g.kernel_h = kernel[0];
  g.kernel_w = kernel[1];
  g.stride_h = stride[0];
  g.stride_w = stride[1];
  g.pad_h = padding[0];
  g.pad_w = padding[1];
  g.dilation_h = dilation[0];
  g.dilation_w = dilation[1];
  g.out_h = conv_out_size(g.in_h, g.kernel_h, g.stride_h, g.pad_h, g.dilation_h);
  g.out_w = conv_out_size(g.in_w, g.kernel_w, g.stride_w, g.pad_w, g.dilation_w);
  // offset_scale as a float pair (hi, lo) with hi + lo the double the caller gave: a custom
  // op attribute cannot be a double, and float32 alone would round the scale.
  PDCN_CHECK(offset_scale.size() == 2, kOp, ": offset_scale must be a (hi, lo) pair, got ",
           offset_scale.size(), " values");
  g.offset_scale = static_cast<double>(offset_scale[0]) + static_cast<double>(offset_scale[1]);
  g.set_separate_layout();
  PDCN_CHECK(g.out_h > 0 && g.out_w > 0, kOp, ": the output would be empty (", g.out_h, "x", g.out_w,
           ") for an input of ", g.in_h, "x", g.in_w);
  PDCN_CHECK(g.in_h * g.in_w < std::numeric_limits<int32_t>::max(), kOp,
           ": feature map too large (H * W must fit in int32), got ", g.in_h, "x", g.in_w);
  return g;
}

void check_dtypes(const paddle::Tensor& value,
                  std::initializer_list<std::pair<const char*, const paddle::Tensor*>> others) {
  for (const auto& named : others) pdcn::check_same_dtype(kOp, {{"value", &value}, named});
  const auto d = value.dtype();
  if (value.is_cpu()) {
    PDCN_CHECK(d == paddle::DataType::FLOAT32 || d == paddle::DataType::FLOAT64, kOp,
             ": CPU supports float32 and float64, got ", dtype_name(d));
  }
}

void check_separate(const AggregateGeometry& g, const paddle::Tensor& value,
                    const paddle::Tensor& offset, const paddle::Tensor& weight) {
  const std::vector<int64_t> want_offset = {g.batch, g.out_h, g.out_w, g.groups * g.kernel_size() * 2};
  const std::vector<int64_t> want_weight = {g.batch, g.out_h, g.out_w, g.groups * g.kernel_size()};
  PDCN_CHECK(offset.shape() == want_offset, kOp, ": offset must be ", shape_str(want_offset),
           " [N, Ho, Wo, G*K*2], got ", shape_str(offset.shape()));
  PDCN_CHECK(weight.shape() == want_weight, kOp, ": weight must be ", shape_str(want_weight),
           " [N, Ho, Wo, G*K], got ", shape_str(weight.shape()));
  check_dtypes(value, {{"offset", &offset}, {"weight", &weight}});
  pdcn::check_same_place(kOp, {{"value", &value}, {"offset", &offset}, {"weight", &weight}});
}

// The fused (DCNv4) tensor [N, Ho, Wo, S], S >= G*3K; sets the geometry's layout.
void check_fused(AggregateGeometry* g, const paddle::Tensor& value, const paddle::Tensor& offset_mask) {
  const auto& s = offset_mask.shape();
  PDCN_CHECK(s.size() == 4 && s[0] == g->batch && s[1] == g->out_h && s[2] == g->out_w &&
               s[3] >= g->groups * 3 * g->kernel_size(),
           kOp, ": offset_mask must be [", g->batch, ", ", g->out_h, ", ", g->out_w, ", S >= G*3K = ",
           g->groups * 3 * g->kernel_size(), "], got ", shape_str(s));
  check_dtypes(value, {{"offset_mask", &offset_mask}});
  pdcn::check_same_place(kOp, {{"value", &value}, {"offset_mask", &offset_mask}});
  g->set_fused_layout(s[3]);
}

#if defined(PADDLE_WITH_CUDA)
paddle::Tensor scratch_tensor(int64_t bytes, const paddle::Place& place) {
  if (bytes <= 0) return paddle::Tensor();
  return paddle::empty({(bytes + 3) / 4}, paddle::DataType::FLOAT32, place);
}
#endif

// out from value and the offset / weight storage (one tensor when fused).
paddle::Tensor forward(const AggregateGeometry& g, const paddle::Tensor& value,
                       const paddle::Tensor& offset, const paddle::Tensor& weight) {
#if defined(PADDLE_WITH_CUDA)
  const pdcn::DeviceScope device(value, kOp);
#endif
  paddle::Tensor out =
      paddle::empty({g.batch, g.out_h, g.out_w, g.channels()}, value.dtype(), value.place());
  if (g.out_elements() == 0) return out;
  if (value.is_cpu()) {
    if (value.dtype() == paddle::DataType::FLOAT64) {
      pdcn::cpu::deform_aggregate_forward<double>(g, value.data<double>(), offset.data<double>(),
                                                  weight.data<double>(), out.data<double>());
    } else {
      pdcn::cpu::deform_aggregate_forward<float>(g, value.data<float>(), offset.data<float>(),
                                                 weight.data<float>(), out.data<float>());
    }
    return out;
  }
#if defined(PADDLE_WITH_CUDA)
  pdcn::check_cuda(pdcn::cuda::deform_aggregate_forward(pdcn::cuda_dtype(value.dtype(), kOp), g,
                                                        value.data(), offset.data(), weight.data(),
                                                        out.data(), pdcn::stream_of(value)),
                   kOp, "forward");
  return out;
#else
  PDCN_RAISE(InvalidArgument, kOp, ": unsupported place (built without CUDA?)");
#endif
}

// Writes grad_value and the offset / weight gradients (grad_weight may be grad_offset's
// tensor when fused; its padding must be zero already).
void backward(const AggregateGeometry& g, const paddle::Tensor& value, const paddle::Tensor& offset,
              const paddle::Tensor& weight, const paddle::Tensor& grad_out, paddle::Tensor& grad_value,
              paddle::Tensor& grad_offset, paddle::Tensor& grad_weight, bool deterministic) {
  const std::vector<int64_t> want_out = {g.batch, g.out_h, g.out_w, g.channels()};
  PDCN_CHECK(grad_out.shape() == want_out, kOp, ": grad_out must be ", shape_str(want_out), ", got ",
           shape_str(grad_out.shape()));
  pdcn::check_same_place(kOp, {{"value", &value}, {"grad_out", &grad_out}});
  // the CUDA branch reads grad_out untyped: a dtype of its own would be misread
  pdcn::check_same_dtype(kOp, {{"value", &value}, {"grad_out", &grad_out}});
#if defined(PADDLE_WITH_CUDA)
  const pdcn::DeviceScope device(value, kOp);
#endif
  if (value.is_cpu()) {
    auto run = [&](auto tag) {
      using T = decltype(tag);
      pdcn::cpu::deform_aggregate_backward<T>(g, value.data<T>(), offset.data<T>(), weight.data<T>(),
                                              grad_out.data<T>(), grad_value.data<T>(),
                                              grad_offset.data<T>(), grad_weight.data<T>());
    };
    if (value.dtype() == paddle::DataType::FLOAT64) {
      run(double{});
    } else {
      run(float{});
    }
    return;
  }
#if defined(PADDLE_WITH_CUDA)
  const auto dtype = pdcn::cuda_dtype(value.dtype(), kOp);
  paddle::Tensor scratch = scratch_tensor(
      pdcn::cuda::deform_aggregate_backward_scratch_bytes(dtype, g, deterministic), value.place());
  pdcn::check_cuda(
      pdcn::cuda::deform_aggregate_backward(
          dtype, g, value.data(), offset.data(), weight.data(), grad_out.data(), grad_value.data(),
          grad_offset.data(), grad_weight.data(),
          scratch.initialized() ? scratch.data<float>() : nullptr, deterministic,
          pdcn::stream_of(value)),
      kOp, deterministic ? "backward (deterministic)" : "backward");
#else
  PDCN_RAISE(InvalidArgument, kOp, ": unsupported place (built without CUDA?)");
#endif
}

std::vector<paddle::Tensor> AggregateForward(const paddle::Tensor& value_in,
                                             const paddle::Tensor& offset_in,
                                             const paddle::Tensor& weight_in,
                                             const std::vector<int>& kernel_size,
                                             const std::vector<int>& stride,
                                             const std::vector<int>& padding,
                                             const std::vector<int>& dilation, int groups,
                                             const std::vector<float>& offset_scale, bool deterministic) {
  (void)deterministic;
  const paddle::Tensor value = pdcn::plain_layout(value_in);
  const paddle::Tensor offset = pdcn::plain_layout(offset_in);
  const paddle::Tensor weight = pdcn::plain_layout(weight_in);
  const AggregateGeometry g =
      geometry(value, kernel_size, stride, padding, dilation, groups, offset_scale);
  check_separate(g, value, offset, weight);
  return {forward(g, value, offset, weight)};
}

std::vector<paddle::Tensor> AggregateBackward(
    const paddle::Tensor& value_in, const paddle::Tensor& offset_in, const paddle::Tensor& weight_in,
    const paddle::Tensor& grad_out_in, const std::vector<int>& kernel_size,
    const std::vector<int>& stride, const std::vector<int>& padding,
    const std::vector<int>& dilation, int groups, const std::vector<float>& offset_scale, bool deterministic) {
  const paddle::Tensor value = pdcn::plain_layout(value_in);
  const paddle::Tensor offset = pdcn::plain_layout(offset_in);
  const paddle::Tensor weight = pdcn::plain_layout(weight_in);
  const paddle::Tensor grad_out = pdcn::plain_layout(grad_out_in);
  const AggregateGeometry g =
      geometry(value, kernel_size, stride, padding, dilation, groups, offset_scale);
  check_separate(g, value, offset, weight);
#if defined(PADDLE_WITH_CUDA)
  const pdcn::DeviceScope device(value, kOp);  // the allocations on the inputs' device too
#endif
  paddle::Tensor grad_value = paddle::empty(value.shape(), value.dtype(), value.place());
  paddle::Tensor grad_offset = paddle::empty(offset.shape(), offset.dtype(), offset.place());
  paddle::Tensor grad_weight = paddle::empty(weight.shape(), weight.dtype(), weight.place());
  backward(g, value, offset, weight, grad_out, grad_value, grad_offset, grad_weight, deterministic);
  return {grad_value, grad_offset, grad_weight};
}

std::vector<paddle::Tensor> FusedForward(const paddle::Tensor& value_in,
                                         const paddle::Tensor& offset_mask_in,
                                         const std::vector<int>& kernel_size,
                                         const std::vector<int>& stride,
                                         const std::vector<int>& padding,
                                         const std::vector<int>& dilation, int groups,
                                         const std::vector<float>& offset_scale, bool deterministic) {
  (void)deterministic;
  const paddle::Tensor value = pdcn::plain_layout(value_in);
  const paddle::Tensor om = pdcn::plain_layout(offset_mask_in);
  AggregateGeometry g = geometry(value, kernel_size, stride, padding, dilation, groups, offset_scale);
  check_fused(&g, value, om);
  return {forward(g, value, om, om)};
}

std::vector<paddle::Tensor> FusedBackward(
    const paddle::Tensor& value_in, const paddle::Tensor& offset_mask_in, const paddle::Tensor& grad_out_in,
    const std::vector<int>& kernel_size, const std::vector<int>& stride, const std::vector<int>& padding,
    const std::vector<int>& dilation, int groups, const std::vector<float>& offset_scale, bool deterministic) {
  const paddle::Tensor value = pdcn::plain_layout(value_in);
  const paddle::Tensor om = pdcn::plain_layout(offset_mask_in);
  const paddle::Tensor grad_out = pdcn::plain_layout(grad_out_in);
  AggregateGeometry g = geometry(value, kernel_size, stride, padding, dilation, groups, offset_scale);
  check_fused(&g, value, om);
#if defined(PADDLE_WITH_CUDA)
  // before the allocations: full() launches a fill kernel, on the current device's stream
  const pdcn::DeviceScope device(value, kOp);
#endif
  paddle::Tensor grad_value = paddle::empty(value.shape(), value.dtype(), value.place());
  // zero: the padding channels get no gradient; the kernels write every other entry
  paddle::Tensor grad_om = paddle::full(om.shape(), 0.0, om.dtype(), om.place());
  backward(g, value, om, om, grad_out, grad_value, grad_om, grad_om, deterministic);
  return {grad_value, grad_om};
}

// Static graphs may carry -1 (unknown) dimensions.
std::vector<std::vector<int64_t>> AggregateInferShape(
    const std::vector<int64_t>& value_shape, const std::vector<int64_t>&,
    const std::vector<int64_t>&, const std::vector<int>& kernel_size,
    const std::vector<int>& stride, const std::vector<int>& padding,
    const std::vector<int>& dilation, int, const std::vector<float>&, bool) {
  return {{value_shape[0],
           conv_out_size(value_shape[1], kernel_size[0], stride[0], padding[0], dilation[0]),
           conv_out_size(value_shape[2], kernel_size[1], stride[1], padding[1], dilation[1]),
           value_shape[3]}};
}

std::vector<paddle::DataType> AggregateInferDtype(const paddle::DataType& value_dtype,
                                                  const paddle::DataType&,
                                                  const paddle::DataType&) {
  return {value_dtype};
}

std::vector<std::vector<int64_t>> FusedInferShape(
    const std::vector<int64_t>& value_shape, const std::vector<int64_t>& om_shape,
    const std::vector<int>& kernel_size, const std::vector<int>& stride,
    const std::vector<int>& padding, const std::vector<int>& dilation, int groups,
    const std::vector<float>& offset_scale, bool deterministic) {
  return AggregateInferShape(value_shape, om_shape, om_shape, kernel_size, stride, padding, dilation,
                             groups, offset_scale, deterministic);
}

std::vector<paddle::DataType> FusedInferDtype(const paddle::DataType& value_dtype,
                                              const paddle::DataType&) {
  return {value_dtype};
}

}  // namespace

#define PDCN_AGGREGATE_ATTRS                                                                 \
  {"kernel_size: std::vector<int>", "stride: std::vector<int>", "padding: std::vector<int>", \
   "dilation: std::vector<int>", "groups: int", "offset_scale: std::vector<float>", "deterministic: bool"}

PD_BUILD_OP(pdcn_deform_aggregate)
    .Inputs({"Value", "Offset", "Weight"})
    .Outputs({"Out"})
    .Attrs(PDCN_AGGREGATE_ATTRS)
    .SetKernelFn(PD_KERNEL(AggregateForward))
    .SetInferShapeFn(PD_INFER_SHAPE(AggregateInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(AggregateInferDtype));

PD_BUILD_GRAD_OP(pdcn_deform_aggregate)
    .Inputs({"Value", "Offset", "Weight", paddle::Grad("Out")})
    .Outputs({paddle::Grad("Value"), paddle::Grad("Offset"), paddle::Grad("Weight")})
    .Attrs(PDCN_AGGREGATE_ATTRS)
    .SetKernelFn(PD_KERNEL(AggregateBackward));

PDCN_NO_DOUBLE_GRAD_KERNEL(AggregateNoDoubleGrad, "pdcn_deform_aggregate",
                           PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_O, PDCN_DG_O,
                           PDCN_DG_O)
PD_BUILD_DOUBLE_GRAD_OP(pdcn_deform_aggregate)
    .Inputs({"Value", "Offset", "Weight", paddle::Grad("Out"),
             paddle::Optional(paddle::Grad(paddle::Grad("Value"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Offset"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Weight")))})
    .Outputs({paddle::Grad("Value"), paddle::Grad("Offset"), paddle::Grad("Weight"),
              paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(AggregateNoDoubleGrad));

// DCNv4's layout: offsets and weights in one tensor [N, Ho, Wo, S] (per group 2K offsets
// then K weights, S >= G*3K; the padding gets a zero gradient).
PD_BUILD_OP(pdcn_deform_aggregate_fused)
    .Inputs({"Value", "OffsetMask"})
    .Outputs({"Out"})
    .Attrs(PDCN_AGGREGATE_ATTRS)
    .SetKernelFn(PD_KERNEL(FusedForward))
    .SetInferShapeFn(PD_INFER_SHAPE(FusedInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FusedInferDtype));

PD_BUILD_GRAD_OP(pdcn_deform_aggregate_fused)
    .Inputs({"Value", "OffsetMask", paddle::Grad("Out")})
    .Outputs({paddle::Grad("Value"), paddle::Grad("OffsetMask")})
    .Attrs(PDCN_AGGREGATE_ATTRS)
    .SetKernelFn(PD_KERNEL(FusedBackward));

PDCN_NO_DOUBLE_GRAD_KERNEL(FusedNoDoubleGrad, "pdcn_deform_aggregate_fused",
                           PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_O, PDCN_DG_O)
PD_BUILD_DOUBLE_GRAD_OP(pdcn_deform_aggregate_fused)
    .Inputs({"Value", "OffsetMask", paddle::Grad("Out"),
             paddle::Optional(paddle::Grad(paddle::Grad("Value"))),
             paddle::Optional(paddle::Grad(paddle::Grad("OffsetMask")))})
    .Outputs({paddle::Grad("Value"), paddle::Grad("OffsetMask"),
              paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(FusedNoDoubleGrad));
