// Paddle binding of the CPU group softmax (kernels/group_softmax_cpu.h):
//   pdcn_group_softmax(X [..., G*K]; group_size K) -> Out [..., G*K]
// the softmax of every run of K consecutive values of the last axis, with its
// gradient. CPU only: the Python wrapper (paddle_dcn/ops/group_softmax.py)
// calls it in CPU dygraph and uses Paddle's softmax everywhere else; the
// checks here back up the wrapper's.
#include <cstdint>
#include <vector>

#include "paddle/extension.h"
#include "op_common.h"
#include "plain_layout.h"

#include "../kernels/group_softmax_cpu.h"

namespace {

using pdcn::shape_str;

constexpr const char* kOp = "pdcn group_softmax";

int64_t check_group_softmax(const paddle::Tensor& x, int group_size, const char* x_name) {
  PDCN_CHECK(x.is_cpu(), kOp, ": CPU only, got ", x_name, " on ", x.place().DebugString());
  PDCN_CHECK(x.dtype() == paddle::DataType::FLOAT32 || x.dtype() == paddle::DataType::FLOAT64, kOp,
           ": ", x_name, " must be float32 or float64, got ", pdcn::dtype_name(x.dtype()));
  const std::vector<int64_t>& shape = x.shape();
  PDCN_CHECK(group_size > 0, kOp, ": group_size must be positive, got ", group_size);
  PDCN_CHECK(!shape.empty() && shape.back() % group_size == 0, kOp, ": ", x_name,
           "'s last axis must be a multiple of group_size ", group_size, ", got ", shape_str(shape));
  return x.numel() / group_size;
}

std::vector<paddle::Tensor> GroupSoftmaxForward(const paddle::Tensor& x_in, int group_size) {
  const paddle::Tensor x = pdcn::plain_layout(x_in);
  const int64_t rows = check_group_softmax(x, group_size, "x");
  paddle::Tensor out = paddle::empty(x.shape(), x.dtype(), x.place());
  pdcn::dispatch_cpu_float(x, [&](auto tag) {
    using T = decltype(tag);
    pdcn::cpu::group_softmax_forward<T>(x.data<T>(), out.data<T>(), rows, group_size);
  });
  return {out};
}

std::vector<paddle::Tensor> GroupSoftmaxBackward(const paddle::Tensor& out_in, const paddle::Tensor& grad_out_in,
                                                 int group_size) {
  const paddle::Tensor out = pdcn::plain_layout(out_in), grad_out = pdcn::plain_layout(grad_out_in);
  const int64_t rows = check_group_softmax(out, group_size, "out");
  PDCN_CHECK(grad_out.shape() == out.shape() && grad_out.dtype() == out.dtype(), kOp,
           ": grad_out must be ", shape_str(out.shape()), " of out's dtype, got ", shape_str(grad_out.shape()));
  paddle::Tensor grad_x = paddle::empty(out.shape(), out.dtype(), out.place());
  pdcn::dispatch_cpu_float(out, [&](auto tag) {
    using T = decltype(tag);
    pdcn::cpu::group_softmax_backward<T>(out.data<T>(), grad_out.data<T>(), grad_x.data<T>(), rows, group_size);
  });
  return {grad_x};
}

std::vector<std::vector<int64_t>> GroupSoftmaxInferShape(const std::vector<int64_t>& x_shape, int) {
  return {x_shape};
}

std::vector<paddle::DataType> GroupSoftmaxInferDtype(const paddle::DataType& x_dtype) { return {x_dtype}; }

}  // namespace

PD_BUILD_OP(pdcn_group_softmax)
    .Inputs({"X"})
    .Outputs({"Out"})
    .Attrs({"group_size: int"})
    .SetKernelFn(PD_KERNEL(GroupSoftmaxForward))
    .SetInferShapeFn(PD_INFER_SHAPE(GroupSoftmaxInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(GroupSoftmaxInferDtype));

PD_BUILD_GRAD_OP(pdcn_group_softmax)
    .Inputs({"Out", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .Attrs({"group_size: int"})
    .SetKernelFn(PD_KERNEL(GroupSoftmaxBackward));

PDCN_NO_DOUBLE_GRAD_KERNEL(GroupSoftmaxNoDoubleGrad, "pdcn_group_softmax", PDCN_DG_T, PDCN_DG_T,
                           PDCN_DG_O)
PD_BUILD_DOUBLE_GRAD_OP(pdcn_group_softmax)
    .Inputs({"Out", paddle::Grad("Out"), paddle::Optional(paddle::Grad(paddle::Grad("X")))})
    .Outputs({paddle::Grad("Out"), paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(GroupSoftmaxNoDoubleGrad));
