// Native test of the CPU RoI pooling kernels under AddressSanitizer: NaN, Inf
// and huge box coordinates and offsets must never read or write outside the
// buffers, must give finite results, must pool NaN boxes to exactly zero, and
// must leave the results of the clean boxes untouched (bitwise).
// Run by custom_ops/tests/run_cpu_native.sh.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "deform_psroi_pool_cpu.h"
#include "deform_roi_pool_cpu.h"

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  std::printf("  %-58s %s\n", what, ok ? "ok" : "FAIL");
  if (!ok) ++failures;
}

bool all_finite(const std::vector<double>& v) {
  for (double e : v) {
    if (!std::isfinite(e)) return false;
  }
  return true;
}

// Elements [begin, end) of two vectors are bitwise equal.
bool same_range(const std::vector<double>& a, const std::vector<double>& b, size_t begin,
                size_t end) {
  for (size_t i = begin; i < end; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

bool zero_range(const std::vector<double>& a, size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i) {
    if (a[i] != 0.0) return false;
  }
  return true;
}

struct Run {
  std::vector<double> out, grad_x, grad_offset;
};

// Boxes 0..5 are poisoned in the "bad" set, 6.. are clean in both.
constexpr int kPoisoned = 6;
const double kNan = NAN, kInf = INFINITY;
const double kBadBoxes[kPoisoned][4] = {
    {kNan, 1, 5, 5}, {1, 1, kNan, 6}, {kInf, 0, kInf, 4},
    {-1e30, -1e30, 1e30, 1e30}, {3e9, 3e9, 3e9 + 10, 3e9 + 10}, {-kInf, -kInf, kInf, kInf}};

template <typename Geometry, typename Forward, typename BackX, typename BackOff>
Run run(const Geometry& g, size_t out_size, size_t x_size, size_t off_size,
        const std::vector<double>& x, const std::vector<double>& boxes,
        const std::vector<int>& batch, const std::vector<double>& offset,
        const std::vector<double>& grad_out, Forward fwd, BackX bx, BackOff bo) {
  Run r;
  r.out.assign(out_size, -1.0);
  r.grad_x.assign(x_size, -1.0);
  r.grad_offset.assign(off_size, -1.0);
  fwd(g, x.data(), boxes.data(), batch.data(), offset.data(), r.out.data());
  bx(g, grad_out.data(), boxes.data(), batch.data(), offset.data(), r.grad_x.data());
  bo(g, grad_out.data(), x.data(), boxes.data(), batch.data(), offset.data(),
     r.grad_offset.data());
  return r;
}

}  // namespace

int main() {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  auto randoms = [&](size_t n, double scale) {
    std::vector<double> v(n);
    for (auto& e : v) e = scale * normal(rng);
    return v;
  };
  const int64_t K = 12, N = 2, H = 9, W = 10;
  std::vector<int> batch(K);
  for (int64_t k = 0; k < K; ++k) batch[k] = static_cast<int>(k % 2);
  std::vector<double> clean_boxes(4 * K);
  for (int64_t k = 0; k < K; ++k) {
    const double x1 = uniform(rng) * 12 - 2, y1 = uniform(rng) * 12 - 2;
    clean_boxes[4 * k] = x1;
    clean_boxes[4 * k + 1] = y1;
    clean_boxes[4 * k + 2] = x1 + 0.5 + uniform(rng) * 8;
    clean_boxes[4 * k + 3] = y1 + 0.5 + uniform(rng) * 8;
  }
  std::vector<double> bad_boxes = clean_boxes;
  for (int k = 0; k < kPoisoned; ++k) {
    for (int q = 0; q < 4; ++q) bad_boxes[4 * k + q] = kBadBoxes[k][q];
  }
  const double poisons[] = {kNan, kInf, -kInf, 1e30, -1e30, 3e9};

  // ---- RoIAlign-based ----
  for (int aligned = 0; aligned < 2; ++aligned) {
    pdcn::DeformRoiPoolGeometry g{};
    g.batch = N; g.channels = 3; g.in_h = H; g.in_w = W; g.num_rois = K;
    g.pooled_h = 3; g.pooled_w = 2; g.sampling_ratio = -1;
    g.max_grid = pdcn::default_max_grid(H, W); g.spatial_scale = 1.0f; g.gamma = 0.3f;
    g.aligned = aligned != 0;
    std::printf("deform_roi_pool (aligned=%d)\n", aligned);
    const size_t bins = g.bins(), out_size = g.out_elements(), per_box = 3 * bins;
    const auto x = randoms(N * 3 * H * W, 1.0);
    const auto clean_offset = randoms(K * 2 * bins, 1.0);
    auto bad_offset = clean_offset;
    for (int k = 0; k < kPoisoned; ++k) {  // poisoned boxes also get poisoned offsets
      for (size_t e = 0; e < 2 * bins; e += 2) bad_offset[k * 2 * bins + e] = poisons[(k + e) % 6];
    }
    auto grad_out = randoms(out_size, 1.0);
    auto grad_out_clean_only = grad_out;
    for (size_t i = 0; i < kPoisoned * per_box; ++i) grad_out_clean_only[i] = 0.0;
    auto fwd = pdcn::cpu::deform_roi_pool_forward<double>;
    auto bx = pdcn::cpu::deform_roi_pool_backward_x<double>;
    auto bo = pdcn::cpu::deform_roi_pool_backward_offset<double>;
    const Run clean = run(g, out_size, x.size(), clean_offset.size(), x, clean_boxes, batch,
                          clean_offset, grad_out_clean_only, fwd, bx, bo);
    const Run bad = run(g, out_size, x.size(), clean_offset.size(), x, bad_boxes, batch,
                        bad_offset, grad_out_clean_only, fwd, bx, bo);
    const Run bad_grad = run(g, out_size, x.size(), clean_offset.size(), x, bad_boxes, batch,
                             bad_offset, grad_out, fwd, bx, bo);
    check(all_finite(bad.out) && all_finite(bad_grad.grad_x) && all_finite(bad_grad.grad_offset),
          "finite outputs and gradients");
    check(same_range(bad.out, clean.out, kPoisoned * per_box, out_size),
          "clean boxes: forward unchanged (bitwise)");
    check(same_range(bad.grad_x, clean.grad_x, 0, x.size()), "grad x unchanged (bitwise)");
    check(same_range(bad.grad_offset, clean.grad_offset, kPoisoned * 2 * bins,
                     clean_offset.size()), "clean boxes: grad offset unchanged (bitwise)");
    check(zero_range(bad.out, 0, 3 * per_box), "NaN / Inf boxes pool to zero");

    // The CUDA kernel's per-element offset gradient (run here on the host) and the CPU
    // driver: a channel of zero gradient adds nothing, so an inf in its input stays out.
    auto x_inf = x;
    for (int64_t n = 0; n < N; ++n) x_inf[(n * 3 + 1) * H * W + 4 * W + 5] = kInf;
    auto go = grad_out;
    for (int64_t k = 0; k < K; ++k) {
      for (size_t b = 0; b < bins; ++b) go[(k * 3 + 1) * bins + b] = 0.0;
    }
    auto element_grad = [&](const std::vector<double>& gout) {
      std::vector<double> e(clean_offset.size(), -1.0);
      for (int64_t k = 0; k < K; ++k) {
        for (int64_t i = 0; i < g.pooled_h; ++i) {
          for (int64_t j = 0; j < g.pooled_w; ++j) {
            pdcn::deform_roi_pool_offset_grad_element<double>(g, gout.data(), x_inf.data(),
                                                              clean_boxes.data(), batch.data(),
                                                              clean_offset.data(), e.data(), k, i, j);
          }
        }
      }
      return e;
    };
    std::vector<double> cpu(clean_offset.size(), -1.0);
    bo(g, go.data(), x_inf.data(), clean_boxes.data(), batch.data(), clean_offset.data(), cpu.data());
    const std::vector<double> element = element_grad(go);
    double diff = 0.0;
    for (size_t e = 0; e < cpu.size(); ++e) diff = std::fmax(diff, std::fabs(cpu[e] - element[e]));
    check(all_finite(cpu) && all_finite(element) && diff < 1e-12,
          "zero-gradient channel with inf: element == CPU, finite");
    check(!all_finite(element_grad(grad_out)), "... and the inf is sampled (test can fail)");
  }

  // ---- position-sensitive ----
  {
    pdcn::DeformPSRoiPoolGeometry g{};
    g.batch = N; g.out_channels = 2; g.pooled_h = 2; g.pooled_w = 3;
    g.in_channels = g.out_channels * g.bins(); g.in_h = H; g.in_w = W; g.num_rois = K;
    g.part_h = 2; g.part_w = 2; g.offset_groups = 2; g.sample_per_part = 3;
    g.spatial_scale = 1.0f; g.trans_std = 0.2f;
    std::printf("deform_psroi_pool\n");
    const size_t out_size = g.out_elements(), per_box = g.out_channels * g.bins();
    const size_t off_per_box = 2 * g.offset_groups * g.parts();
    const auto x = randoms(N * g.in_channels * H * W, 1.0);
    const auto clean_offset = randoms(K * off_per_box, 1.0);
    auto bad_offset = clean_offset;
    for (int k = 0; k < kPoisoned; ++k) {
      for (size_t e = 0; e < off_per_box; e += 3) bad_offset[k * off_per_box + e] = poisons[(k + e) % 6];
    }
    auto grad_out = randoms(out_size, 1.0);
    auto grad_out_clean_only = grad_out;
    for (size_t i = 0; i < kPoisoned * per_box; ++i) grad_out_clean_only[i] = 0.0;
    auto fwd = pdcn::cpu::deform_psroi_pool_forward<double>;
    auto bx = pdcn::cpu::deform_psroi_pool_backward_x<double>;
    auto bo = pdcn::cpu::deform_psroi_pool_backward_offset<double>;
    const Run clean = run(g, out_size, x.size(), clean_offset.size(), x, clean_boxes, batch,
                          clean_offset, grad_out_clean_only, fwd, bx, bo);
    const Run bad = run(g, out_size, x.size(), clean_offset.size(), x, bad_boxes, batch,
                        bad_offset, grad_out_clean_only, fwd, bx, bo);
    const Run bad_grad = run(g, out_size, x.size(), clean_offset.size(), x, bad_boxes, batch,
                             bad_offset, grad_out, fwd, bx, bo);
    check(all_finite(bad.out) && all_finite(bad_grad.grad_x) && all_finite(bad_grad.grad_offset),
          "finite outputs and gradients");
    check(same_range(bad.out, clean.out, kPoisoned * per_box, out_size),
          "clean boxes: forward unchanged (bitwise)");
    check(same_range(bad.grad_x, clean.grad_x, 0, x.size()), "grad x unchanged (bitwise)");
    check(same_range(bad.grad_offset, clean.grad_offset, kPoisoned * off_per_box,
                     clean_offset.size()), "clean boxes: grad offset unchanged (bitwise)");
    check(zero_range(bad.out, 0, 3 * per_box), "NaN / Inf boxes pool to zero");
  }
  std::printf(failures ? "FAILED: %d checks\n"
                       : "CPU RoI pooling kernels: poisoned boxes and offsets stay in bounds\n",
              failures);
  return failures ? 1 : 0;
}
