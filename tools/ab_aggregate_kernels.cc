// The DCNv3/v4 CPU kernels of this checkout against those of another revision,
// in one process, interleaved (run by tools/ab_aggregate_kernels.sh, which
// puts the other revision's deform_aggregate_cpu.h in namespace cpu_base as
// base_aggregate_cpu.h). Per shape (the benchmark_aggregate.py shapes, one
// thread as the caller sets OMP_NUM_THREADS): medians of the forward and the
// backward of each, and the largest difference of their results (0: bitwise
// equal). Kernels alone: no Paddle, no allocation in the timed region.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "deform_aggregate_cpu.h"
#include "base_aggregate_cpu.h"

using namespace pdcn;

namespace {

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void run(const char* label, int n, int hw, int c, int groups, int repeats) {
  AggregateGeometry g{};
  g.batch = n;
  g.in_h = g.in_w = g.out_h = g.out_w = hw;
  g.groups = groups;
  g.group_channels = c / groups;
  g.kernel_h = g.kernel_w = 3;
  g.stride_h = g.stride_w = g.dilation_h = g.dilation_w = 1;
  g.pad_h = g.pad_w = 1;
  g.offset_scale = 1.0;
  g.set_separate_layout();
  const int64_t pixels = int64_t(n) * hw * hw, points = pixels * groups * 9;
  std::mt19937 rng(0);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> shift(-2, 2), unit(0, 1);
  std::vector<float> value(pixels * c), offset(points * 2), weight(points), grad_out(pixels * c);
  for (auto& v : value) v = normal(rng);
  for (auto& v : offset) v = shift(rng);
  for (auto& v : weight) v = unit(rng);
  for (auto& v : grad_out) v = normal(rng);
  std::vector<float> out[2], gv[2], go[2], gw[2];
  for (int i = 0; i < 2; ++i) {
    out[i].resize(value.size());
    gv[i].resize(value.size());
    go[i].resize(offset.size());
    gw[i].resize(weight.size());
  }
  std::vector<double> fwd[2], bwd[2];
  const auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  for (int r = 0; r < repeats; ++r) {
    for (int i = 0; i < 2; ++i) {  // 0: this checkout, 1: the base revision
      const auto t0 = std::chrono::steady_clock::now();
      if (i == 0) {
        cpu::deform_aggregate_forward(g, value.data(), offset.data(), weight.data(), out[0].data());
      } else {
        cpu_base::deform_aggregate_forward(g, value.data(), offset.data(), weight.data(), out[1].data());
      }
      const auto t1 = std::chrono::steady_clock::now();
      if (i == 0) {
        cpu::deform_aggregate_backward(g, value.data(), offset.data(), weight.data(), grad_out.data(),
                                       gv[0].data(), go[0].data(), gw[0].data());
      } else {
        cpu_base::deform_aggregate_backward(g, value.data(), offset.data(), weight.data(), grad_out.data(),
                                            gv[1].data(), go[1].data(), gw[1].data());
      }
      const auto t2 = std::chrono::steady_clock::now();
      fwd[i].push_back(ms(t0, t1));
      bwd[i].push_back(ms(t1, t2));
    }
  }
  const double diff = std::max({max_diff(out[0], out[1]), max_diff(gv[0], gv[1]), max_diff(go[0], go[1]),
                                max_diff(gw[0], gw[1])});
  std::printf("| %s | %dx%dx%dx%d, G=%d | %.2f | %.2f | %.2fx | %.2f | %.2f | %.2fx | %.2g |\n", label, n, hw, hw,
              c, groups, median(fwd[1]), median(fwd[0]), median(fwd[1]) / median(fwd[0]), median(bwd[1]),
              median(bwd[0]), median(bwd[1]) / median(bwd[0]), diff);
}

}  // namespace

int main() {
  std::printf("| shape | value NxHxWxC | base fwd | fwd | base / this | base bwd | bwd | base / this | max diff |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
  run("InternImage-T stage 1", 1, 56, 64, 4, 41);
  run("InternImage-T stage 2", 1, 28, 128, 8, 41);
  run("InternImage-T stage 3", 1, 14, 256, 16, 41);
  run("InternImage-T stage 4", 1, 7, 512, 32, 41);
  run("dcnv3_r50 conv2_x", 32, 24, 16, 4, 21);
  run("dcnv3_r50 conv3_x", 32, 12, 32, 4, 21);
}
