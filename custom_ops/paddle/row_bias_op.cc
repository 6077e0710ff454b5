// Paddle binding of the CPU last-axis bias (kernels/row_bias_cpu.h):
//   pdcn_add_row_bias(X [..., C], Bias [C]) -> Out = X + Bias over the last axis
// with gradients for both. grad_x is grad_out itself, not a copy (Paddle's add
// copies: 1.2 of the 3 ms this op saves at dcnv3_r50's conv2_x): the wrapper
// (paddle_dcn/ops/row_bias.py) calls it only where nothing can write into X's
// gradient in place (X not a leaf that needs a gradient). CPU only: the wrapper
// uses Paddle's add everywhere else; the checks here back up the wrapper's.
#include <cstdint>
#include <vector>

#include "paddle/extension.h"
#include "op_common.h"
#include "plain_layout.h"

#include "../kernels/row_bias_cpu.h"

namespace {

using pdcn::shape_str;

constexpr const char* kOp = "pdcn add_row_bias";

struct Rows {
  int64_t rows, channels;
};

Rows check_row_bias(const paddle::Tensor& x, const paddle::Tensor& bias, const char* x_name) {
  PDCN_CHECK(x.is_cpu() && bias.is_cpu(), kOp, ": CPU only, got ", x_name, " on ",
           x.place().DebugString(), " and bias on ", bias.place().DebugString());
  PDCN_CHECK(x.dtype() == paddle::DataType::FLOAT32 || x.dtype() == paddle::DataType::FLOAT64, kOp,
           ": ", x_name, " must be float32 or float64, got ", pdcn::dtype_name(x.dtype()));
  const std::vector<int64_t>& shape = x.shape();
  PDCN_CHECK(!shape.empty(), kOp, ": ", x_name, " must be [..., C], got a 0-D tensor");
  const int64_t C = shape.back();
  PDCN_CHECK(bias.shape() == std::vector<int64_t>{C}, kOp, ": bias must be [", C,
           "] [C, the last axis of ", x_name, "], got ", shape_str(bias.shape()));
  pdcn::check_same_dtype(kOp, {{x_name, &x}, {"bias", &bias}});
  return {C == 0 ? 0 : x.numel() / C, C};
}

std::vector<paddle::Tensor> RowBiasForward(const paddle::Tensor& x_in, const paddle::Tensor& bias_in) {
  const paddle::Tensor x = pdcn::plain_layout(x_in), bias = pdcn::plain_layout(bias_in);
  const Rows s = check_row_bias(x, bias, "x");
  paddle::Tensor out = paddle::empty(x.shape(), x.dtype(), x.place());
  pdcn::dispatch_cpu_float(x, [&](auto tag) {
    using T = decltype(tag);
    pdcn::cpu::add_row_bias<T>(x.data<T>(), bias.data<T>(), out.data<T>(), s.rows, s.channels);
  });
  return {out};
}

// Returns {grad_x, grad_bias}; grad_x is grad_out (the add passes it through).
std::vector<paddle::Tensor> RowBiasBackward(const paddle::Tensor& bias_in, const paddle::Tensor& grad_out_in) {
  const paddle::Tensor bias = pdcn::plain_layout(bias_in), grad_out = pdcn::plain_layout(grad_out_in);
  const Rows s = check_row_bias(grad_out, bias, "grad_out");
  paddle::Tensor grad_bias = paddle::empty(bias.shape(), bias.dtype(), bias.place());
  pdcn::dispatch_cpu_float(grad_out, [&](auto tag) {
    using T = decltype(tag);
    pdcn::cpu::row_bias_gradient<T>(grad_out.data<T>(), grad_bias.data<T>(), s.rows, s.channels);
  });
  return {grad_out, grad_bias};
}

std::vector<std::vector<int64_t>> RowBiasInferShape(const std::vector<int64_t>& x_shape,
                                                    const std::vector<int64_t>&) {
  return {x_shape};
}

std::vector<paddle::DataType> RowBiasInferDtype(const paddle::DataType& x_dtype, const paddle::DataType&) {
  return {x_dtype};
}

}  // namespace

PD_BUILD_OP(pdcn_add_row_bias)
    .Inputs({"X", "Bias"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(RowBiasForward))
    .SetInferShapeFn(PD_INFER_SHAPE(RowBiasInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(RowBiasInferDtype));

PD_BUILD_GRAD_OP(pdcn_add_row_bias)
    .Inputs({"Bias", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Bias")})
    .SetKernelFn(PD_KERNEL(RowBiasBackward));

PDCN_NO_DOUBLE_GRAD_KERNEL(RowBiasNoDoubleGrad, "pdcn_add_row_bias", PDCN_DG_T, PDCN_DG_T,
                           PDCN_DG_O, PDCN_DG_O)
PD_BUILD_DOUBLE_GRAD_OP(pdcn_add_row_bias)
    .Inputs({"Bias", paddle::Grad("Out"), paddle::Optional(paddle::Grad(paddle::Grad("X"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Bias")))})
    .Outputs({paddle::Grad("Bias"), paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(RowBiasNoDoubleGrad));
