// Paddle binding of deformable convolution v1 (pdcn_deform_conv2d) and v2
// (pdcn_modulated_deform_conv2d): geometry and checks, workspace chunking,
// GEMMs (oneDNN's sgemm for float32 on CPU, see host_sgemm.h; Paddle's matmul
// otherwise), dispatch to the CPU or CUDA kernels.
//
// The Python wrapper (paddle_dcn/ops/deform_conv.py) validates user input
// with readable errors; the checks here are the second line of defence.
// Bias is added by the wrapper, outside the op.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "paddle/extension.h"

#include "../kernels/deform_conv_cpu.h"
#include "../kernels/conv_cpu_cl.h"
#include "../kernels/deform_conv_cpu_cl.h"
#include "../kernels/mask_logits.h"
#include "host_sgemm.h"
#include "plain_layout.h"
#include "op_common.h"

namespace {

using pdcn::DeformConvGeometry;
using pdcn::shape_str;

constexpr const char* kOp = "pdcn deform_conv2d";
constexpr const char* kConv = "pdcn conv2d";

struct ConvAttrs {
  std::vector<int> strides, paddings, dilations;
  int groups, deformable_groups;
};

DeformConvGeometry make_geometry(const std::vector<int64_t>& x_shape,
                                 const std::vector<int64_t>& weight_shape, const ConvAttrs& a) {
  PDCN_CHECK(x_shape.size() == 4, kOp, ": x must be 4-D [N, C, H, W], got ", shape_str(x_shape));
  PDCN_CHECK(weight_shape.size() == 4, kOp, ": weight must be 4-D [Cout, Cin/groups, kh, kw], got ",
           shape_str(weight_shape));
  PDCN_CHECK(a.strides.size() == 2 && a.paddings.size() == 2 && a.dilations.size() == 2, kOp,
           ": strides, paddings and dilations need 2 values each, got ", shape_str(a.strides), ", ",
           shape_str(a.paddings), ", ", shape_str(a.dilations));
  DeformConvGeometry g;
  g.batch = x_shape[0];
  g.in_channels = x_shape[1];
  g.in_h = x_shape[2];
  g.in_w = x_shape[3];
  g.out_channels = weight_shape[0];
  g.kernel_h = weight_shape[2];
  g.kernel_w = weight_shape[3];
  g.stride_h = a.strides[0];
  g.stride_w = a.strides[1];
  g.pad_h = a.paddings[0];
  g.pad_w = a.paddings[1];
  g.dilation_h = a.dilations[0];
  g.dilation_w = a.dilations[1];
  g.groups = a.groups;
  g.deformable_groups = a.deformable_groups;
  PDCN_CHECK(g.stride_h > 0 && g.stride_w > 0 && g.dilation_h > 0 && g.dilation_w > 0, kOp,
           ": strides and dilations must be positive, got strides ", shape_str(a.strides),
           ", dilations ", shape_str(a.dilations));
  PDCN_CHECK(g.pad_h >= 0 && g.pad_w >= 0, kOp, ": paddings must be >= 0, got ", shape_str(a.paddings));
  PDCN_CHECK(g.groups > 0 && g.deformable_groups > 0, kOp,
           ": groups and deformable_groups must be positive, got ", g.groups, " and ",
           g.deformable_groups);
  PDCN_CHECK(g.in_channels % g.groups == 0 && g.out_channels % g.groups == 0, kOp,
           ": in_channels (", g.in_channels, ") and out_channels (", g.out_channels,
           ") must divide by groups (", g.groups, ")");
  PDCN_CHECK(g.in_channels % g.deformable_groups == 0, kOp, ": in_channels (", g.in_channels,
           ") must divide by deformable_groups (", g.deformable_groups, ")");
  PDCN_CHECK(weight_shape[1] * g.groups == g.in_channels, kOp, ": weight must be [Cout, ",
           g.in_channels / g.groups, ", kh, kw] for x's ", g.in_channels, " channels and groups=",
           g.groups, ", got ", shape_str(weight_shape));
  g.out_h = (g.in_h + 2 * g.pad_h - (g.dilation_h * (g.kernel_h - 1) + 1)) / g.stride_h + 1;
  g.out_w = (g.in_w + 2 * g.pad_w - (g.dilation_w * (g.kernel_w - 1) + 1)) / g.stride_w + 1;
  PDCN_CHECK(g.out_h > 0 && g.out_w > 0, kOp, ": the output would be empty (", g.out_h, "x", g.out_w,
           ") for an input of ", g.in_h, "x", g.in_w, " and a ", g.kernel_h, "x", g.kernel_w,
           " kernel");
  PDCN_CHECK(g.in_plane() < (int64_t(1) << 31), kOp, ": H*W must be below 2^31, got ", g.in_h, "x",
           g.in_w);
  return g;
}

void check_offset_mask(const DeformConvGeometry& g, const std::vector<int64_t>& offset_shape,
                       const std::vector<int64_t>* mask_shape) {
  const std::vector<int64_t> want_offset = {g.batch, 2 * g.deformable_groups * g.kernel_size(),
                                            g.out_h, g.out_w};
  PDCN_CHECK(offset_shape == want_offset, kOp, ": offset must be ", shape_str(want_offset),
           " [N, 2*deformable_groups*kh*kw, Ho, Wo], got ", shape_str(offset_shape));
  if (mask_shape != nullptr) {
    const std::vector<int64_t> want_mask = {g.batch, g.deformable_groups * g.kernel_size(),
                                            g.out_h, g.out_w};
    PDCN_CHECK(*mask_shape == want_mask, kOp, ": mask must be ", shape_str(want_mask),
             " [N, deformable_groups*kh*kw, Ho, Wo], got ", shape_str(*mask_shape));
  }
}

// Images per chunk: as many as fit the workspace budget (columns plus the
// kernels' own per-image scratch), at least one.
int64_t bytes_per_image(const DeformConvGeometry& g, int64_t element_bytes, int64_t scratch_bytes) {
  return std::max<int64_t>(1, g.column_elements(1) * element_bytes + scratch_bytes);
}

// On one CPU thread the chunk is made smaller still, cache-sized: the fewest
// images whose columns outweigh the weight (each chunk's GEMMs read the whole
// weight once more). A chunk's columns are written by im2col, read by the
// GEMM and, in the backward, rewritten by the sweep while its column
// gradients are read; kept small they stay in cache between those passes.
// Measured one thread, forward+backward, whole-batch chunks -> these: dcn_r50
// res2 32x16x24x24 19.4 -> 14.6 ms (the offset branch's plain conv 13.5 ->
// 9.7), res3 10.6 -> 8.7, ResNet-50 conv3_x 81.5 -> 72.2; conv5_x (a 9.4 MB
// weight) keeps its whole batch. Several threads keep the workspace-sized
// chunks: their per-chunk fork/join measured far more than the cache saves
// (2 threads at res2: 17 ms whole-batch, 30-180 ms one image per chunk).
int64_t cache_chunk(const DeformConvGeometry& g, int64_t element_bytes) {
  const int64_t column_bytes = std::max<int64_t>(1, g.column_elements(1) * element_bytes);
  const int64_t weight_bytes = g.out_channels * (g.column_rows() / g.groups) * element_bytes;
  return std::max<int64_t>(1, (weight_bytes + column_bytes - 1) / column_bytes);
}

int64_t choose_chunk(const DeformConvGeometry& g, int64_t element_bytes, int64_t scratch_bytes,
                     int64_t workspace_bytes, bool on_cpu) {
  const int64_t per_image = bytes_per_image(g, element_bytes, scratch_bytes);
  int64_t fit = std::max<int64_t>(1, workspace_bytes / per_image);
  // float32's GEMM (oneDNN) gives each element the same sum at any chunk width, so
  // its results stay bitwise equal across thread counts; float64's (Paddle's matmul,
  // MKL) sum in the last bits differently with the width and with the thread count.
  if (on_cpu && pdcn::cpu_thread_count() == 1) fit = std::min(fit, cache_chunk(g, element_bytes));
  return std::max<int64_t>(1, std::min<int64_t>(g.batch, fit));
}

// Workspace buffers of a call, by role.
enum class Buffer { kColumns, kGathered, kGradColumns, kInput, kGradInput, kCount };

// CPU workspace kept across calls, one set per thread. Fresh multi-MiB
// allocations come back from the allocator as untouched pages, and faulting
// them in on every call cost as much as the im2col itself (measured: im2col
// 6.1 ms -> 3.0 ms at 4x256x14x14 once its buffer is reused). The buffers grow
// to the largest chunk seen, which the workspace limit bounds.
class HostScratch {
 public:
  void* get(Buffer role, size_t bytes) {
    Block& b = blocks_[static_cast<int>(role)];
    if (b.bytes < bytes) {
      b.data.reset(static_cast<unsigned char*>(std::aligned_alloc(64, round_up(bytes))));
      PDCN_CHECK(b.data != nullptr, "pdcn: out of memory for the column workspace");
      b.bytes = bytes;
    }
    return b.data.get();
  }
  static HostScratch& for_this_thread() {
    static thread_local HostScratch scratch;
    return scratch;
  }

 private:
  static size_t round_up(size_t bytes) { return (std::max<size_t>(bytes, 1) + 63) / 64 * 64; }
  struct Free {
    void operator()(unsigned char* p) const { std::free(p); }
  };
  struct Block {
    std::unique_ptr<unsigned char, Free> data;
    size_t bytes = 0;
  };
  Block blocks_[static_cast<int>(Buffer::kCount)];
};

// The kernels of one device and dtype behind one interface, so the chunk loop
// below is written once for CPU and CUDA.
class ConvKernels {
 public:
  virtual ~ConvKernels() = default;
  // Workspace the kernels need per image of a chunk, beyond the columns.
  // (backward: the pass that also scatters the input gradient.)
  virtual int64_t scratch_bytes_per_image(const DeformConvGeometry& g, bool backward) const = 0;
  // A 1-D workspace tensor of `elements` elements for `role`.
  virtual paddle::Tensor buffer(Buffer role, int64_t elements, paddle::DataType dtype,
                                const paddle::Place& place) {
    return paddle::empty({elements}, dtype, place);
  }
  // Whether the columns are pixel-major, [G, B*Ho*Wo, K*Cg] with the weight
  // as [C_out, K, Cg] (the CPU's channels-last path), instead of
  // [G, Cg*K, B*Ho*Wo] with the weight as stored.
  virtual bool pixel_major(const DeformConvGeometry& g) const { return false; }
  // Fixes the input, offsets and mask of images [n0, n0 + chunk) for the
  // calls that follow (the CPU's channels-last path copies the input here).
  virtual void prepare_chunk(const DeformConvGeometry& g, const void* x, const void* offset,
                             const void* mask, int64_t n0, int64_t chunk) = 0;
  virtual void im2col(const DeformConvGeometry& g, const void* x, void* columns, int64_t n0,
                      int64_t chunk) = 0;
  virtual void columns_to_output(const DeformConvGeometry& g, const void* result, void* out,
                                 int64_t n0, int64_t chunk) = 0;
  virtual void output_to_columns(const DeformConvGeometry& g, const void* grad_out,
                                 void* gathered, int64_t n0, int64_t chunk) = 0;
  // Weight gradient over chunks: acc[i] += src[i] in the accumulation type.
  // With a separate accumulator (half types on GPU: float32), the caller keeps
  // acc of n float32 and converts it once at the end.
  virtual void accumulate(void* acc, const void* src, int64_t n) = 0;
  virtual bool separate_weight_grad_accumulator() const { return false; }
  virtual void convert_from_acc(const void* acc, void* dst, int64_t n) {
    (void)acc, (void)dst, (void)n;
  }
  // Whether backward_columns also writes the chunk's columns (so that the
  // backward needs no im2col of its own).
  virtual bool backward_writes_columns(const DeformConvGeometry& g) const { return false; }
  // Offset/mask gradients and grad_x of a chunk from its column gradients
  // (and the columns themselves when backward_writes_columns).
  virtual void backward_columns(const DeformConvGeometry& g, const void* grad_columns,
                                const void* x, void* columns, void* grad_x, void* grad_offset,
                                void* grad_mask, int64_t n0, int64_t chunk) = 0;
};

// The CPU kernels: the channels-last path of deform_conv_cpu_cl.h (pixel-major
// columns; the backward sweep also writes the columns). Measured faster than
// the plane-layout passes at every group width, one channel per group included
// (docs/benchmarks.md), so the plane layout serves the CUDA kernels only.
//
// plain: the op is a plain (integer-tap) convolution, pdcn_conv2d: no offsets,
// columns by copies (conv_cpu_cl.h), the weight gradient from an im2col.
template <typename T>
class CpuConvKernels final : public ConvKernels {
  static const T* c(const void* p) { return static_cast<const T*>(p); }
  static T* m(void* p) { return static_cast<T*>(p); }
  const bool plain_;
  const T* offset_ = nullptr;
  const T* mask_ = nullptr;
  const T* x_cl_ = nullptr;  // the chunk's channels-last input, in this thread's scratch

 public:
  explicit CpuConvKernels(bool plain = false) : plain_(plain) {}
  bool pixel_major(const DeformConvGeometry&) const override { return true; }
  int64_t scratch_bytes_per_image(const DeformConvGeometry& g, bool backward) const override {
    return (backward ? 2 : 1) * pdcn::cpu::channels_last_image_elements(g) *
           static_cast<int64_t>(sizeof(T));
  }
  paddle::Tensor buffer(Buffer role, int64_t elements, paddle::DataType dtype,
                        const paddle::Place& place) override {
    void* data = HostScratch::for_this_thread().get(role, elements * sizeof(T));
    return paddle::from_blob(data, {elements}, dtype, phi::DataLayout::NCHW, place);
  }
  void prepare_chunk(const DeformConvGeometry& g, const void* x, const void* offset,
                     const void* mask, int64_t n0, int64_t chunk) override {
    offset_ = c(offset);
    mask_ = c(mask);
    T* x_cl = static_cast<T*>(HostScratch::for_this_thread().get(
        Buffer::kInput, sizeof(T) * chunk * pdcn::cpu::channels_last_image_elements(g)));
    pdcn::cpu::to_channels_last(g, c(x), x_cl, n0, chunk);
    x_cl_ = x_cl;
  }
  void im2col(const DeformConvGeometry& g, const void*, void* columns, int64_t n0,
              int64_t chunk) override {
    if (plain_) return pdcn::cpu::conv_im2col_cl(g, x_cl_, m(columns), chunk);
    pdcn::cpu::deform_im2col_cl(g, offset_, mask_, x_cl_, m(columns), n0, chunk);
  }
  void columns_to_output(const DeformConvGeometry& g, const void* result, void* out, int64_t n0,
                         int64_t chunk) override {
    pdcn::cpu::deform_columns_to_output(g, c(result), m(out), n0, chunk);
  }
  void output_to_columns(const DeformConvGeometry& g, const void* grad_out, void* gathered,
                         int64_t n0, int64_t chunk) override {
    pdcn::cpu::deform_output_to_columns(g, c(grad_out), m(gathered), n0, chunk);
  }
  void accumulate(void* dst, const void* src, int64_t n) override {
    pdcn::cpu::accumulate(m(dst), c(src), n);
  }
  bool backward_writes_columns(const DeformConvGeometry&) const override { return !plain_; }
  void backward_columns(const DeformConvGeometry& g, const void* grad_columns, const void*,
                        void* columns, void* grad_x, void* grad_offset, void* grad_mask,
                        int64_t n0, int64_t chunk) override {
    T* grad_x_cl = static_cast<T*>(HostScratch::for_this_thread().get(
        Buffer::kGradInput, sizeof(T) * chunk * pdcn::cpu::channels_last_image_elements(g)));
    if (plain_) {
      pdcn::cpu::conv_col2im_cl(g, c(grad_columns), grad_x_cl, chunk);
    } else {
      pdcn::cpu::deform_backward_cl(g, offset_, mask_, x_cl_, c(grad_columns), m(columns),
                                    grad_x_cl, m(grad_offset), m(grad_mask), n0, chunk);
    }
    pdcn::cpu::from_channels_last(g, grad_x_cl, m(grad_x), n0, chunk);
  }
};

#if defined(PADDLE_WITH_CUDA)
// Every launch is checked: a CUDA error becomes a Python error naming the op,
// the step and the error (e.g. "no kernel image is available for execution
// on the device" when the library was not built for this GPU).
class CudaConvKernels final : public ConvKernels {
 public:
  CudaConvKernels(pdcn::cuda::DType dtype, void* stream, bool deterministic, const paddle::Place& place)
      : dtype_(dtype), stream_(stream), deterministic_(deterministic), place_(place) {}
  int64_t scratch_bytes_per_image(const DeformConvGeometry& g, bool backward) const override {
    return backward ? pdcn::cuda::col2im_scratch_bytes(dtype_, g, 1, deterministic_) : 0;
  }
  void prepare_chunk(const DeformConvGeometry&, const void*, const void* offset, const void* mask,
                     int64_t, int64_t) override {
    offset_ = offset;  // the CUDA kernels compute each stencil where they use it
    mask_ = mask;
  }
  void im2col(const DeformConvGeometry& g, const void* x, void* columns, int64_t n0,
              int64_t chunk) override {
    check(pdcn::cuda::deform_im2col(dtype_, g, x, offset_, mask_, columns, n0, chunk, stream_),
          "im2col");
  }
  void backward_columns(const DeformConvGeometry& g, const void* grad_columns, const void* x,
                        void*, void* grad_x, void* grad_offset, void* grad_mask, int64_t n0,
                        int64_t chunk) override {
    coord_grad(g, grad_columns, x, grad_offset, grad_mask, n0, chunk);
    col2im(g, grad_columns, grad_x, n0, chunk);
  }
  void col2im(const DeformConvGeometry& g, const void* grad_columns, void* grad_x, int64_t n0,
              int64_t chunk) {
    const int64_t bytes = pdcn::cuda::col2im_scratch_bytes(dtype_, g, chunk, deterministic_);
    check(pdcn::cuda::deform_col2im(dtype_, g, grad_columns, offset_, mask_, grad_x,
                                    scratch(bytes), n0, chunk, deterministic_, stream_),
          deterministic_ ? "col2im (deterministic)" : "col2im");
  }
  void coord_grad(const DeformConvGeometry& g, const void* grad_columns, const void* x,
                  void* grad_offset, void* grad_mask, int64_t n0, int64_t chunk) {
    check(pdcn::cuda::deform_coord_grad(dtype_, g, grad_columns, x, offset_, mask_, grad_offset,
                                        grad_mask, n0, chunk, stream_),
          "offset/mask gradient");
  }
  void columns_to_output(const DeformConvGeometry& g, const void* result, void* out, int64_t n0,
                         int64_t chunk) override {
    check(pdcn::cuda::deform_columns_to_output(dtype_, g, result, out, n0, chunk, stream_),
          "columns to output");
  }
  void output_to_columns(const DeformConvGeometry& g, const void* grad_out, void* gathered,
                         int64_t n0, int64_t chunk) override {
    check(pdcn::cuda::deform_output_to_columns(dtype_, g, grad_out, gathered, n0, chunk, stream_),
          "output to columns");
  }
  void accumulate(void* acc, const void* src, int64_t n) override {
    check(pdcn::cuda::accumulate(dtype_, acc, src, n, stream_), "weight gradient accumulation");
  }
  bool separate_weight_grad_accumulator() const override {
    return dtype_ == pdcn::cuda::DType::kFloat16 || dtype_ == pdcn::cuda::DType::kBFloat16;
  }
  void convert_from_acc(const void* acc, void* dst, int64_t n) override {
    check(pdcn::cuda::convert_from_acc(dtype_, acc, dst, n, stream_), "weight gradient rounding");
  }

 private:
  static void check(int status, const char* step) { pdcn::check_cuda(status, kOp, step); }
  // Scratch of col2im, kept for the call's chunks (the workspace budget
  // counts it through scratch_bytes_per_image).
  void* scratch(int64_t bytes) {
    if (bytes <= 0) return nullptr;
    if (scratch_bytes_ < bytes) {
      scratch_ = paddle::empty({(bytes + 3) / 4}, paddle::DataType::FLOAT32, place_);
      scratch_bytes_ = bytes;
    }
    return scratch_.data<float>();
  }
  pdcn::cuda::DType dtype_;
  void* stream_;
  bool deterministic_;
  paddle::Place place_;
  paddle::Tensor scratch_;
  int64_t scratch_bytes_ = 0;
  const void* offset_ = nullptr;
  const void* mask_ = nullptr;
};
#endif

// plain: pdcn_conv2d's kernels (CPU only).
std::unique_ptr<ConvKernels> make_kernels(const paddle::Tensor& x, bool deterministic,
                                          bool plain) {
  if (x.is_cpu()) {
    switch (x.dtype()) {
      case paddle::DataType::FLOAT32: return std::make_unique<CpuConvKernels<float>>(plain);
      case paddle::DataType::FLOAT64: return std::make_unique<CpuConvKernels<double>>(plain);
      default: PDCN_RAISE(InvalidArgument, kOp, ": CPU supports float32 and float64, got ", pdcn::dtype_name(x.dtype()));
    }
  }
  PDCN_CHECK(!plain, kConv, ": CPU only (on GPU paddle_dcn uses Paddle's conv2d), got x on ",
           x.place().DebugString());
#if defined(PADDLE_WITH_CUDA)
  if (x.is_gpu()) {
    return std::make_unique<CudaConvKernels>(pdcn::cuda_dtype(x.dtype(), kOp),
                                             pdcn::stream_of(x), deterministic, x.place());
  }
#endif
  (void)deterministic;
  PDCN_RAISE(InvalidArgument, "pdcn deform_conv2d: unsupported place (built without CUDA?)");
}

int64_t element_bytes(paddle::DataType dtype) { return static_cast<int64_t>(phi::SizeOf(dtype)); }

const void* optional_data(const paddle::Tensor* t) { return t ? t->data() : nullptr; }

// A [rows, cols] view of the first rows*cols elements of `buffer`.
paddle::Tensor view(const paddle::Tensor& buffer, std::vector<int64_t> shape) {
  return paddle::from_blob(const_cast<void*>(buffer.data()), shape, buffer.dtype(),
                           phi::DataLayout::NCHW, buffer.place());
}

// Per group g: out[g] = op(a[g]) @ op(b[g]), plus out[g] when `accumulate`.
// a, b and out are [G, rows, cols]; out supplies the storage. Returns the
// tensor that holds the result (out, or what Paddle's matmul returned).
paddle::Tensor grouped_matmul(const paddle::Tensor& a, bool trans_a, const paddle::Tensor& b,
                              bool trans_b, paddle::Tensor out, bool accumulate,
                              ConvKernels& kernels) {
  const char* error = nullptr;
  const pdcn::HostGemmBackend backend = pdcn::host_gemm_backend(&error);
  PDCN_CHECK(error == nullptr, "pdcn deform_conv2d: ", error);
  const bool onednn = a.is_cpu() && a.dtype() == paddle::DataType::FLOAT32 &&
                      backend == pdcn::HostGemmBackend::kOneDnn;
  if (onednn) {
    const std::vector<int64_t> as = a.shape(), bs = b.shape(), cs = out.shape();
    const int64_t M = cs[1], N = cs[2], K = trans_a ? as[1] : as[2];
    const bool ok = pdcn::onednn_sgemm_batched(
        trans_a, trans_b, cs[0], M, N, K, a.data<float>(), as[2], as[1] * as[2], b.data<float>(),
        bs[2], bs[1] * bs[2], accumulate ? 1.0f : 0.0f, out.data<float>(), N, M * N);
    PDCN_CHECK(ok, "pdcn deform_conv2d: oneDNN sgemm failed");
    return out;
  }
  if (!accumulate) return paddle::experimental::matmul(a, b, trans_a, trans_b, &out);
  paddle::Tensor product = paddle::experimental::matmul(a, b, trans_a, trans_b);
  kernels.accumulate(out.data(), product.data(), product.numel());
  return out;
}

// The weight as the GEMMs use it, [G, C_out/G, rows per group]: as stored
// ([C_out, Cg, kh, kw], rows c*K + k), or, with pixel-major columns, permuted
// to [C_out, kh*kw, Cg] (rows k*Cg + c).
paddle::Tensor gemm_weight(const paddle::Tensor& weight, const DeformConvGeometry& g,
                           bool pixel_major) {
  const int64_t G = g.groups, K = g.kernel_size(), Cg = g.in_channels / G;
  if (!pixel_major) return paddle::experimental::reshape(weight, {G, g.out_channels / G, Cg * K});
  const paddle::Tensor permuted = paddle::experimental::transpose(
      paddle::experimental::reshape(weight, {g.out_channels, Cg, K}), {0, 2, 1});
  return paddle::experimental::reshape(permuted, {G, g.out_channels / G, K * Cg});
}

// The weight gradient in the weight's layout from its GEMM layout (the
// inverse of gemm_weight), contiguous: the pixel-major permutation is a strided
// view, and Paddle's DataParallel reducer does not all-reduce a gradient that
// is not contiguous (each process kept its own weight gradient, 2026-12-06).
paddle::Tensor weight_from_gemm(const paddle::Tensor& grad_w3, const DeformConvGeometry& g,
                                const std::vector<int64_t>& weight_shape, bool pixel_major) {
  if (!pixel_major) return paddle::experimental::reshape(grad_w3, weight_shape);
  const int64_t K = g.kernel_size(), Cg = g.in_channels / g.groups;
  const paddle::Tensor permuted = paddle::experimental::transpose(
      paddle::experimental::reshape(grad_w3, {g.out_channels, K, Cg}), {0, 2, 1});
  return paddle::experimental::reshape(permuted, weight_shape).contiguous();
}

// The op's inputs in the plain layout (see plain_layout.h); mask may be absent.
struct PlainInputs {
  paddle::Tensor x, offset, mask, weight;
  PlainInputs(const paddle::Tensor& x_in, const paddle::Tensor* offset_in,
              const paddle::Tensor* mask_in, const paddle::Tensor& weight_in)
      : x(pdcn::plain_layout(x_in)),
        offset(offset_in ? pdcn::plain_layout(*offset_in) : paddle::Tensor()),
        mask(mask_in ? pdcn::plain_layout(*mask_in) : paddle::Tensor()),
        weight(pdcn::plain_layout(weight_in)) {}
};

// The packed form of pdcn_deform_conv2d_packed: offsets and mask logits in one
// [N, 3*dg*K, Ho, Wo] tensor (DeformConv2D's offset branch output, offsets in
// channels [0, 2*dg*K), logits after), the mask mask_scale * sigmoid(logit).
struct Packing {
  bool packed = false;
  double mask_scale = 0;
};

// Checks a packed offset/mask tensor's shape and sets the geometry's offset
// stride to read its offsets in place.
void apply_packing(DeformConvGeometry* g, const std::vector<int64_t>& packed_shape,
                   const Packing& packing) {
  const int64_t points = g->deformable_groups * g->kernel_size();
  const std::vector<int64_t> want = {g->batch, 3 * points, g->out_h, g->out_w};
  PDCN_CHECK(packed_shape == want, kOp, ": offset_mask must be ", shape_str(want),
           " [N, 3*deformable_groups*kh*kw, Ho, Wo], got ", shape_str(packed_shape));
  PDCN_CHECK(packing.mask_scale > 0, kOp, ": mask_scale must be positive, got ",
           packing.mask_scale);
  g->offset_image_stride = 3 * points * g->out_plane();
}

// Element offset of the mask logits (channel 2*dg*K of image 0) in a packed
// tensor, and the elements of one image's mask.
int64_t packed_logits_start(const DeformConvGeometry& g) {
  return 2 * g.deformable_groups * g.kernel_size() * g.out_plane();
}
int64_t mask_elements(const DeformConvGeometry& g) {
  return g.deformable_groups * g.kernel_size() * g.out_plane();
}

// The mask [N, dg*K, Ho, Wo] = scale * sigmoid(the packed tensor's logits).
paddle::Tensor packed_mask(const paddle::Tensor& packed, const DeformConvGeometry& g,
                           double scale) {
  paddle::Tensor mask = paddle::empty({g.batch, g.deformable_groups * g.kernel_size(), g.out_h,
                                       g.out_w}, packed.dtype(), packed.place());
  if (packed.dtype() == paddle::DataType::FLOAT64) {
    pdcn::cpu::masks_from_packed_logits(packed.data<double>() + packed_logits_start(g),
                                        mask.data<double>(), g.batch, g.offset_stride(),
                                        mask_elements(g), scale);
  } else {
    pdcn::cpu::masks_from_packed_logits(packed.data<float>() + packed_logits_start(g),
                                        mask.data<float>(), g.batch, g.offset_stride(),
                                        mask_elements(g), static_cast<float>(scale));
  }
  return mask;
}

// The packed gradient's logit channels from the mask gradient and the mask.
void packed_logit_gradient(const paddle::Tensor& grad_mask, const paddle::Tensor& mask,
                           paddle::Tensor* grad_packed, const DeformConvGeometry& g,
                           double scale) {
  if (grad_mask.dtype() == paddle::DataType::FLOAT64) {
    pdcn::cpu::packed_logit_grads(grad_mask.data<double>(), mask.data<double>(),
                                  grad_packed->data<double>() + packed_logits_start(g), g.batch,
                                  g.offset_stride(), mask_elements(g), scale);
  } else {
    pdcn::cpu::packed_logit_grads(grad_mask.data<float>(), mask.data<float>(),
                                  grad_packed->data<float>() + packed_logits_start(g), g.batch,
                                  g.offset_stride(), mask_elements(g), static_cast<float>(scale));
  }
}

// offset_in null: the plain convolution of pdcn_conv2d (CPU, no mask).
// packing.packed: offset_in is the packed offset/mask tensor, mask_in null.
std::vector<paddle::Tensor> forward(const paddle::Tensor& x_in, const paddle::Tensor* offset_in,
                                    const paddle::Tensor* mask_in,
                                    const paddle::Tensor& weight_in, const ConvAttrs& attrs,
                                    int64_t workspace_bytes, bool deterministic,
                                    const Packing& packing = Packing()) {
  const PlainInputs in(x_in, offset_in, mask_in, weight_in);
  const paddle::Tensor &x = in.x, &weight = in.weight;
  const paddle::Tensor* offset = offset_in ? &in.offset : nullptr;
  const paddle::Tensor* mask = mask_in ? &in.mask : nullptr;
  DeformConvGeometry g = make_geometry(x.shape(), weight.shape(), attrs);
  const std::vector<int64_t> mask_shape = mask ? mask->shape() : std::vector<int64_t>{};
  if (packing.packed) {
    apply_packing(&g, offset->shape(), packing);
  } else if (offset) {
    check_offset_mask(g, offset->shape(), mask ? &mask_shape : nullptr);
  }
  pdcn::check_same_place(kOp, {{"x", &x}, {"offset", offset}, {"mask", mask}, {"weight", &weight}});
  pdcn::check_same_dtype(kOp, {{"x", &x}, {"offset", offset}, {"mask", mask}, {"weight", &weight}});
#if defined(PADDLE_WITH_CUDA)
  const pdcn::DeviceScope device(x, kOp);
#endif
  const paddle::Tensor mask_values =
      packing.packed ? packed_mask(*offset, g, packing.mask_scale) : paddle::Tensor();
  const void* mask_data = packing.packed ? mask_values.data() : optional_data(mask);
  paddle::Tensor out = paddle::empty({g.batch, g.out_channels, g.out_h, g.out_w}, x.dtype(), x.place());
  if (g.batch == 0) return {out};
  auto kernels = make_kernels(x, deterministic, offset == nullptr);
  const int64_t chunk = choose_chunk(g, element_bytes(x.dtype()),
                                     kernels->scratch_bytes_per_image(g, false), workspace_bytes,
                                     x.is_cpu());
  const int64_t G = g.groups, rows_per_group = g.column_rows() / G, hw = g.out_plane();
  paddle::Tensor columns =
      kernels->buffer(Buffer::kColumns, g.column_elements(chunk), x.dtype(), x.place());
  paddle::Tensor results =
      kernels->buffer(Buffer::kGathered, g.out_channels * chunk * hw, x.dtype(), x.place());
  const bool pixel_major = kernels->pixel_major(g);
  const paddle::Tensor w3 = gemm_weight(weight, g, pixel_major);
  for (int64_t n0 = 0; n0 < g.batch; n0 += chunk) {
    const int64_t b = std::min(chunk, g.batch - n0);
    kernels->prepare_chunk(g, x.data(), optional_data(offset), mask_data, n0, b);
    kernels->im2col(g, x.data(), columns.data(), n0, b);
    paddle::Tensor result = view(results, {G, g.out_channels / G, b * hw});
    // result = w3 @ columns ([G, rows, b*hw], or its transpose when pixel-major)
    const paddle::Tensor cols = pixel_major ? view(columns, {G, b * hw, rows_per_group})
                                            : view(columns, {G, rows_per_group, b * hw});
    result = grouped_matmul(w3, false, cols, pixel_major, result, false, *kernels);
    kernels->columns_to_output(g, result.data(), out.data(), n0, b);
  }
  return {out};
}

// Returns {grad_x, grad_offset, grad_mask (if mask), grad_weight}; packed:
// {grad_x, grad_offset_mask, grad_weight}.
// offset_in null: the plain convolution of pdcn_conv2d (CPU, no mask).
std::vector<paddle::Tensor> backward(const paddle::Tensor& x_in, const paddle::Tensor* offset_in,
                                     const paddle::Tensor* mask_in,
                                     const paddle::Tensor& weight_in,
                                     const paddle::Tensor& grad_out_in, const ConvAttrs& attrs,
                                     int64_t workspace_bytes, bool deterministic,
                                     const Packing& packing = Packing()) {
  const PlainInputs in(x_in, offset_in, mask_in, weight_in);
  const paddle::Tensor &x = in.x, &weight = in.weight;
  const paddle::Tensor* offset = offset_in ? &in.offset : nullptr;
  const paddle::Tensor* mask = mask_in ? &in.mask : nullptr;
  const paddle::Tensor grad_out = pdcn::plain_layout(grad_out_in);
  DeformConvGeometry g = make_geometry(x.shape(), weight.shape(), attrs);
  const std::vector<int64_t> mask_shape = mask ? mask->shape() : std::vector<int64_t>{};
  if (packing.packed) {
    apply_packing(&g, offset->shape(), packing);
  } else if (offset) {
    check_offset_mask(g, offset->shape(), mask ? &mask_shape : nullptr);
  }
  pdcn::check_same_place(kOp, {{"x", &x}, {"offset", offset}, {"mask", mask},
                               {"weight", &weight}, {"grad_out", &grad_out}});
  pdcn::check_same_dtype(kOp, {{"x", &x}, {"offset", offset}, {"mask", mask},
                               {"weight", &weight}, {"grad_out", &grad_out}});
  const std::vector<int64_t> want_grad_out = {g.batch, g.out_channels, g.out_h, g.out_w};
  PDCN_CHECK(grad_out.shape() == want_grad_out, kOp, ": grad_out must be ", shape_str(want_grad_out),
           ", got ", shape_str(grad_out.shape()));
#if defined(PADDLE_WITH_CUDA)
  const pdcn::DeviceScope device(x, kOp);
#endif
  paddle::Tensor grad_x = paddle::empty(x.shape(), x.dtype(), x.place());
  paddle::Tensor grad_offset;
  if (offset) grad_offset = paddle::empty(offset->shape(), offset->dtype(), offset->place());
  paddle::Tensor grad_mask;
  if (mask) grad_mask = paddle::empty(mask->shape(), mask->dtype(), mask->place());
  // packed: the mask from the logits, and its gradient before the logits'
  const paddle::Tensor mask_values =
      packing.packed ? packed_mask(*offset, g, packing.mask_scale) : paddle::Tensor();
  if (packing.packed) grad_mask = paddle::empty(mask_values.shape(), x.dtype(), x.place());
  const void* mask_data = packing.packed ? mask_values.data() : optional_data(mask);
  void* grad_mask_data = grad_mask.initialized() ? grad_mask.data() : nullptr;
  const int64_t G = g.groups, rows_per_group = g.column_rows() / G, hw = g.out_plane();
  const int64_t out_per_group = g.out_channels / G;
  paddle::Tensor grad_w3;
  auto kernels = make_kernels(x, deterministic, offset == nullptr);
  const bool pixel_major = kernels->pixel_major(g);
  if (g.batch == 0) {
    grad_w3 = paddle::full({G, out_per_group, rows_per_group}, 0.0, x.dtype(), x.place());
  } else {
    grad_w3 = paddle::empty({G, out_per_group, rows_per_group}, x.dtype(), x.place());
    const int64_t chunk = choose_chunk(g, element_bytes(x.dtype()),
                                       kernels->scratch_bytes_per_image(g, true), workspace_bytes,
                                       x.is_cpu());
    paddle::Tensor columns =
        kernels->buffer(Buffer::kColumns, g.column_elements(chunk), x.dtype(), x.place());
    paddle::Tensor gathered =
        kernels->buffer(Buffer::kGathered, g.out_channels * chunk * hw, x.dtype(), x.place());
    paddle::Tensor grad_columns_buffer =
        kernels->buffer(Buffer::kGradColumns, g.column_elements(chunk), x.dtype(), x.place());
    const paddle::Tensor w3 = gemm_weight(weight, g, pixel_major);
    // float16/bfloat16 on GPU: the chunks' weight gradients are summed in
    // float32 and rounded once at the end, not summed in the half type.
    paddle::Tensor grad_w_acc;
    if (kernels->separate_weight_grad_accumulator()) {
      grad_w_acc = paddle::full({grad_w3.numel()}, 0.0, paddle::DataType::FLOAT32, x.place());
    }
    for (int64_t n0 = 0; n0 < g.batch; n0 += chunk) {
      const int64_t b = std::min(chunk, g.batch - n0);
      kernels->prepare_chunk(g, x.data(), optional_data(offset), mask_data, n0, b);
      // Kernels whose backward sweep writes the columns itself need no im2col
      // here; the weight gradient then follows the sweep.
      const bool sweep_writes_columns = kernels->backward_writes_columns(g);
      if (!sweep_writes_columns) kernels->im2col(g, x.data(), columns.data(), n0, b);
      kernels->output_to_columns(g, grad_out.data(), gathered.data(), n0, b);
      // Plane columns [G, rows, b*hw]: grad_w3 += gout @ cols^T, grad_cols = w3^T @ gout.
      // Pixel-major [G, b*hw, rows]: grad_w3 += gout @ cols, grad_cols = gout^T @ w3.
      const std::vector<int64_t> cols_shape =
          pixel_major ? std::vector<int64_t>{G, b * hw, rows_per_group}
                      : std::vector<int64_t>{G, rows_per_group, b * hw};
      const paddle::Tensor cols = view(columns, cols_shape);
      const paddle::Tensor gout = view(gathered, {G, out_per_group, b * hw});
      auto weight_gradient = [&]() {
        if (grad_w_acc.initialized()) {
          const paddle::Tensor product =
              paddle::experimental::matmul(gout, cols, false, !pixel_major);
          kernels->accumulate(grad_w_acc.data(), product.data(), product.numel());
        } else {
          grad_w3 = grouped_matmul(gout, false, cols, !pixel_major, grad_w3, n0 > 0, *kernels);
        }
      };
      if (!sweep_writes_columns) weight_gradient();
      const paddle::Tensor grad_columns =
          pixel_major ? grouped_matmul(gout, true, w3, false,
                                       view(grad_columns_buffer, cols_shape), false, *kernels)
                      : grouped_matmul(w3, true, gout, false,
                                       view(grad_columns_buffer, cols_shape), false, *kernels);
      kernels->backward_columns(g, grad_columns.data(), x.data(), columns.data(), grad_x.data(),
                                offset ? grad_offset.data() : nullptr, grad_mask_data, n0,
                                b);
      if (sweep_writes_columns) weight_gradient();
    }
    if (grad_w_acc.initialized()) {
      kernels->convert_from_acc(grad_w_acc.data(), grad_w3.data(), grad_w3.numel());
    }
  }
  paddle::Tensor grad_weight = weight_from_gemm(grad_w3, g, weight.shape(), pixel_major);
  if (packing.packed) {
    packed_logit_gradient(grad_mask, mask_values, &grad_offset, g, packing.mask_scale);
    return {grad_x, grad_offset, grad_weight};
  }
  if (!offset) return {grad_x, grad_weight};
  if (mask) return {grad_x, grad_offset, grad_mask, grad_weight};
  return {grad_x, grad_offset, grad_weight};
}

ConvAttrs attrs_of(const std::vector<int>& strides, const std::vector<int>& paddings,
                   const std::vector<int>& dilations, int groups, int deformable_groups) {
  return ConvAttrs{strides, paddings, dilations, groups, deformable_groups};
}

// ---- v1 ---------------------------------------------------------------------

std::vector<paddle::Tensor> DeformConvForward(const paddle::Tensor& x, const paddle::Tensor& offset,
                                              const paddle::Tensor& weight,
                                              const std::vector<int>& strides,
                                              const std::vector<int>& paddings,
                                              const std::vector<int>& dilations, int groups,
                                              int deformable_groups, int64_t workspace_bytes,
                                              bool deterministic) {
  return forward(x, &offset, nullptr, weight,
                 attrs_of(strides, paddings, dilations, groups, deformable_groups),
                 workspace_bytes, deterministic);
}

std::vector<paddle::Tensor> DeformConvBackward(
    const paddle::Tensor& x, const paddle::Tensor& offset, const paddle::Tensor& weight,
    const paddle::Tensor& grad_out, const std::vector<int>& strides,
    const std::vector<int>& paddings, const std::vector<int>& dilations, int groups,
    int deformable_groups, int64_t workspace_bytes, bool deterministic) {
  return backward(x, &offset, nullptr, weight, grad_out,
                  attrs_of(strides, paddings, dilations, groups, deformable_groups),
                  workspace_bytes, deterministic);
}

std::vector<std::vector<int64_t>> DeformConvInferShape(
    const std::vector<int64_t>& x_shape, const std::vector<int64_t>& offset_shape,
    const std::vector<int64_t>& weight_shape, const std::vector<int>& strides,
    const std::vector<int>& paddings, const std::vector<int>& dilations, int groups,
    int deformable_groups, int64_t, bool) {
  // Static graphs may carry -1 (unknown) dimensions: only compute what is known.
  return {{x_shape[0], weight_shape[0],
           pdcn::conv_out_size(x_shape[2], weight_shape[2], strides[0], paddings[0], dilations[0]),
           pdcn::conv_out_size(x_shape[3], weight_shape[3], strides[1], paddings[1], dilations[1])}};
}

std::vector<paddle::DataType> DeformConvInferDtype(const paddle::DataType& x_dtype,
                                                   const paddle::DataType&,
                                                   const paddle::DataType&) {
  return {x_dtype};
}

// ---- v2 (modulated) ---------------------------------------------------------

std::vector<paddle::Tensor> ModulatedDeformConvForward(
    const paddle::Tensor& x, const paddle::Tensor& offset, const paddle::Tensor& mask,
    const paddle::Tensor& weight, const std::vector<int>& strides,
    const std::vector<int>& paddings, const std::vector<int>& dilations, int groups,
    int deformable_groups, int64_t workspace_bytes, bool deterministic) {
  return forward(x, &offset, &mask, weight,
                 attrs_of(strides, paddings, dilations, groups, deformable_groups),
                 workspace_bytes, deterministic);
}

std::vector<paddle::Tensor> ModulatedDeformConvBackward(
    const paddle::Tensor& x, const paddle::Tensor& offset, const paddle::Tensor& mask,
    const paddle::Tensor& weight, const paddle::Tensor& grad_out,
    const std::vector<int>& strides, const std::vector<int>& paddings,
    const std::vector<int>& dilations, int groups, int deformable_groups,
    int64_t workspace_bytes, bool deterministic) {
  return backward(x, &offset, &mask, weight, grad_out,
                  attrs_of(strides, paddings, dilations, groups, deformable_groups),
                  workspace_bytes, deterministic);
}

std::vector<std::vector<int64_t>> ModulatedDeformConvInferShape(
    const std::vector<int64_t>& x_shape, const std::vector<int64_t>& offset_shape,
    const std::vector<int64_t>&, const std::vector<int64_t>& weight_shape,
    const std::vector<int>& strides, const std::vector<int>& paddings,
    const std::vector<int>& dilations, int groups, int deformable_groups,
    int64_t workspace_bytes, bool deterministic) {
  return DeformConvInferShape(x_shape, offset_shape, weight_shape, strides, paddings, dilations,
                              groups, deformable_groups, workspace_bytes, deterministic);
}

std::vector<paddle::DataType> ModulatedDeformConvInferDtype(const paddle::DataType& x_dtype,
                                                            const paddle::DataType&,
                                                            const paddle::DataType&,
                                                            const paddle::DataType&) {
  return {x_dtype};
}

// ---- v2 on the offset branch's packed output (CPU) -------------------------
// DeformConv2D's CPU dygraph path: the op reads the offset conv's output
// [N, 3*dg*K, Ho, Wo] in place (offsets, then mask logits) and applies
// mask_scale * sigmoid to the logits itself, so the layer needs no split, no
// sigmoid and no concat of gradients around the op. The kernels are the
// modulated op's, reading the offsets through the geometry's
// offset_image_stride (deform_conv.h); the mask and the logit gradient are a
// pass each here (mask_logits.h). CPU only: on GPU the layer keeps the
// separate tensors.

void check_packed_on_cpu(const paddle::Tensor& x) {
  PDCN_CHECK(x.is_cpu(), kOp, ": pdcn_deform_conv2d_packed runs on the CPU only (the layer "
                            "takes the separate offset and mask on GPU)");
}

std::vector<paddle::Tensor> PackedDeformConvForward(
    const paddle::Tensor& x, const paddle::Tensor& offset_mask, const paddle::Tensor& weight,
    const std::vector<int>& strides, const std::vector<int>& paddings,
    const std::vector<int>& dilations, int groups, int deformable_groups, float mask_scale,
    int64_t workspace_bytes, bool deterministic) {
  check_packed_on_cpu(x);
  return forward(x, &offset_mask, nullptr, weight,
                 attrs_of(strides, paddings, dilations, groups, deformable_groups),
                 workspace_bytes, deterministic, Packing{true, mask_scale});
}

std::vector<paddle::Tensor> PackedDeformConvBackward(
    const paddle::Tensor& x, const paddle::Tensor& offset_mask, const paddle::Tensor& weight,
    const paddle::Tensor& grad_out, const std::vector<int>& strides,
    const std::vector<int>& paddings, const std::vector<int>& dilations, int groups,
    int deformable_groups, float mask_scale, int64_t workspace_bytes, bool deterministic) {
  check_packed_on_cpu(x);
  return backward(x, &offset_mask, nullptr, weight, grad_out,
                  attrs_of(strides, paddings, dilations, groups, deformable_groups),
                  workspace_bytes, deterministic, Packing{true, mask_scale});
}

std::vector<std::vector<int64_t>> PackedDeformConvInferShape(
    const std::vector<int64_t>& x_shape, const std::vector<int64_t>& offset_mask_shape,
    const std::vector<int64_t>& weight_shape, const std::vector<int>& strides,
    const std::vector<int>& paddings, const std::vector<int>& dilations, int groups,
    int deformable_groups, float, int64_t workspace_bytes, bool deterministic) {
  return DeformConvInferShape(x_shape, offset_mask_shape, weight_shape, strides, paddings,
                              dilations, groups, deformable_groups, workspace_bytes,
                              deterministic);
}

// ---- plain convolution (CPU): the offset/mask branch of DeformConv2D --------

// dst[n, c] = src[n, c] + bias[c] over each [batch, channels, plane] plane
// (src may be dst).
template <typename T>
void add_bias(const T* src, T* dst, const T* bias, int64_t batch, int64_t channels,
              int64_t plane) {
  pdcn::cpu_parallel_for(batch * channels, [&](int64_t t) {
    const T* in = src + t * plane;
    T* out = dst + t * plane;
    const T b = bias[t % channels];
    for (int64_t p = 0; p < plane; ++p) out[p] = in[p] + b;
  });
}

// grad_bias[c] = the sum of grad_out[n, c] over n and the plane, in a fixed
// order: each plane in kLanes interleaved partial sums (element p goes to
// lane p % kLanes; independent chains, so the loop vectorises), the lanes
// added in order, then the images in order (acc_t throughout). The order
// depends on the shape only, never on the thread count.
template <typename T>
void bias_gradient(const T* grad_out, T* grad_bias, int64_t batch, int64_t channels,
                   int64_t plane) {
  using Acc = pdcn::acc_t<T>;
  constexpr int64_t kLanes = 16;
  pdcn::cpu_parallel_for(channels, [&](int64_t c) {
    Acc total = Acc(0);
    for (int64_t n = 0; n < batch; ++n) {
      const T* in = grad_out + (n * channels + c) * plane;
      Acc lanes[kLanes] = {};
      int64_t p = 0;
      for (; p + kLanes <= plane; p += kLanes) {
        for (int64_t l = 0; l < kLanes; ++l) lanes[l] += static_cast<Acc>(in[p + l]);
      }
      for (int64_t l = 0; p < plane; ++p, ++l) lanes[l] += static_cast<Acc>(in[p]);
      Acc sum = Acc(0);
      for (int64_t l = 0; l < kLanes; ++l) sum += lanes[l];
      total += sum;
    }
    grad_bias[c] = static_cast<T>(total);
  });
}

void check_bias(const paddle::Tensor& bias, const paddle::Tensor& x, int64_t out_channels) {
  PDCN_CHECK(bias.shape() == std::vector<int64_t>{out_channels}, kConv, ": bias must be [",
           out_channels, "] [C_out], got ", shape_str(bias.shape()));
  pdcn::check_same_dtype(kConv, {{"x", &x}, {"bias", &bias}});
  pdcn::check_same_place(kConv, {{"x", &x}, {"bias", &bias}});
}

std::vector<paddle::Tensor> ConvForward(const paddle::Tensor& x, const paddle::Tensor& weight,
                                        const paddle::Tensor& bias_in,
                                        const std::vector<int>& strides,
                                        const std::vector<int>& paddings,
                                        const std::vector<int>& dilations, int groups,
                                        int64_t workspace_bytes) {
  const ConvAttrs attrs = attrs_of(strides, paddings, dilations, groups, 1);
  const DeformConvGeometry g = make_geometry(x.shape(), weight.shape(), attrs);
  const paddle::Tensor bias = pdcn::plain_layout(bias_in);
  check_bias(bias, x, g.out_channels);
  std::vector<paddle::Tensor> out = forward(x, nullptr, nullptr, weight, attrs, workspace_bytes, false);
  if (x.dtype() == paddle::DataType::FLOAT64) {
    add_bias(out[0].data<double>(), out[0].data<double>(), bias.data<double>(), g.batch,
             g.out_channels, g.out_plane());
  } else {
    add_bias(out[0].data<float>(), out[0].data<float>(), bias.data<float>(), g.batch,
             g.out_channels, g.out_plane());
  }
  return out;
}

// Returns {grad_x, grad_weight, grad_bias}.
std::vector<paddle::Tensor> ConvBackward(const paddle::Tensor& x, const paddle::Tensor& weight,
                                         const paddle::Tensor& bias_in,
                                         const paddle::Tensor& grad_out_in,
                                         const std::vector<int>& strides,
                                         const std::vector<int>& paddings,
                                         const std::vector<int>& dilations, int groups,
                                         int64_t workspace_bytes) {
  const ConvAttrs attrs = attrs_of(strides, paddings, dilations, groups, 1);
  const DeformConvGeometry g = make_geometry(x.shape(), weight.shape(), attrs);
  const paddle::Tensor bias = pdcn::plain_layout(bias_in);
  const paddle::Tensor grad_out = pdcn::plain_layout(grad_out_in);
  check_bias(bias, x, g.out_channels);
  std::vector<paddle::Tensor> grads =
      backward(x, nullptr, nullptr, weight, grad_out, attrs, workspace_bytes, false);
  paddle::Tensor grad_bias = paddle::empty(bias.shape(), bias.dtype(), bias.place());
  if (x.dtype() == paddle::DataType::FLOAT64) {
    bias_gradient(grad_out.data<double>(), grad_bias.data<double>(), g.batch, g.out_channels,
                  g.out_plane());
  } else {
    bias_gradient(grad_out.data<float>(), grad_bias.data<float>(), g.batch, g.out_channels,
                  g.out_plane());
  }
  return {grads[0], grads[1], grad_bias};
}

std::vector<std::vector<int64_t>> ConvInferShape(const std::vector<int64_t>& x_shape,
                                                 const std::vector<int64_t>& weight_shape,
                                                 const std::vector<int64_t>&,
                                                 const std::vector<int>& strides,
                                                 const std::vector<int>& paddings,
                                                 const std::vector<int>& dilations, int groups,
                                                 int64_t workspace_bytes) {
  return DeformConvInferShape(x_shape, {}, weight_shape, strides, paddings, dilations, groups, 1,
                              workspace_bytes, false);
}

std::vector<paddle::DataType> ConvInferDtype(const paddle::DataType& x_dtype,
                                             const paddle::DataType&, const paddle::DataType&) {
  return {x_dtype};
}

// ---- channel bias (CPU): the deformable op's bias in CPU dygraph ------------

// out[n, c, ...] = x[n, c, ...] + bias[c] in one pass, and its backward
// (grad_x = grad_out, grad_bias = the sum over all but the channel axis),
// where Paddle's broadcast add took 1.8 ms forward and 4.1 ms forward+backward
// for a 32x16x24x24 output (one thread, measured 2026-12-04).
constexpr const char* kBias = "pdcn add_channel_bias";

struct ChannelPlanes {
  int64_t batch, channels, plane;
};

ChannelPlanes check_channel_bias(const paddle::Tensor& x, const paddle::Tensor& bias,
                                 const char* x_name) {
  PDCN_CHECK(x.is_cpu(), kBias, ": CPU only, got ", x_name, " on ", x.place().DebugString());
  PDCN_CHECK(x.dtype() == paddle::DataType::FLOAT32 || x.dtype() == paddle::DataType::FLOAT64,
           kBias, ": ", x_name, " must be float32 or float64");
  const std::vector<int64_t>& shape = x.shape();
  PDCN_CHECK(shape.size() >= 2, kBias, ": ", x_name, " must be [N, C, ...], got ", shape_str(shape));
  PDCN_CHECK(bias.shape() == std::vector<int64_t>{shape[1]}, kBias, ": bias must be [", shape[1],
           "] [C], got ", shape_str(bias.shape()));
  pdcn::check_same_dtype(kBias, {{x_name, &x}, {"bias", &bias}});
  pdcn::check_same_place(kBias, {{x_name, &x}, {"bias", &bias}});
  int64_t plane = 1;
  for (size_t i = 2; i < shape.size(); ++i) plane *= shape[i];
  return {shape[0], shape[1], plane};
}

std::vector<paddle::Tensor> ChannelBiasForward(const paddle::Tensor& x_in,
                                               const paddle::Tensor& bias_in) {
  const paddle::Tensor x = pdcn::plain_layout(x_in), bias = pdcn::plain_layout(bias_in);
  const ChannelPlanes s = check_channel_bias(x, bias, "x");
  paddle::Tensor out = paddle::empty(x.shape(), x.dtype(), x.place());
  if (x.dtype() == paddle::DataType::FLOAT64) {
    add_bias(x.data<double>(), out.data<double>(), bias.data<double>(), s.batch, s.channels,
             s.plane);
  } else {
    add_bias(x.data<float>(), out.data<float>(), bias.data<float>(), s.batch, s.channels,
             s.plane);
  }
  return {out};
}

// Returns {grad_x, grad_bias}.
std::vector<paddle::Tensor> ChannelBiasBackward(const paddle::Tensor& bias_in,
                                                const paddle::Tensor& grad_out_in) {
  const paddle::Tensor bias = pdcn::plain_layout(bias_in);
  const paddle::Tensor grad_out = pdcn::plain_layout(grad_out_in);
  const ChannelPlanes s = check_channel_bias(grad_out, bias, "grad_out");
  paddle::Tensor grad_x = paddle::empty(grad_out.shape(), grad_out.dtype(), grad_out.place());
  paddle::Tensor grad_bias = paddle::empty(bias.shape(), bias.dtype(), bias.place());
  if (grad_out.numel() > 0) {
    std::memcpy(grad_x.data(), grad_out.data(),
                static_cast<size_t>(grad_out.numel()) * element_bytes(grad_out.dtype()));
  }
  if (grad_out.dtype() == paddle::DataType::FLOAT64) {
    bias_gradient(grad_out.data<double>(), grad_bias.data<double>(), s.batch, s.channels,
                  s.plane);
  } else {
    bias_gradient(grad_out.data<float>(), grad_bias.data<float>(), s.batch, s.channels,
                  s.plane);
  }
  return {grad_x, grad_bias};
}

std::vector<std::vector<int64_t>> ChannelBiasInferShape(const std::vector<int64_t>& x_shape,
                                                        const std::vector<int64_t>&) {
  return {x_shape};
}

std::vector<paddle::DataType> ChannelBiasInferDtype(const paddle::DataType& x_dtype,
                                                    const paddle::DataType&) {
  return {x_dtype};
}

}  // namespace

// The workspace one image of a chunk takes, as choose_chunk counts it, for
// paddle_dcn.ops.workspace_bytes_per_image (called through ctypes, so that
// Python reports the library's own rule instead of a copy of it). Pixel
// counts stand for the planes (only their sizes matter); the CUDA figure
// leaves out the deterministic backward's scratch.
extern "C" int64_t pdcn_deform_conv_bytes_per_image(int64_t in_channels, int64_t in_pixels,
                                                    int64_t kernel_points, int64_t out_pixels,
                                                    int64_t groups, int64_t deformable_groups,
                                                    int64_t element_bytes, int on_cpu,
                                                    int backward) {
  DeformConvGeometry g{};
  g.batch = 1;
  g.in_channels = in_channels;
  g.in_h = in_pixels;
  g.in_w = 1;
  g.out_h = out_pixels;
  g.out_w = 1;
  g.kernel_h = kernel_points;
  g.kernel_w = 1;
  g.groups = groups;
  g.deformable_groups = deformable_groups;
  int64_t scratch = 0;
  if (on_cpu && element_bytes == 4) {
    scratch = CpuConvKernels<float>().scratch_bytes_per_image(g, backward != 0);
  } else if (on_cpu && element_bytes == 8) {
    scratch = CpuConvKernels<double>().scratch_bytes_per_image(g, backward != 0);
  }
  return bytes_per_image(g, element_bytes, scratch);
}

#define PDCN_CONV_ATTRS                                                              \
  {"strides: std::vector<int>", "paddings: std::vector<int>",                        \
   "dilations: std::vector<int>", "groups: int", "deformable_groups: int",           \
   "workspace_bytes: int64_t", "deterministic: bool"}

PD_BUILD_OP(pdcn_deform_conv2d)
    .Inputs({"X", "Offset", "Weight"})
    .Outputs({"Out"})
    .Attrs(PDCN_CONV_ATTRS)
    .SetKernelFn(PD_KERNEL(DeformConvForward))
    .SetInferShapeFn(PD_INFER_SHAPE(DeformConvInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(DeformConvInferDtype));

PD_BUILD_GRAD_OP(pdcn_deform_conv2d)
    .Inputs({"X", "Offset", "Weight", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Offset"), paddle::Grad("Weight")})
    .Attrs(PDCN_CONV_ATTRS)
    .SetKernelFn(PD_KERNEL(DeformConvBackward));

PDCN_NO_DOUBLE_GRAD_KERNEL(DeformConvNoDoubleGrad, "pdcn_deform_conv2d",
                           PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_O, PDCN_DG_O,
                           PDCN_DG_O)
PD_BUILD_DOUBLE_GRAD_OP(pdcn_deform_conv2d)
    .Inputs({"X", "Offset", "Weight", paddle::Grad("Out"),
             paddle::Optional(paddle::Grad(paddle::Grad("X"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Offset"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Weight")))})
    .Outputs({paddle::Grad("X"), paddle::Grad("Offset"), paddle::Grad("Weight"),
              paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(DeformConvNoDoubleGrad));

PD_BUILD_OP(pdcn_modulated_deform_conv2d)
    .Inputs({"X", "Offset", "Mask", "Weight"})
    .Outputs({"Out"})
    .Attrs(PDCN_CONV_ATTRS)
    .SetKernelFn(PD_KERNEL(ModulatedDeformConvForward))
    .SetInferShapeFn(PD_INFER_SHAPE(ModulatedDeformConvInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(ModulatedDeformConvInferDtype));

PD_BUILD_GRAD_OP(pdcn_modulated_deform_conv2d)
    .Inputs({"X", "Offset", "Mask", "Weight", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Offset"), paddle::Grad("Mask"),
              paddle::Grad("Weight")})
    .Attrs(PDCN_CONV_ATTRS)
    .SetKernelFn(PD_KERNEL(ModulatedDeformConvBackward));

PDCN_NO_DOUBLE_GRAD_KERNEL(ModulatedNoDoubleGrad, "pdcn_modulated_deform_conv2d",
                           PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_O,
                           PDCN_DG_O, PDCN_DG_O, PDCN_DG_O)
PD_BUILD_DOUBLE_GRAD_OP(pdcn_modulated_deform_conv2d)
    .Inputs({"X", "Offset", "Mask", "Weight", paddle::Grad("Out"),
             paddle::Optional(paddle::Grad(paddle::Grad("X"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Offset"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Mask"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Weight")))})
    .Outputs({paddle::Grad("X"), paddle::Grad("Offset"), paddle::Grad("Mask"),
              paddle::Grad("Weight"), paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(ModulatedNoDoubleGrad));

// v2 reading DeformConv2D's packed offset/mask logits (CPU dygraph).
#define PDCN_PACKED_CONV_ATTRS                                                       \
  {"strides: std::vector<int>", "paddings: std::vector<int>",                        \
   "dilations: std::vector<int>", "groups: int", "deformable_groups: int",           \
   "mask_scale: float", "workspace_bytes: int64_t", "deterministic: bool"}

PD_BUILD_OP(pdcn_deform_conv2d_packed)
    .Inputs({"X", "OffsetMask", "Weight"})
    .Outputs({"Out"})
    .Attrs(PDCN_PACKED_CONV_ATTRS)
    .SetKernelFn(PD_KERNEL(PackedDeformConvForward))
    .SetInferShapeFn(PD_INFER_SHAPE(PackedDeformConvInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(DeformConvInferDtype));

PD_BUILD_GRAD_OP(pdcn_deform_conv2d_packed)
    .Inputs({"X", "OffsetMask", "Weight", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("OffsetMask"), paddle::Grad("Weight")})
    .Attrs(PDCN_PACKED_CONV_ATTRS)
    .SetKernelFn(PD_KERNEL(PackedDeformConvBackward));

PDCN_NO_DOUBLE_GRAD_KERNEL(PackedNoDoubleGrad, "pdcn_deform_conv2d_packed",
                           PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_O, PDCN_DG_O,
                           PDCN_DG_O)
PD_BUILD_DOUBLE_GRAD_OP(pdcn_deform_conv2d_packed)
    .Inputs({"X", "OffsetMask", "Weight", paddle::Grad("Out"),
             paddle::Optional(paddle::Grad(paddle::Grad("X"))),
             paddle::Optional(paddle::Grad(paddle::Grad("OffsetMask"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Weight")))})
    .Outputs({paddle::Grad("X"), paddle::Grad("OffsetMask"), paddle::Grad("Weight"),
              paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(PackedNoDoubleGrad));

#define PDCN_PLAIN_CONV_ATTRS                                                        \
  {"strides: std::vector<int>", "paddings: std::vector<int>",                        \
   "dilations: std::vector<int>", "groups: int", "workspace_bytes: int64_t"}

// A plain convolution with bias on the CPU's channels-last path (CPU only; see
// conv_cpu_cl.h): DeformConv2D's offset/mask branch in dygraph on the CPU.
PD_BUILD_OP(pdcn_conv2d)
    .Inputs({"X", "Weight", "Bias"})
    .Outputs({"Out"})
    .Attrs(PDCN_PLAIN_CONV_ATTRS)
    .SetKernelFn(PD_KERNEL(ConvForward))
    .SetInferShapeFn(PD_INFER_SHAPE(ConvInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(ConvInferDtype));

PD_BUILD_GRAD_OP(pdcn_conv2d)
    .Inputs({"X", "Weight", "Bias", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Weight"), paddle::Grad("Bias")})
    .Attrs(PDCN_PLAIN_CONV_ATTRS)
    .SetKernelFn(PD_KERNEL(ConvBackward));

PDCN_NO_DOUBLE_GRAD_KERNEL(ConvNoDoubleGrad, "pdcn_conv2d",
                           PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_O, PDCN_DG_O,
                           PDCN_DG_O)
PD_BUILD_DOUBLE_GRAD_OP(pdcn_conv2d)
    .Inputs({"X", "Weight", "Bias", paddle::Grad("Out"),
             paddle::Optional(paddle::Grad(paddle::Grad("X"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Weight"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Bias")))})
    .Outputs({paddle::Grad("X"), paddle::Grad("Weight"), paddle::Grad("Bias"),
              paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(ConvNoDoubleGrad));

// x + bias[c] over [N, C, ...] on the CPU (paddle_dcn.ops.channel_bias): the
// deformable op's bias in CPU dygraph.
PD_BUILD_OP(pdcn_add_channel_bias)
    .Inputs({"X", "Bias"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(ChannelBiasForward))
    .SetInferShapeFn(PD_INFER_SHAPE(ChannelBiasInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(ChannelBiasInferDtype));

PD_BUILD_GRAD_OP(pdcn_add_channel_bias)
    .Inputs({"Bias", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Bias")})
    .SetKernelFn(PD_KERNEL(ChannelBiasBackward));

PDCN_NO_DOUBLE_GRAD_KERNEL(ChannelBiasNoDoubleGrad, "pdcn_add_channel_bias",
                           PDCN_DG_T, PDCN_DG_T, PDCN_DG_O, PDCN_DG_O)
PD_BUILD_DOUBLE_GRAD_OP(pdcn_add_channel_bias)
    .Inputs({"Bias", paddle::Grad("Out"), paddle::Optional(paddle::Grad(paddle::Grad("X"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Bias")))})
    .Outputs({paddle::Grad("Bias"), paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(ChannelBiasNoDoubleGrad));
