// Paddle binding of the CPU channels-last depthwise conv (kernels/depthwise_conv_cpu_cl.h):
//   pdcn_depthwise_conv2d_nhwc(X [N, H, W, C], Weight [C, 1, kh, kw], Bias [C]) -> Out [N, Ho, Wo, C]
// with gradients for all three. CPU only (the Python wrapper,
// paddle_dcn/ops/depthwise_conv.py, takes Paddle's conv2d on other places); the
// checks here back up the wrapper's and print what they got.
#include <cstdint>
#include <vector>

#include "paddle/extension.h"
#include "op_common.h"
#include "plain_layout.h"

#include "../kernels/depthwise_conv_cpu_cl.h"

namespace {

using pdcn::cpu::DepthwiseGeometry;
using pdcn::shape_str;

constexpr const char* kOp = "pdcn depthwise_conv2d_nhwc";

using pdcn::conv_out_size;

void check_pair(const std::vector<int>& v, const char* what, int minimum) {
  pdcn::check_attr_pair(kOp, v, what, minimum);
}

DepthwiseGeometry geometry(const paddle::Tensor& x, const paddle::Tensor& weight,
                           const paddle::Tensor& bias, const std::vector<int>& stride,
                           const std::vector<int>& padding, const std::vector<int>& dilation) {
  check_pair(stride, "stride", 1);
  check_pair(padding, "padding", 0);
  check_pair(dilation, "dilation", 1);
  const auto& s = x.shape();
  const auto& w = weight.shape();
  PDCN_CHECK(s.size() == 4, kOp, ": x must be 4-D [N, H, W, C], got ", shape_str(s));
  PDCN_CHECK(w.size() == 4 && w[0] == s[3] && w[1] == 1 && w[2] > 0 && w[3] > 0, kOp,
           ": weight must be [C, 1, kh, kw] with C = ", s[3], ", got ", shape_str(w));
  PDCN_CHECK(bias.shape() == std::vector<int64_t>{s[3]}, kOp, ": bias must be [", s[3], "], got ",
           shape_str(bias.shape()));
  PDCN_CHECK(x.is_cpu() && weight.is_cpu() && bias.is_cpu(), kOp,
           ": CPU only (on other places paddle_dcn uses Paddle's conv2d)");
  pdcn::check_same_dtype(kOp, {{"x", &x}, {"weight", &weight}, {"bias", &bias}});
  PDCN_CHECK(x.dtype() == paddle::DataType::FLOAT32 || x.dtype() == paddle::DataType::FLOAT64, kOp,
           ": supports float32 and float64, got ", pdcn::dtype_name(x.dtype()));
  DepthwiseGeometry g;
  g.batch = s[0];
  g.in_h = s[1];
  g.in_w = s[2];
  g.channels = s[3];
  g.kernel_h = w[2];
  g.kernel_w = w[3];
  g.stride_h = stride[0];
  g.stride_w = stride[1];
  g.pad_h = padding[0];
  g.pad_w = padding[1];
  g.dilation_h = dilation[0];
  g.dilation_w = dilation[1];
  g.out_h = conv_out_size(g.in_h, g.kernel_h, g.stride_h, g.pad_h, g.dilation_h);
  g.out_w = conv_out_size(g.in_w, g.kernel_w, g.stride_w, g.pad_w, g.dilation_w);
  PDCN_CHECK(g.out_h > 0 && g.out_w > 0, kOp, ": the output would be empty (", g.out_h, "x", g.out_w,
           ") for an input of ", g.in_h, "x", g.in_w);
  return g;
}

// Paddle's [C, 1, kh, kw] as [kh*kw, C] and back.
template <typename T>
std::vector<T> taps_major(const T* w, int64_t C, int64_t K) {
  std::vector<T> t(static_cast<size_t>(C * K));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < K; ++k) t[k * C + c] = w[c * K + k];
  return t;
}

template <typename T>
void channels_major(const std::vector<T>& t, int64_t C, int64_t K, T* w) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < K; ++k) w[c * K + k] = t[k * C + c];
}

std::vector<paddle::Tensor> DepthwiseForward(const paddle::Tensor& x_in, const paddle::Tensor& weight_in,
                                             const paddle::Tensor& bias_in, const std::vector<int>& stride,
                                             const std::vector<int>& padding,
                                             const std::vector<int>& dilation) {
  const paddle::Tensor x = pdcn::plain_layout(x_in);
  const paddle::Tensor weight = pdcn::plain_layout(weight_in);
  const paddle::Tensor bias = pdcn::plain_layout(bias_in);
  const DepthwiseGeometry g = geometry(x, weight, bias, stride, padding, dilation);
  paddle::Tensor out = paddle::empty({g.batch, g.out_h, g.out_w, g.channels}, x.dtype(), x.place());
  pdcn::dispatch_cpu_float(x, [&](auto tag) {
    using T = decltype(tag);
    const std::vector<T> wt = taps_major(weight.data<T>(), g.channels, g.taps());
    pdcn::cpu::depthwise_conv_forward<T>(g, x.data<T>(), wt.data(), bias.data<T>(), out.data<T>());
  });
  return {out};
}

std::vector<paddle::Tensor> DepthwiseBackward(const paddle::Tensor& x_in, const paddle::Tensor& weight_in,
                                              const paddle::Tensor& bias_in, const paddle::Tensor& grad_out_in,
                                              const std::vector<int>& stride, const std::vector<int>& padding,
                                              const std::vector<int>& dilation) {
  const paddle::Tensor x = pdcn::plain_layout(x_in);
  const paddle::Tensor weight = pdcn::plain_layout(weight_in);
  const paddle::Tensor bias = pdcn::plain_layout(bias_in);
  const paddle::Tensor grad_out = pdcn::plain_layout(grad_out_in);
  const DepthwiseGeometry g = geometry(x, weight, bias, stride, padding, dilation);
  const std::vector<int64_t> want_out = {g.batch, g.out_h, g.out_w, g.channels};
  PDCN_CHECK(grad_out.shape() == want_out, kOp, ": grad_out must be ", shape_str(want_out), ", got ",
           shape_str(grad_out.shape()));
  paddle::Tensor grad_x = paddle::empty(x.shape(), x.dtype(), x.place());
  paddle::Tensor grad_weight = paddle::empty(weight.shape(), weight.dtype(), weight.place());
  paddle::Tensor grad_bias = paddle::empty(bias.shape(), bias.dtype(), bias.place());
  pdcn::dispatch_cpu_float(x, [&](auto tag) {
    using T = decltype(tag);
    const std::vector<T> wt = taps_major(weight.data<T>(), g.channels, g.taps());
    std::vector<T> grad_wt(wt.size());
    pdcn::cpu::depthwise_conv_backward<T>(g, x.data<T>(), wt.data(), grad_out.data<T>(), grad_x.data<T>(),
                                          grad_wt.data(), grad_bias.data<T>());
    channels_major(grad_wt, g.channels, g.taps(), grad_weight.data<T>());
  });
  return {grad_x, grad_weight, grad_bias};
}

std::vector<std::vector<int64_t>> DepthwiseInferShape(const std::vector<int64_t>& x_shape,
                                                      const std::vector<int64_t>& weight_shape,
                                                      const std::vector<int64_t>&, const std::vector<int>& stride,
                                                      const std::vector<int>& padding,
                                                      const std::vector<int>& dilation) {
  return {{x_shape[0], conv_out_size(x_shape[1], weight_shape[2], stride[0], padding[0], dilation[0]),
           conv_out_size(x_shape[2], weight_shape[3], stride[1], padding[1], dilation[1]), x_shape[3]}};
}

std::vector<paddle::DataType> DepthwiseInferDtype(const paddle::DataType& x_dtype, const paddle::DataType&,
                                                  const paddle::DataType&) {
  return {x_dtype};
}

}  // namespace

PD_BUILD_OP(pdcn_depthwise_conv2d_nhwc)
    .Inputs({"X", "Weight", "Bias"})
    .Outputs({"Out"})
    .Attrs({"stride: std::vector<int>", "padding: std::vector<int>", "dilation: std::vector<int>"})
    .SetKernelFn(PD_KERNEL(DepthwiseForward))
    .SetInferShapeFn(PD_INFER_SHAPE(DepthwiseInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(DepthwiseInferDtype));

PD_BUILD_GRAD_OP(pdcn_depthwise_conv2d_nhwc)
    .Inputs({"X", "Weight", "Bias", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Weight"), paddle::Grad("Bias")})
    .Attrs({"stride: std::vector<int>", "padding: std::vector<int>", "dilation: std::vector<int>"})
    .SetKernelFn(PD_KERNEL(DepthwiseBackward));

PDCN_NO_DOUBLE_GRAD_KERNEL(DepthwiseNoDoubleGrad, "pdcn_depthwise_conv2d_nhwc",
                           PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_O, PDCN_DG_O,
                           PDCN_DG_O)
PD_BUILD_DOUBLE_GRAD_OP(pdcn_depthwise_conv2d_nhwc)
    .Inputs({"X", "Weight", "Bias", paddle::Grad("Out"),
             paddle::Optional(paddle::Grad(paddle::Grad("X"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Weight"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Bias")))})
    .Outputs({paddle::Grad("X"), paddle::Grad("Weight"), paddle::Grad("Bias"),
              paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(DepthwiseNoDoubleGrad));
