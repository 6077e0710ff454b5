// Native test: the CUDA deformable-convolution kernels against the CPU kernels
// on the same random inputs, for float32, float64, float16 and bfloat16.
// Needs only nvcc and a GPU (no Paddle). Build and run with
//   bash custom_ops/tests/build.sh --run
// Exit status 0 when every comparison is within tolerance.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "deform_conv_cpu.h"
#include "deform_conv_cuda.h"

using pdcn::DeformConvGeometry;
using pdcn::cuda::DType;

#include "native_test_util.cuh"

using namespace native_test;

namespace {

struct Tolerance {
  double rtol, atol;
};

template <typename T>
void run_case(const char* name, DeformConvGeometry g, DType dtype, Tolerance tol, bool poison) {
  std::printf("%s [%s]\n", name,
              dtype == DType::kFloat32   ? "float32"
              : dtype == DType::kFloat64 ? "float64"
              : dtype == DType::kFloat16 ? "float16"
                                         : "bfloat16");
  std::mt19937_64 rng(42);
  const int64_t K = g.kernel_size(), hw = g.out_plane();
  auto x = rounded<T>(normal_vector(g.batch * g.in_channels * g.in_plane(), 1.0, rng));
  auto offset = rounded<T>(normal_vector(g.batch * g.deformable_groups * 2 * K * hw, 2.0, rng));
  auto mask = rounded<T>(normal_vector(g.batch * g.deformable_groups * K * hw, 0.5, rng));
  if (poison) {
    const double bad[] = {NAN, INFINITY, -INFINITY, 1e30, 3e9, -3e9};
    for (size_t i = 0; i < offset.size(); i += 7) offset[i] = bad[(i / 7) % 6];
    if (dtype == DType::kFloat16) {  // 1e30 and 3e9 become inf in half: still poisoned
      for (auto& e : offset) e = to_double(from_double<T>(e));
    }
  }
  // Process images [n0, n0 + chunk) only, as one chunk of a larger batch.
  const int64_t n0 = g.batch > 1 ? 1 : 0, chunk = g.batch - n0;
  auto grad_columns = rounded<T>(normal_vector(g.column_elements(chunk), 1.0, rng));
  auto grad_out = rounded<T>(normal_vector(g.batch * g.out_channels * hw, 1.0, rng));
  auto result = rounded<T>(normal_vector(g.out_channels * chunk * hw, 1.0, rng));

  // CPU reference in double.
  const pdcn::cpu::StencilOnTheFly<double> table{offset.data(), mask.data(), n0};
  std::vector<double> ref_columns(g.column_elements(chunk));
  pdcn::cpu::deform_im2col(g, table, x.data(), ref_columns.data(), n0, chunk);
  std::vector<double> ref_grad_x(x.size(), 0.0), ref_grad_offset(offset.size(), 0.0),
      ref_grad_mask(mask.size(), 0.0), ref_out(grad_out.size(), 0.0),
      ref_gathered(result.size(), 0.0);
  pdcn::cpu::deform_col2im(g, table, grad_columns.data(), ref_grad_x.data(), n0, chunk);
  pdcn::cpu::deform_coord_grad(g, table, grad_columns.data(), x.data(),
                               ref_grad_offset.data(), ref_grad_mask.data(), n0, chunk);
  pdcn::cpu::deform_columns_to_output(g, result.data(), ref_out.data(), n0, chunk);
  pdcn::cpu::deform_output_to_columns(g, grad_out.data(), ref_gathered.data(), n0, chunk);

  DeviceBuffer<T> d_x(x), d_offset(offset), d_mask(mask), d_grad_columns(grad_columns),
      d_grad_out(grad_out), d_result(result);
  // Outputs written only for the chunk's images start as zeros (like the reference);
  // the others start as garbage that the kernels must overwrite.
  const std::vector<double> zeros_x(x.size(), 0.0), zeros_out(grad_out.size(), 0.0),
      zeros_offset(offset.size(), 0.0), zeros_mask(mask.size(), 0.0);
  DeviceBuffer<T> d_columns(ref_columns.size()), d_grad_x(zeros_x), d_grad_x_det(zeros_x),
      d_grad_offset(zeros_offset), d_grad_mask(zeros_mask), d_out(zeros_out),
      d_gathered(result.size());
  DeviceBuffer<float> d_scratch(
      static_cast<size_t>(pdcn::cuda::col2im_scratch_bytes(dtype, g, chunk, /*deterministic=*/true) / 4));
  EXPECT_OK(pdcn::cuda::deform_im2col(dtype, g, d_x.ptr, d_offset.ptr, d_mask.ptr, d_columns.ptr, n0, chunk,
                            nullptr));
  EXPECT_OK(pdcn::cuda::deform_col2im(dtype, g, d_grad_columns.ptr, d_offset.ptr, d_mask.ptr, d_grad_x.ptr,
                            d_scratch.ptr, n0, chunk, /*deterministic=*/false, nullptr));
  EXPECT_OK(pdcn::cuda::deform_col2im(dtype, g, d_grad_columns.ptr, d_offset.ptr, d_mask.ptr,
                            d_grad_x_det.ptr, d_scratch.ptr, n0, chunk, /*deterministic=*/true,
                            nullptr));
  EXPECT_OK(pdcn::cuda::deform_coord_grad(dtype, g, d_grad_columns.ptr, d_x.ptr, d_offset.ptr, d_mask.ptr,
                                d_grad_offset.ptr, d_grad_mask.ptr, n0, chunk, nullptr));
  EXPECT_OK(pdcn::cuda::deform_columns_to_output(dtype, g, d_result.ptr, d_out.ptr, n0, chunk, nullptr));
  EXPECT_OK(pdcn::cuda::deform_output_to_columns(dtype, g, d_grad_out.ptr, d_gathered.ptr, n0, chunk,
                                       nullptr));
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaDeviceSynchronize());

  compare("im2col columns", d_columns.host(), ref_columns, tol.rtol, tol.atol);
  compare("col2im grad_x (atomic)", d_grad_x.host(), ref_grad_x, tol.rtol, tol.atol * 4);
  compare("col2im grad_x (deterministic)", d_grad_x_det.host(), ref_grad_x, tol.rtol,
          tol.atol * 4);
  compare("grad_offset", d_grad_offset.host(), ref_grad_offset, tol.rtol, tol.atol * 8);
  compare("grad_mask", d_grad_mask.host(), ref_grad_mask, tol.rtol, tol.atol * 8);
  compare("columns -> output", d_out.host(), ref_out, 0, 0);
  compare("output -> columns", d_gathered.host(), ref_gathered, 0, 0);

  // The deterministic col2im is bitwise reproducible.
  DeviceBuffer<T> d_again(zeros_x);
  EXPECT_OK(pdcn::cuda::deform_col2im(dtype, g, d_grad_columns.ptr, d_offset.ptr, d_mask.ptr, d_again.ptr,
                            d_scratch.ptr, n0, chunk, true, nullptr));
  CUDA_CHECK(cudaDeviceSynchronize());
  compare("deterministic col2im repeat (bitwise)", d_again.host(), d_grad_x_det.host(), 0, 0);
}

// The weight gradient summed over many chunks: accumulate() adds each chunk's
// product (in T) into an accumulator of acc_t<T>, convert_from_acc() rounds
// once. For float16/bfloat16 the result must be the float32 sum rounded once
// (within one rounding of T), where summing in T would drift by many ulps.
template <typename T>
void weight_grad_accumulation(DType dtype, double rtol) {
  const int64_t n = 4096, chunks = 64;
  std::mt19937_64 rng(7);
  using Acc = pdcn::acc_t<T>;
  std::vector<double> sum(n, 0.0);
  DeviceBuffer<Acc> d_acc(std::vector<double>(n, 0.0));
  for (int64_t c = 0; c < chunks; ++c) {
    // mean 1 plus noise: a long positive sum, the case that loses most in half
    auto part = rounded<T>(normal_vector(n, 0.2, rng));
    for (int64_t i = 0; i < n; ++i) {
      part[i] = to_double(from_double<T>(part[i] + 1.0));
      sum[i] += part[i];
    }
    DeviceBuffer<T> d_part(part);
    EXPECT_OK(pdcn::cuda::accumulate(dtype, d_acc.ptr, d_part.ptr, n, nullptr));
  }
  DeviceBuffer<T> d_out(static_cast<size_t>(n));
  EXPECT_OK(pdcn::cuda::convert_from_acc(dtype, d_acc.ptr, d_out.ptr, n, nullptr));
  CUDA_CHECK(cudaDeviceSynchronize());
  compare("weight grad over 64 chunks (float32 acc)", d_out.host(), sum, rtol, 0);
}

DeformConvGeometry geometry(int64_t n, int64_t c, int64_t h, int64_t w, int64_t c_out,
                            int64_t kh, int64_t kw, int64_t stride, int64_t pad, int64_t dil,
                            int64_t groups, int64_t dgroups) {
  DeformConvGeometry g{};
  g.batch = n; g.in_channels = c; g.in_h = h; g.in_w = w; g.out_channels = c_out;
  g.kernel_h = kh; g.kernel_w = kw; g.stride_h = g.stride_w = stride; g.pad_h = g.pad_w = pad;
  g.dilation_h = g.dilation_w = dil; g.groups = groups; g.deformable_groups = dgroups;
  g.out_h = (h + 2 * pad - (dil * (kh - 1) + 1)) / stride + 1;
  g.out_w = (w + 2 * pad - (dil * (kw - 1) + 1)) / stride + 1;
  return g;
}

template <typename T>
void run_all(DType dtype, Tolerance tol) {
  run_case<T>("3x3 pad 1, 3 images", geometry(3, 8, 11, 9, 6, 3, 3, 1, 1, 1, 1, 1), dtype, tol,
              false);
  run_case<T>("3x2 stride 2 dil 2, groups 2, dg 4", geometry(2, 8, 13, 12, 4, 3, 2, 2, 1, 2, 2, 4),
              dtype, tol, false);
  run_case<T>("1x1, dg 2", geometry(2, 4, 6, 7, 4, 1, 1, 1, 0, 1, 1, 2), dtype, tol, false);
  run_case<T>("poisoned offsets (NaN/Inf/huge)", geometry(2, 4, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1),
              dtype, tol, true);
}

}  // namespace

int main() {
  if (!has_cuda_device()) {
    std::fprintf(stderr, "no CUDA device: nothing to test\n");
    return 3;
  }
  {  // a bad device is reported by the guard, not ignored
    pdcn::cuda::DeviceGuard bad(1 << 20);
    std::printf("DeviceGuard(invalid device): status %d (%s) %s\n", bad.status(),
                pdcn::cuda::error_string(bad.status()), bad.status() != 0 ? "ok" : "FAIL");
    if (bad.status() == 0) ++failures();
    cudaGetLastError();  // clear it
  }
  weight_grad_accumulation<float>(DType::kFloat32, 1e-6);
  weight_grad_accumulation<__half>(DType::kFloat16, 1.0 / 1024);       // one half ulp
  weight_grad_accumulation<__nv_bfloat16>(DType::kBFloat16, 1.0 / 128);  // one bf16 ulp
  run_all<double>(DType::kFloat64, {1e-12, 1e-12});
  run_all<float>(DType::kFloat32, {1e-5, 1e-5});
  run_all<__half>(DType::kFloat16, {2e-2, 2e-2});
  run_all<__nv_bfloat16>(DType::kBFloat16, {2e-2, 1e-1});
  std::printf(failures() ? "FAILED: %d comparisons\n" : "all CUDA kernel comparisons passed\n",
              failures());
  return failures() ? 1 : 0;
}
