// Native test: the CUDA DCNv3/v4 aggregation kernels against the CPU driver
// (run in float64 on the same rounded inputs), for float32, float64, float16
// and bfloat16: forward, and the value / offset / weight gradients with the
// atomic and the deterministic value gradient (the latter bitwise equal over
// two runs), in the separate and the fused (DCNv4) layouts, with offsets far
// outside the map and NaN / huge offsets, infinite and large weights (the
// deterministic path's fixed-point bound), an empty input plane, a
// non-default stream. The separate layout's offset / weight gradients start as
// NaN (the binding allocates them unset), so an entry the kernels miss fails.
// Needs only nvcc and a GPU:
//   bash custom_ops/tests/build.sh --run
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "aggregate_test_geometry.h"
#include "deform_aggregate_cpu.h"
#include "deform_aggregate_cuda.h"

using pdcn::AggregateGeometry;
using pdcn::cuda::DType;

#include "native_test_util.cuh"

using namespace native_test;

namespace {

struct Tolerance {
  double rtol, atol;
};

// What a case adds to the random inputs.
struct CaseOptions {
  bool huge_weights = false;  // separate layout: an inf weight, its pixel's others 1e6 x the rest
  bool own_stream = false;    // launch on a created stream instead of the default one
};

template <typename T>
void run_case(const char* name, DType dtype, AggregateGeometry g, bool fused, Tolerance tol,
              std::mt19937_64& rng, CaseOptions opt = {}) {
  std::printf("%s (%s)\n", name, fused ? "fused layout" : "separate layout");
  cudaStream_t stream = nullptr;
  if (opt.own_stream) CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const int64_t K = g.kernel_size(), P = g.batch * g.out_plane() * g.groups;
  const int64_t width = fused ? (g.groups * 3 * K + 7) / 8 * 8 : 0;
  std::vector<double> value = rounded<T>(normal_vector(g.value_elements(), 1.0, rng));
  std::vector<double> offset, weight, om;
  if (fused) {
    g.set_fused_layout(width);
    om = rounded<T>(normal_vector(g.batch * g.out_plane() * width, 2.0, rng));
  } else {
    offset = rounded<T>(normal_vector(P * K * 2, 2.0, rng));
    weight = rounded<T>(normal_vector(P * K, 1.0, rng));
    offset[3] = NAN;      // a NaN offset: zero sample
    offset[10] = 1e30;    // huge: zero sample
    offset[17] = -40.0;   // far outside the map
    if (opt.huge_weights) {
      // The deterministic value gradient once left an item holding an inf out of its
      // fixed-point bound, so its finite contributions (here 1e6 times the others)
      // overflowed the encoding; the float sums are the reference.
      for (size_t i = static_cast<size_t>(K); i < weight.size(); ++i) weight[i] = to_double(from_double<T>(1e-2 * weight[i]));
      for (int64_t k = 0; k < K; ++k) weight[k] = k == 2 ? INFINITY : to_double(from_double<T>(1e4 * weight[k]));
    }
  }
  std::vector<double> grad_out = rounded<T>(normal_vector(g.out_elements(), 1.0, rng));
  const double* off_h = fused ? om.data() : offset.data();
  const double* w_h = fused ? om.data() : weight.data();

  std::vector<double> want_out(g.out_elements()), want_gv(g.value_elements());
  std::vector<double> want_go(fused ? om.size() : offset.size(), 0.0), want_gw(fused ? 0 : weight.size(), 0.0);
  pdcn::cpu::deform_aggregate_forward<double>(g, value.data(), off_h, w_h, want_out.data());
  pdcn::cpu::deform_aggregate_backward<double>(g, value.data(), off_h, w_h, grad_out.data(), want_gv.data(),
                                               want_go.data(), fused ? want_go.data() : want_gw.data());

  DeviceBuffer<T> d_value(value), d_grad_out(grad_out);
  DeviceBuffer<T> d_offset(fused ? om : offset), d_weight(fused ? std::vector<double>(1) : weight);
  const void* d_off = d_offset.ptr;
  const void* d_w = fused ? static_cast<const void*>(d_offset.ptr) : d_weight.ptr;
  DeviceBuffer<T> d_out(g.out_elements());
  EXPECT_OK(pdcn::cuda::deform_aggregate_forward(dtype, g, d_value.ptr, d_off, d_w, d_out.ptr, stream));
  CUDA_CHECK(cudaDeviceSynchronize());
  compare("forward", d_out.host(), want_out, tol.rtol, tol.atol);

  std::vector<double> first_gv;
  for (int deterministic = 0; deterministic < 2; ++deterministic) {
    for (int run = 0; run < (deterministic ? 2 : 1); ++run) {
      DeviceBuffer<T> d_gv(g.value_elements());
      // fused: zeroed, as the binding zeroes the tensor (its padding is never written)
      DeviceBuffer<T> d_go(std::vector<double>(want_go.size(), fused ? 0.0 : NAN));
      DeviceBuffer<T> d_gw(std::vector<double>(std::max<size_t>(1, want_gw.size()), NAN));
      void* scratch = nullptr;
      const int64_t bytes = pdcn::cuda::deform_aggregate_backward_scratch_bytes(dtype, g, deterministic != 0);
      if (bytes > 0) CUDA_CHECK(cudaMalloc(&scratch, bytes));
      EXPECT_OK(pdcn::cuda::deform_aggregate_backward(dtype, g, d_value.ptr, d_off, d_w, d_grad_out.ptr, d_gv.ptr,
                                                      d_go.ptr, fused ? d_go.ptr : d_gw.ptr, scratch,
                                                      deterministic != 0, stream));
      CUDA_CHECK(cudaDeviceSynchronize());
      if (scratch) cudaFree(scratch);
      const std::string tag = deterministic ? " (deterministic)" : " (atomic)";
      const std::vector<double> gv = d_gv.host();
      if (run == 0) {
        compare("grad value" + tag, gv, want_gv, tol.rtol, tol.atol);
        compare("grad offset" + tag, d_go.host(), want_go, tol.rtol, tol.atol * 10);
        if (!fused) compare("grad weight" + tag, d_gw.host(), want_gw, tol.rtol, tol.atol * 10);
        if (deterministic) first_gv = gv;
      } else {
        bool same = true;
        for (size_t i = 0; i < gv.size(); ++i) same = same && (gv[i] == first_gv[i] || (std::isnan(gv[i]) && std::isnan(first_gv[i])));
        std::printf("  %-38s %s\n", "deterministic grad value, 2 runs", same ? "bitwise equal ok" : "differ FAIL");
        if (!same) ++failures();
      }
    }
  }
  if (stream) CUDA_CHECK(cudaStreamDestroy(stream));
}

template <typename T>
void run_all(DType dtype, Tolerance tol) {
  std::mt19937_64 rng(7);
  run_case<T>("G=3 C=5 k3 s1", dtype, make_aggregate_geometry(2, 9, 8, 3, 5, 3, 1, 1, 1.0), false, tol, rng);
  run_case<T>("G=4 C=16 k3 s2 scale 0.5", dtype,
              make_aggregate_geometry(2, 12, 11, 4, 16, 3, 2, 1, 0.5), false, tol, rng);
  run_case<T>("G=2 C=64 k5 dil2", dtype,
              make_aggregate_geometry(1, 10, 9, 2, 64, 5, 1, 2, 1.0), false, tol, rng);
  run_case<T>("G=2 C=3 k3 (fused)", dtype,
              make_aggregate_geometry(2, 7, 7, 2, 3, 3, 1, 1, 1.0), true, tol, rng);
  run_case<T>("G=4 C=9 k3 s2 (fused)", dtype,
              make_aggregate_geometry(1, 9, 10, 4, 9, 3, 2, 1, 1.3), true, tol, rng);
  CaseOptions huge;
  huge.huge_weights = true;
  run_case<T>("G=2 C=4 k3, inf and 1e6 x weights", dtype,
              make_aggregate_geometry(1, 6, 7, 2, 4, 3, 1, 1, 1.0), false, tol, rng, huge);
  // a 3x2 kernel, stride (2, 1), padding (0, 1), dilation (1, 2): h and w differ
  AggregateGeometry skew = make_aggregate_geometry(2, 9, 8, 2, 8, 3, 1, 1, 1.0);
  skew.kernel_w = 2;
  skew.stride_h = 2;
  skew.pad_h = 0;
  skew.dilation_w = 2;
  skew.out_h = (skew.in_h - 3) / 2 + 1;
  skew.out_w = (skew.in_w + 2 - (2 * 1 + 1)) / 1 + 1;
  skew.set_separate_layout();
  CaseOptions own;
  own.own_stream = true;
  run_case<T>("G=2 C=8 k3x2 s(2,1) on a created stream", dtype, skew, false, tol, rng, own);
  run_case<T>("G=2 C=8 k3x2 s(2,1) (fused)", dtype, skew, true, tol, rng);
  // an empty input plane with a non-empty output (1x1 kernel, padding 1): zeros
  AggregateGeometry empty = make_aggregate_geometry(2, 0, 5, 2, 4, 1, 1, 1, 1.0);
  empty.pad_h = empty.pad_w = 1;
  empty.out_h = empty.in_h + 2;
  empty.out_w = empty.in_w + 2;
  empty.set_separate_layout();
  run_case<T>("G=2 C=4 k1, empty 0x5 input plane", dtype, empty, false, tol, rng);
  run_case<T>("G=2 C=4 k1, empty 0x5 input plane (fused)", dtype, empty, true, tol, rng);
}

}  // namespace

int main() {
  if (!has_cuda_device()) {
    std::fprintf(stderr, "no CUDA device: nothing to test\n");
    return 3;
  }
  run_all<double>(DType::kFloat64, {1e-10, 1e-10});
  run_all<float>(DType::kFloat32, {1e-4, 1e-4});
  run_all<__half>(DType::kFloat16, {2e-2, 5e-2});
  run_all<__nv_bfloat16>(DType::kBFloat16, {3e-2, 2e-1});
  std::printf(failures() ? "FAILED: %d comparisons\n" : "all CUDA aggregation comparisons passed\n", failures());
  return failures() ? 1 : 0;
}
