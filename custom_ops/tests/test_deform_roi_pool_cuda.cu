// Native test: the CUDA deformable RoI pooling kernels (RoIAlign-based and
// position-sensitive) against the CPU drivers on the same random inputs, for
// float32, float64, float16 and bfloat16 (the CPU reference runs in float64
// for float64 and in float32 otherwise, on the same rounded inputs). Forward,
// grad x and grad offset, with and without offsets, including NaN / huge boxes
// and NaN / huge offsets. Needs only nvcc and a GPU (no Paddle):
//   bash custom_ops/tests/build.sh --run
// Exit status 0 when every comparison is within tolerance.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "deform_psroi_pool_cpu.h"
#include "deform_roi_pool_cpu.h"
#include "deform_roi_pool_cuda.h"

using pdcn::DeformPSRoiPoolGeometry;
using pdcn::DeformRoiPoolGeometry;
using pdcn::cuda::DType;

#include "native_test_util.cuh"

using namespace native_test;

namespace {

struct IntDeviceBuffer {
  int* ptr = nullptr;
  explicit IntDeviceBuffer(const std::vector<int>& host) {
    CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(1, host.size()) * sizeof(int)));
    CUDA_CHECK(cudaMemcpy(ptr, host.data(), host.size() * sizeof(int), cudaMemcpyHostToDevice));
  }
  IntDeviceBuffer(const IntDeviceBuffer&) = delete;
  ~IntDeviceBuffer() { cudaFree(ptr); }
};

// roi_batch_from_counts on the device against the expected indices, with
// int32 and int64 counts (no host sync inside the entry point).
void roi_batch_case(const std::vector<int64_t>& counts, int64_t num_rois,
                    const std::vector<int>& want) {
  for (int wide = 0; wide < 2; ++wide) {
    void* d_counts = nullptr;
    const size_t elem = wide ? sizeof(int64_t) : sizeof(int32_t);
    std::vector<int32_t> narrow(counts.begin(), counts.end());
    CUDA_CHECK(cudaMalloc(&d_counts, std::max<size_t>(1, counts.size()) * elem));
    CUDA_CHECK(cudaMemcpy(d_counts, wide ? static_cast<const void*>(counts.data()) : narrow.data(),
                          counts.size() * elem, cudaMemcpyHostToDevice));
    IntDeviceBuffer d_batch(std::vector<int>(num_rois, 12345));
    EXPECT_OK(pdcn::cuda::roi_batch_from_counts(d_counts, wide != 0,
                                                static_cast<int64_t>(counts.size()), num_rois,
                                                d_batch.ptr, nullptr));
    std::vector<int> got(num_rois);
    CUDA_CHECK(cudaMemcpy(got.data(), d_batch.ptr, num_rois * sizeof(int), cudaMemcpyDeviceToHost));
    cudaFree(d_counts);
    const bool same = got == want;
    std::printf("  roi_batch_from_counts (%s, K=%lld) %s\n", wide ? "int64" : "int32",
                static_cast<long long>(num_rois), same ? "ok" : "FAIL");
    if (!same) ++failures();
  }
}

// Boxes (x1, y1, x2, y2) in image units for a map of h x w at `scale`, some
// crossing the border; with `poison`, a few are NaN / Inf / huge.
std::vector<double> random_boxes(int64_t k, double h, double w, double scale, bool poison,
                                 std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> b(4 * k);
  for (int64_t i = 0; i < k; ++i) {
    const double x1 = (u(rng) * 1.2 - 0.15) * w / scale, y1 = (u(rng) * 1.2 - 0.15) * h / scale;
    b[4 * i + 0] = x1;
    b[4 * i + 1] = y1;
    b[4 * i + 2] = x1 + (0.3 + u(rng) * 0.8 * w) / scale;
    b[4 * i + 3] = y1 + (0.3 + u(rng) * 0.8 * h) / scale;
  }
  if (poison && k >= 4) {
    b[0] = NAN;
    b[4 + 2] = INFINITY;
    b[8 + 0] = -1e30;
    b[8 + 2] = 1e30;
    b[12 + 1] = 3e9;
    b[12 + 3] = 3e9 + 10;
  }
  return b;
}

void poison_offsets(std::vector<double>& offset) {
  const double bad[] = {NAN, INFINITY, -INFINITY, 1e30, 3e9, -3e9};
  for (size_t i = 0; i < offset.size(); i += 5) offset[i] = bad[(i / 5) % 6];
}

std::vector<int> batch_index(const std::vector<int>& boxes_num) {
  std::vector<int> idx;
  for (size_t n = 0; n < boxes_num.size(); ++n) idx.insert(idx.end(), boxes_num[n], int(n));
  return idx;
}

const char* dtype_name(DType d) {
  return d == DType::kFloat32 ? "float32" : d == DType::kFloat64 ? "float64"
         : d == DType::kFloat16 ? "float16" : "bfloat16";
}

struct Tolerance {
  double rtol, atol;
};

// T: device type; Ref: CPU reference type; Acc: type of the boxes.
template <typename T>
void roi_case(const char* name, DeformRoiPoolGeometry g, const std::vector<int>& boxes_num,
              DType dtype, Tolerance tol, bool poison) {
  using Acc = pdcn::acc_t<T>;
  using Ref = typename std::conditional<std::is_same<T, double>::value, double, float>::type;
  std::printf("roi_pool: %s [%s]\n", name, dtype_name(dtype));
  std::mt19937_64 rng(17);
  const std::vector<int> batch = batch_index(boxes_num);
  g.num_rois = static_cast<int64_t>(batch.size());
  g.max_grid = pdcn::default_max_grid(g.in_h, g.in_w);
  const auto x = rounded<T>(normal_vector(g.batch * g.channels * g.in_plane(), 1.0, rng));
  const auto boxes = rounded<Acc>(random_boxes(g.num_rois, g.in_h, g.in_w, g.spatial_scale,
                                               poison, rng));
  auto offset = rounded<T>(normal_vector(g.num_rois * 2 * g.bins(), 1.0, rng));
  if (poison) {
    poison_offsets(offset);
    offset = rounded<T>(offset);
  }
  const auto grad_out = rounded<T>(normal_vector(g.out_elements(), 1.0, rng));

  auto ref_vec = [](const std::vector<double>& v) { return std::vector<Ref>(v.begin(), v.end()); };
  const auto rx = ref_vec(x), rboxes = ref_vec(boxes), roff = ref_vec(offset),
             rgo = ref_vec(grad_out);
  IntDeviceBuffer d_batch(batch);
  DeviceBuffer<T> d_x(x), d_offset(offset), d_grad_out(grad_out);
  DeviceBuffer<Acc> d_boxes(boxes);
  DeviceBuffer<float> d_scratch(
      static_cast<size_t>(pdcn::cuda::deform_roi_pool_backward_scratch_bytes(dtype, g, /*deterministic=*/true) / 4));
  for (int with_offset = 0; with_offset < 2; ++with_offset) {
    const Ref* ro = with_offset ? roff.data() : nullptr;
    const void* dof = with_offset ? static_cast<const void*>(d_offset.ptr) : nullptr;
    std::vector<Ref> out(g.out_elements()), gx(x.size()), goff(offset.size(), Ref(0));
    pdcn::cpu::deform_roi_pool_forward<Ref>(g, rx.data(), rboxes.data(), batch.data(), ro,
                                            out.data());
    pdcn::cpu::deform_roi_pool_backward_x<Ref>(g, rgo.data(), rboxes.data(), batch.data(), ro,
                                               gx.data());
    if (with_offset) {
      pdcn::cpu::deform_roi_pool_backward_offset<Ref>(g, rgo.data(), rx.data(), rboxes.data(),
                                                      batch.data(), ro, goff.data());
    }
    DeviceBuffer<T> d_out(out.size()), d_gx(gx.size()), d_gx_det(gx.size()),
        d_gx_again(gx.size()), d_goff(goff.size());
    EXPECT_OK(pdcn::cuda::deform_roi_pool_forward(dtype, g, d_x.ptr, d_boxes.ptr, d_batch.ptr, dof,
                                        d_out.ptr, nullptr));
    EXPECT_OK(pdcn::cuda::deform_roi_pool_backward(dtype, g, d_grad_out.ptr, d_x.ptr, d_boxes.ptr,
                                         d_batch.ptr, dof, d_gx.ptr,
                                         with_offset ? d_goff.ptr : nullptr, d_scratch.ptr,
                                         /*deterministic=*/false, nullptr));
    for (auto* buf : {&d_gx_det, &d_gx_again}) {
      EXPECT_OK(pdcn::cuda::deform_roi_pool_backward(dtype, g, d_grad_out.ptr, d_x.ptr, d_boxes.ptr,
                                           d_batch.ptr, dof, buf->ptr, nullptr, d_scratch.ptr,
                                           /*deterministic=*/true, nullptr));
    }
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::string tag = with_offset ? " (offset)" : " (no offset)";
    compare("forward" + tag, d_out.host(), {out.begin(), out.end()}, tol.rtol, tol.atol);
    compare("grad x" + tag, d_gx.host(), {gx.begin(), gx.end()}, tol.rtol, tol.atol * 4);
    compare("grad x deterministic" + tag, d_gx_det.host(), {gx.begin(), gx.end()}, tol.rtol,
            tol.atol * 4);
    compare("grad x deterministic repeat (bitwise)", d_gx_again.host(), d_gx_det.host(), 0, 0);
    if (with_offset) {
      compare("grad offset" + tag, d_goff.host(), {goff.begin(), goff.end()}, tol.rtol,
              tol.atol * 8);
    }
  }
}

template <typename T>
void psroi_case(const char* name, DeformPSRoiPoolGeometry g, const std::vector<int>& boxes_num,
                DType dtype, Tolerance tol, bool poison) {
  using Acc = pdcn::acc_t<T>;
  using Ref = typename std::conditional<std::is_same<T, double>::value, double, float>::type;
  std::printf("psroi_pool: %s [%s]\n", name, dtype_name(dtype));
  std::mt19937_64 rng(29);
  const std::vector<int> batch = batch_index(boxes_num);
  g.num_rois = static_cast<int64_t>(batch.size());
  g.in_channels = g.out_channels * g.bins();
  const auto x = rounded<T>(normal_vector(g.batch * g.in_channels * g.in_plane(), 1.0, rng));
  const auto boxes = rounded<Acc>(random_boxes(g.num_rois, g.in_h, g.in_w, g.spatial_scale,
                                               poison, rng));
  auto offset = rounded<T>(normal_vector(g.num_rois * 2 * g.offset_groups * g.parts(), 1.0, rng));
  if (poison) {
    poison_offsets(offset);
    offset = rounded<T>(offset);
  }
  const auto grad_out = rounded<T>(normal_vector(g.out_elements(), 1.0, rng));

  auto ref_vec = [](const std::vector<double>& v) { return std::vector<Ref>(v.begin(), v.end()); };
  const auto rx = ref_vec(x), rboxes = ref_vec(boxes), roff = ref_vec(offset),
             rgo = ref_vec(grad_out);
  IntDeviceBuffer d_batch(batch);
  DeviceBuffer<T> d_x(x), d_offset(offset), d_grad_out(grad_out);
  DeviceBuffer<Acc> d_boxes(boxes);
  DeviceBuffer<float> d_scratch(
      static_cast<size_t>(pdcn::cuda::deform_psroi_pool_backward_scratch_bytes(dtype, g, /*deterministic=*/true) / 4));
  for (int with_offset = 0; with_offset < 2; ++with_offset) {
    const Ref* ro = with_offset ? roff.data() : nullptr;
    const void* dof = with_offset ? static_cast<const void*>(d_offset.ptr) : nullptr;
    std::vector<Ref> out(g.out_elements()), gx(x.size()), goff(offset.size(), Ref(0));
    pdcn::cpu::deform_psroi_pool_forward<Ref>(g, rx.data(), rboxes.data(), batch.data(), ro,
                                              out.data());
    pdcn::cpu::deform_psroi_pool_backward_x<Ref>(g, rgo.data(), rboxes.data(), batch.data(), ro,
                                                 gx.data());
    if (with_offset) {
      pdcn::cpu::deform_psroi_pool_backward_offset<Ref>(g, rgo.data(), rx.data(), rboxes.data(),
                                                        batch.data(), ro, goff.data());
    }
    DeviceBuffer<T> d_out(out.size()), d_gx(gx.size()), d_gx_det(gx.size()),
        d_gx_again(gx.size()), d_goff(goff.size());
    EXPECT_OK(pdcn::cuda::deform_psroi_pool_forward(dtype, g, d_x.ptr, d_boxes.ptr, d_batch.ptr, dof,
                                          d_out.ptr, nullptr));
    EXPECT_OK(pdcn::cuda::deform_psroi_pool_backward(dtype, g, d_grad_out.ptr, d_x.ptr, d_boxes.ptr,
                                           d_batch.ptr, dof, d_gx.ptr,
                                           with_offset ? d_goff.ptr : nullptr, d_scratch.ptr,
                                           /*deterministic=*/false, nullptr));
    for (auto* buf : {&d_gx_det, &d_gx_again}) {
      EXPECT_OK(pdcn::cuda::deform_psroi_pool_backward(dtype, g, d_grad_out.ptr, d_x.ptr, d_boxes.ptr,
                                             d_batch.ptr, dof, buf->ptr, nullptr, d_scratch.ptr,
                                             /*deterministic=*/true, nullptr));
    }
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::string tag = with_offset ? " (offset)" : " (no offset)";
    compare("forward" + tag, d_out.host(), {out.begin(), out.end()}, tol.rtol, tol.atol);
    compare("grad x" + tag, d_gx.host(), {gx.begin(), gx.end()}, tol.rtol, tol.atol * 4);
    compare("grad x deterministic" + tag, d_gx_det.host(), {gx.begin(), gx.end()}, tol.rtol,
            tol.atol * 4);
    compare("grad x deterministic repeat (bitwise)", d_gx_again.host(), d_gx_det.host(), 0, 0);
    if (with_offset) {
      compare("grad offset" + tag, d_goff.host(), {goff.begin(), goff.end()}, tol.rtol,
              tol.atol * 8);
    }
  }
}

DeformRoiPoolGeometry roi_geometry(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ph,
                                   int64_t pw, float scale, int64_t sampling_ratio, bool aligned) {
  DeformRoiPoolGeometry g{};
  g.batch = n; g.channels = c; g.in_h = h; g.in_w = w; g.pooled_h = ph; g.pooled_w = pw;
  g.spatial_scale = scale; g.sampling_ratio = sampling_ratio; g.gamma = 0.1f; g.aligned = aligned;
  return g;
}

DeformPSRoiPoolGeometry ps_geometry(int64_t n, int64_t oc, int64_t h, int64_t w, int64_t ph,
                                    int64_t pw, int64_t part, int64_t groups, float scale) {
  DeformPSRoiPoolGeometry g{};
  g.batch = n; g.out_channels = oc; g.in_h = h; g.in_w = w; g.pooled_h = ph; g.pooled_w = pw;
  g.part_h = g.part_w = part; g.offset_groups = groups; g.sample_per_part = 3;
  g.spatial_scale = scale; g.trans_std = 0.1f;
  return g;
}

template <typename T>
void run_all(DType dtype, Tolerance tol) {
  roi_case<T>("7x7 adaptive, aligned, 3 images (one empty)",
              roi_geometry(3, 16, 25, 23, 7, 7, 0.25f, -1, true), {5, 0, 7}, dtype, tol, false);
  roi_case<T>("2x3 sampling 2, not aligned", roi_geometry(2, 5, 12, 17, 2, 3, 0.5f, 2, false),
              {3, 4}, dtype, tol, false);
  roi_case<T>("poisoned boxes and offsets", roi_geometry(2, 4, 10, 10, 3, 3, 1.0f, -1, true),
              {4, 2}, dtype, tol, true);
  psroi_case<T>("3x3, 2 offset groups, 3 images",
                ps_geometry(3, 4, 21, 19, 3, 3, 3, 2, 0.25f), {4, 0, 5}, dtype, tol, false);
  psroi_case<T>("2x2, part 4, class-agnostic", ps_geometry(2, 3, 9, 11, 2, 2, 4, 1, 0.5f), {2, 3},
                dtype, tol, false);
  psroi_case<T>("poisoned boxes and offsets", ps_geometry(2, 2, 10, 10, 2, 2, 2, 1, 1.0f),
                {3, 3}, dtype, tol, true);
}

}  // namespace

int main() {
  if (!has_cuda_device()) {
    std::fprintf(stderr, "no CUDA device: nothing to test\n");
    return 3;
  }
  roi_batch_case({5, 0, 7}, 12, {0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2});
  roi_batch_case({2, 1}, 5, {0, 0, 1, -1, -1});    // counts short of K: uncovered boxes
  roi_batch_case({-3, 2}, 3, {1, 1, -1});          // a negative count counts as zero
  run_all<double>(DType::kFloat64, {1e-10, 1e-10});
  run_all<float>(DType::kFloat32, {1e-4, 1e-5});
  run_all<__half>(DType::kFloat16, {2e-2, 2e-2});
  run_all<__nv_bfloat16>(DType::kBFloat16, {2e-2, 1e-1});
  std::printf(failures() ? "FAILED: %d comparisons\n" : "all CUDA RoI pooling comparisons passed\n",
              failures());
  return failures() ? 1 : 0;
}
