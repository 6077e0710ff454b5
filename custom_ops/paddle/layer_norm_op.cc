// Paddle binding of the CPU last-axis LayerNorm (kernels/layer_norm_cpu.h):
//   pdcn_layer_norm_last_axis(X [..., C], Scale [C], Bias [C]; epsilon)
//       -> Out [..., C], Mean [rows], Rstd [rows]   (rows = numel / C)
// Mean and Rstd are kept for the backward; gradients for X, Scale and Bias.
// CPU only: the Python wrapper (paddle_dcn/ops/layer_norm.py) calls it in CPU
// dygraph and uses Paddle's layer_norm everywhere else; the checks here back
// up the wrapper's.
#include <cstdint>
#include <vector>

#include "paddle/extension.h"
#include "op_common.h"
#include "plain_layout.h"

#include "../kernels/layer_norm_cpu.h"

namespace {

using pdcn::shape_str;

constexpr const char* kOp = "pdcn layer_norm_last_axis";

struct Rows {
  int64_t rows, channels;
};

Rows check_layer_norm(const paddle::Tensor& x, const paddle::Tensor& scale, const paddle::Tensor& bias) {
  PDCN_CHECK(x.is_cpu() && scale.is_cpu() && bias.is_cpu(), kOp, ": CPU only, got x on ",
           x.place().DebugString());
  PDCN_CHECK(x.dtype() == paddle::DataType::FLOAT32 || x.dtype() == paddle::DataType::FLOAT64, kOp,
           ": x must be float32 or float64, got ", pdcn::dtype_name(x.dtype()));
  const std::vector<int64_t>& shape = x.shape();
  PDCN_CHECK(!shape.empty() && shape.back() > 0, kOp, ": x must be [..., C] with C > 0, got ",
           shape_str(shape));
  const int64_t C = shape.back();
  PDCN_CHECK(scale.shape() == std::vector<int64_t>{C}, kOp, ": scale must be [", C,
           "] [C, the last axis of x], got ", shape_str(scale.shape()));
  PDCN_CHECK(bias.shape() == std::vector<int64_t>{C}, kOp, ": bias must be [", C,
           "] [C, the last axis of x], got ", shape_str(bias.shape()));
  pdcn::check_same_dtype(kOp, {{"x", &x}, {"scale", &scale}, {"bias", &bias}});
  return {x.numel() / C, C};
}

std::vector<paddle::Tensor> LayerNormForward(const paddle::Tensor& x_in, const paddle::Tensor& scale_in,
                                             const paddle::Tensor& bias_in, float epsilon) {
  const paddle::Tensor x = pdcn::plain_layout(x_in), scale = pdcn::plain_layout(scale_in);
  const paddle::Tensor bias = pdcn::plain_layout(bias_in);
  const Rows s = check_layer_norm(x, scale, bias);
  PDCN_CHECK(epsilon >= 0.0f, kOp, ": epsilon must be >= 0, got ", epsilon);
  paddle::Tensor out = paddle::empty(x.shape(), x.dtype(), x.place());
  paddle::Tensor mean = paddle::empty({s.rows}, x.dtype(), x.place());
  paddle::Tensor rstd = paddle::empty({s.rows}, x.dtype(), x.place());
  pdcn::dispatch_cpu_float(x, [&](auto tag) {
    using T = decltype(tag);
    pdcn::cpu::layer_norm_forward<T>(x.data<T>(), scale.data<T>(), bias.data<T>(), out.data<T>(),
                                     mean.data<T>(), rstd.data<T>(), s.rows, s.channels, epsilon);
  });
  return {out, mean, rstd};
}

// Returns {grad_x, grad_scale, grad_bias}.
std::vector<paddle::Tensor> LayerNormBackward(const paddle::Tensor& x_in, const paddle::Tensor& scale_in,
                                              const paddle::Tensor& bias_in, const paddle::Tensor& mean_in,
                                              const paddle::Tensor& rstd_in, const paddle::Tensor& grad_out_in,
                                              float) {
  const paddle::Tensor x = pdcn::plain_layout(x_in), scale = pdcn::plain_layout(scale_in);
  const paddle::Tensor bias = pdcn::plain_layout(bias_in), grad_out = pdcn::plain_layout(grad_out_in);
  const paddle::Tensor mean = pdcn::plain_layout(mean_in), rstd = pdcn::plain_layout(rstd_in);
  const Rows s = check_layer_norm(x, scale, bias);
  PDCN_CHECK(grad_out.shape() == x.shape(), kOp, ": grad_out must be ", shape_str(x.shape()), ", got ",
           shape_str(grad_out.shape()));
  PDCN_CHECK(mean.numel() == s.rows && rstd.numel() == s.rows, kOp, ": mean and rstd must have ", s.rows,
           " values");
  paddle::Tensor grad_x = paddle::empty(x.shape(), x.dtype(), x.place());
  paddle::Tensor grad_scale = paddle::empty(scale.shape(), scale.dtype(), scale.place());
  paddle::Tensor grad_bias = paddle::empty(bias.shape(), bias.dtype(), bias.place());
  pdcn::dispatch_cpu_float(x, [&](auto tag) {
    using T = decltype(tag);
    pdcn::cpu::layer_norm_backward<T>(x.data<T>(), scale.data<T>(), mean.data<T>(), rstd.data<T>(),
                                      grad_out.data<T>(), grad_x.data<T>(), grad_scale.data<T>(),
                                      grad_bias.data<T>(), s.rows, s.channels);
  });
  return {grad_x, grad_scale, grad_bias};
}

int64_t rows_of(const std::vector<int64_t>& x_shape) {
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < x_shape.size(); ++i) rows *= x_shape[i];
  return rows;
}

std::vector<std::vector<int64_t>> LayerNormInferShape(const std::vector<int64_t>& x_shape,
                                                      const std::vector<int64_t>&,
                                                      const std::vector<int64_t>&) {
  return {x_shape, {rows_of(x_shape)}, {rows_of(x_shape)}};
}

std::vector<paddle::DataType> LayerNormInferDtype(const paddle::DataType& x_dtype, const paddle::DataType&,
                                                  const paddle::DataType&) {
  return {x_dtype, x_dtype, x_dtype};
}

}  // namespace

PD_BUILD_OP(pdcn_layer_norm_last_axis)
    .Inputs({"X", "Scale", "Bias"})
    .Outputs({"Out", "Mean", "Rstd"})
    .Attrs({"epsilon: float"})
    .SetKernelFn(PD_KERNEL(LayerNormForward))
    .SetInferShapeFn(PD_INFER_SHAPE(LayerNormInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(LayerNormInferDtype));

PD_BUILD_GRAD_OP(pdcn_layer_norm_last_axis)
    .Inputs({"X", "Scale", "Bias", "Mean", "Rstd", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Scale"), paddle::Grad("Bias")})
    .Attrs({"epsilon: float"})
    .SetKernelFn(PD_KERNEL(LayerNormBackward));

PDCN_NO_DOUBLE_GRAD_KERNEL(LayerNormNoDoubleGrad, "pdcn_layer_norm_last_axis", PDCN_DG_T, PDCN_DG_T,
                           PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_O, PDCN_DG_O, PDCN_DG_O)
PD_BUILD_DOUBLE_GRAD_OP(pdcn_layer_norm_last_axis)
    .Inputs({"X", "Scale", "Bias", "Mean", "Rstd", paddle::Grad("Out"),
             paddle::Optional(paddle::Grad(paddle::Grad("X"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Scale"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Bias")))})
    .Outputs({paddle::Grad("X"), paddle::Grad("Scale"), paddle::Grad("Bias"),
              paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(LayerNormNoDoubleGrad));
