// Helpers shared by the native CUDA-vs-CPU tests (nvcc only, no Paddle):
// dtype round trips through doubles, device buffers, tolerance checks.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#define CUDA_CHECK(expr)                                                         \
  do {                                                                           \
    cudaError_t err_ = (expr);                                                   \
    if (err_ != cudaSuccess) {                                                   \
      std::fprintf(stderr, "CUDA error %s at %s:%d\n", cudaGetErrorString(err_), \
                   __FILE__, __LINE__);                                          \
      std::exit(2);                                                              \
    }                                                                            \
  } while (0)

namespace native_test {

template <typename T> inline T from_double(double v) { return static_cast<T>(v); }
template <> inline __half from_double<__half>(double v) {
  return __float2half(static_cast<float>(v));
}
template <> inline __nv_bfloat16 from_double<__nv_bfloat16>(double v) {
  return __float2bfloat16(static_cast<float>(v));
}
template <typename T> inline double to_double(T v) { return static_cast<double>(v); }
template <> inline double to_double<__half>(__half v) { return __half2float(v); }
template <> inline double to_double<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

// Rounded through T, so that both sides see the same inputs.
template <typename T>
std::vector<double> rounded(std::vector<double> v) {
  for (auto& e : v) e = to_double(from_double<T>(e));
  return v;
}

template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(const std::vector<double>& host) : n(host.size()) {
    std::vector<T> tmp(n);
    for (size_t i = 0; i < n; ++i) tmp[i] = from_double<T>(host[i]);
    CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(1, n) * sizeof(T)));
    CUDA_CHECK(cudaMemcpy(ptr, tmp.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  // Uninitialised output: filled with NaN-like garbage that the kernel must overwrite.
  explicit DeviceBuffer(size_t count) : n(count) {
    CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(1, n) * sizeof(T)));
    CUDA_CHECK(cudaMemset(ptr, 0xff, n * sizeof(T)));
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cudaFree(ptr); }
  std::vector<double> host() const {
    std::vector<T> tmp(n);
    CUDA_CHECK(cudaMemcpy(tmp.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<double> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = to_double(tmp[i]);
    return out;
  }
};

inline int& failures() {
  static int count = 0;
  return count;
}

// Prints the worst error of got against want; counts a failure when any
// element is off by more than atol + rtol * |want| (NaN counts as off).
inline void compare(const std::string& what, const std::vector<double>& got,
                    const std::vector<double>& want, double rtol, double atol) {
  double worst = 0, scale = 0;
  size_t bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(want[i])) {  // a non-finite reference: the same inf, or a NaN
      const bool same = std::isnan(want[i]) ? std::isnan(got[i]) : got[i] == want[i];
      if (!same) ++bad;
      continue;
    }
    const double err = std::fabs(got[i] - want[i]);
    scale = std::max(scale, std::fabs(want[i]));
    if (!(err <= atol + rtol * std::fabs(want[i]))) ++bad;
    if (err > worst || std::isnan(err)) worst = err;
  }
  std::printf("  %-38s max abs err %.3e (max |ref| %.3e) %s\n", what.c_str(), worst, scale,
              bad ? "FAIL" : "ok");
  if (bad) ++failures();
}

// An entry point's status: 0, or a CUDA error that fails the test.
#define EXPECT_OK(call)                                                                     \
  do {                                                                                      \
    const int status_ = (call);                                                             \
    if (status_ != 0) {                                                                     \
      std::printf("  %s:%d: %s returned %d (%s) FAIL\n", __FILE__, __LINE__, #call, status_, \
                  pdcn::cuda::error_string(status_));                                      \
      ++native_test::failures();                                                            \
    }                                                                                       \
  } while (0)

inline std::vector<double> normal_vector(size_t n, double scale, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<double> v(n);
  for (auto& e : v) e = normal(rng);
  return v;
}

inline bool has_cuda_device() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) return false;
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
  return true;
}

}  // namespace native_test
