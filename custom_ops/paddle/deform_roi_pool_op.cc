// Paddle binding of deformable RoI pooling:
//   pdcn_deform_roi_pool / pdcn_deform_roi_pool_plain        RoIAlign-based (with / without offset)
//   pdcn_deform_psroi_pool / pdcn_deform_psroi_pool_plain    position-sensitive (with / without offset)
// The "_plain" ops exist because an optional input cannot receive a gradient:
// without an offset there is nothing to pass and no offset gradient to compute.
//
// The Python wrapper (paddle_dcn/ops/deform_roi_pool.py) validates user input
// with readable errors; the checks here are the second line of defence.
// Boxes and boxes_num get no gradient.
#include <cstdint>
#include <limits>
#include <vector>

#include "paddle/extension.h"
#include "op_common.h"
#include "plain_layout.h"

#include "../kernels/deform_psroi_pool_cpu.h"
#include "../kernels/deform_roi_pool_cpu.h"
#if defined(PADDLE_WITH_CUDA)
#include "../kernels/deform_roi_pool_cuda.h"
#endif

namespace {

using pdcn::DeformPSRoiPoolGeometry;
using pdcn::DeformRoiPoolGeometry;
using pdcn::shape_str;

// ---- shared: boxes, boxes_num, dtypes ----------------------------------------

paddle::DataType acc_dtype(paddle::DataType dtype) {
  return dtype == paddle::DataType::FLOAT64 ? paddle::DataType::FLOAT64
                                            : paddle::DataType::FLOAT32;
}

void check_dtype(const paddle::Tensor& x, const char* op) {
  const auto d = x.dtype();
  if (x.is_cpu()) {
    PDCN_CHECK(d == paddle::DataType::FLOAT32 || d == paddle::DataType::FLOAT64, op,
             ": CPU supports float32 and float64, got ", pdcn::dtype_name(d));
  } else {
    PDCN_CHECK(d == paddle::DataType::FLOAT32 || d == paddle::DataType::FLOAT64 ||
                 d == paddle::DataType::FLOAT16 || d == paddle::DataType::BFLOAT16,
             op, ": GPU supports float32, float64, float16 and bfloat16, got ", pdcn::dtype_name(d));
  }
}

// Boxes and boxes_num must be in host memory or on x's device. From another GPU
// the asynchronous copy to x's device would not wait for that device's streams
// (the kernel could read boxes not yet written there), so it is refused.
void check_box_place(const paddle::Tensor& t, const char* name, const paddle::Tensor& x,
                     const char* op) {
  PDCN_CHECK(t.is_cpu() || t.place() == x.place(), op, ": ", name,
             " must be in host memory or on x's device, got ", name, " on ", t.place().DebugString(),
             " and x on ", x.place().DebugString());
}

// Boxes in the accumulation type, contiguous, on x's device.
paddle::Tensor boxes_in_acc_type(const paddle::Tensor& boxes, const paddle::Tensor& x, const char* op) {
  check_box_place(boxes, "boxes", x, op);
  const paddle::DataType want = acc_dtype(x.dtype());
  paddle::Tensor b = boxes.dtype() == want ? boxes : paddle::experimental::cast(boxes, want);
  if (b.place() != x.place()) b = b.copy_to(x.place(), /*blocking=*/false);
  return b;
}

// The image index of every box, int32 on x's device, from boxes_num [N].
// On GPU it is computed on the device from boxes_num without a host sync
// (boxes that boxes_num does not cover pool to zero); on CPU boxes_num is
// checked against the number of boxes.
paddle::Tensor roi_batch_index(const paddle::Tensor& boxes_num, int64_t batch, int64_t num_rois,
                               const paddle::Tensor& x, const char* op) {
  PDCN_CHECK(boxes_num.numel() == batch, op, ": boxes_num must have one entry per image (",
           batch, "), got ", boxes_num.numel());
  check_box_place(boxes_num, "boxes_num", x, op);
  PDCN_CHECK(boxes_num.dtype() == paddle::DataType::INT32 ||
               boxes_num.dtype() == paddle::DataType::INT64,
           op, ": boxes_num must be int32 or int64, got ", pdcn::dtype_name(boxes_num.dtype()));
#if defined(PADDLE_WITH_CUDA)
  if (x.is_gpu()) {
    paddle::Tensor index = paddle::empty({num_rois}, paddle::DataType::INT32, x.place());
    if (num_rois == 0) return index;
    const paddle::Tensor counts =
        boxes_num.place() == x.place() ? boxes_num : boxes_num.copy_to(x.place(), false);
    pdcn::check_cuda(pdcn::cuda::roi_batch_from_counts(
                         counts.data(), counts.dtype() == paddle::DataType::INT64, batch,
                         num_rois, index.data<int32_t>(), pdcn::stream_of(x)),
                     op, "box image indices");
    return index;
  }
#endif
  paddle::Tensor counts = boxes_num.is_cpu() ? boxes_num : boxes_num.copy_to(paddle::CPUPlace(), true);
  std::vector<int64_t> per_image(batch);
  for (int64_t n = 0; n < batch; ++n) {
    if (counts.dtype() == paddle::DataType::INT32) {
      per_image[n] = counts.data<int32_t>()[n];
    } else if (counts.dtype() == paddle::DataType::INT64) {
      per_image[n] = counts.data<int64_t>()[n];
    } else {
      PDCN_RAISE(InvalidArgument, op, ": boxes_num must be int32 or int64");
    }
    PDCN_CHECK(per_image[n] >= 0, op, ": boxes_num must be non-negative, got ", per_image[n],
             " for image ", n);
  }
  paddle::Tensor index =
      paddle::empty({num_rois}, paddle::DataType::INT32, paddle::CPUPlace());
  int32_t* idx = index.data<int32_t>();
  int64_t k = 0;
  for (int64_t n = 0; n < batch; ++n) {
    PDCN_CHECK(per_image[n] <= num_rois - k, op, ": boxes_num sums to more than the ", num_rois,
             " boxes (", k + per_image[n], " by image ", n, ")");
    for (int64_t t = 0; t < per_image[n]; ++t) idx[k++] = static_cast<int32_t>(n);
  }
  PDCN_CHECK(k == num_rois, op, ": boxes_num sums to ", k, " but there are ", num_rois, " boxes");
  return index;
}

void check_x_boxes(const paddle::Tensor& x, const paddle::Tensor& boxes, const char* op) {
  PDCN_CHECK(x.shape().size() == 4, op, ": x must be 4-D [N, C, H, W], got ", shape_str(x.shape()));
  PDCN_CHECK(boxes.shape().size() == 2 && boxes.shape()[1] == 4, op, ": boxes must be [K, 4], got ",
           shape_str(boxes.shape()));
  PDCN_CHECK(x.shape()[2] > 0 && x.shape()[3] > 0, op,
           ": x must have a non-empty feature map (H, W >= 1), got ", shape_str(x.shape()));
  PDCN_CHECK(x.shape()[2] * x.shape()[3] < std::numeric_limits<int32_t>::max(), op,
           ": feature map too large (H * W must fit in int32), got ", shape_str(x.shape()));
  PDCN_CHECK(boxes.shape()[0] < std::numeric_limits<int32_t>::max(), op,
           ": too many boxes (the count must fit in int32), got ", boxes.shape()[0]);
}

void check_grad_out(const paddle::Tensor& grad_out, const std::vector<int64_t>& want,
                    const char* op) {
  PDCN_CHECK(grad_out.shape() == want, op, ": grad_out must be ", shape_str(want), ", got ",
           shape_str(grad_out.shape()));
}

std::vector<int64_t> pair_of(const std::vector<int>& v, const char* what, const char* op) {
  PDCN_CHECK(v.size() == 2 && v[0] > 0 && v[1] > 0, op, ": ", what, " needs two positive values, got ",
           shape_str(v));
  return {v[0], v[1]};
}

#if defined(PADDLE_WITH_CUDA)
paddle::Tensor scratch_tensor(int64_t bytes, const paddle::Place& place) {
  if (bytes <= 0) return paddle::Tensor();
  return paddle::empty({(bytes + 3) / 4}, paddle::DataType::FLOAT32, place);
}

void* scratch_data(paddle::Tensor& t) { return t.initialized() ? t.data<float>() : nullptr; }
#endif

const void* data_or_null(const paddle::Tensor* t) { return t ? t->data() : nullptr; }

// ---- RoIAlign-based -----------------------------------------------------------

constexpr const char* kRoi = "pdcn deform_roi_pool";

DeformRoiPoolGeometry roi_geometry(const paddle::Tensor& x, const paddle::Tensor& boxes,
                                   const std::vector<int>& output_size, float spatial_scale,
                                   int sampling_ratio, float gamma, bool aligned) {
  check_x_boxes(x, boxes, kRoi);
  const auto pooled = pair_of(output_size, "output_size", kRoi);
  DeformRoiPoolGeometry g;
  g.batch = x.shape()[0];
  g.channels = x.shape()[1];
  g.in_h = x.shape()[2];
  g.in_w = x.shape()[3];
  g.num_rois = boxes.shape()[0];
  g.pooled_h = pooled[0];
  g.pooled_w = pooled[1];
  g.sampling_ratio = sampling_ratio;
  g.max_grid = pdcn::default_max_grid(g.in_h, g.in_w);
  // A fixed grid obeys the adaptive grid's cap: the CPU keeps a box's samples
  // (bins * grid^2 stencils) in memory, and the time grows with them.
  PDCN_CHECK(sampling_ratio <= g.max_grid, kRoi, ": sampling_ratio must be at most ", g.max_grid,
           " (max(64, 2 * max(H, W) + 2)) for this feature map, got ", sampling_ratio);
  g.spatial_scale = spatial_scale;
  g.gamma = gamma;
  g.aligned = aligned;
  return g;
}

void check_roi_offset(const DeformRoiPoolGeometry& g, const paddle::Tensor* offset) {
  if (offset == nullptr) return;
  const std::vector<int64_t> want = {g.num_rois, 2, g.pooled_h, g.pooled_w};
  PDCN_CHECK(offset->shape() == want, kRoi, ": offset must be ", shape_str(want),
           " [K, 2, PH, PW], got ", shape_str(offset->shape()));
}

std::vector<paddle::Tensor> roi_forward(const paddle::Tensor& x_in, const paddle::Tensor& boxes,
                                        const paddle::Tensor& boxes_num,
                                        const paddle::Tensor* offset_in,
                                        const std::vector<int>& output_size, float spatial_scale,
                                        int sampling_ratio, float gamma, bool aligned) {
  const paddle::Tensor x = pdcn::plain_layout(x_in);
  paddle::Tensor offset_storage;
  const paddle::Tensor* offset = pdcn::plain_layout(offset_in, &offset_storage);
  check_dtype(x, kRoi);
  pdcn::check_same_place(kRoi, {{"x", &x}, {"offset", offset}});
  pdcn::check_same_dtype(kRoi, {{"x", &x}, {"offset", offset}});
#if defined(PADDLE_WITH_CUDA)
  const pdcn::DeviceScope device(x, kRoi);
#endif
  const DeformRoiPoolGeometry g =
      roi_geometry(x, boxes, output_size, spatial_scale, sampling_ratio, gamma, aligned);
  check_roi_offset(g, offset);
  paddle::Tensor out =
      paddle::empty({g.num_rois, g.channels, g.pooled_h, g.pooled_w}, x.dtype(), x.place());
  const paddle::Tensor roi_batch = roi_batch_index(boxes_num, g.batch, g.num_rois, x, kRoi);
  if (g.out_elements() == 0) return {out};
  const paddle::Tensor b = boxes_in_acc_type(boxes, x, kRoi);
  if (x.is_cpu()) {
    if (x.dtype() == paddle::DataType::FLOAT64) {
      pdcn::cpu::deform_roi_pool_forward<double>(
          g, x.data<double>(), b.data<double>(), roi_batch.data<int32_t>(),
          offset ? offset->data<double>() : nullptr, out.data<double>());
    } else {
      pdcn::cpu::deform_roi_pool_forward<float>(
          g, x.data<float>(), b.data<float>(), roi_batch.data<int32_t>(),
          offset ? offset->data<float>() : nullptr, out.data<float>());
    }
    return {out};
  }
#if defined(PADDLE_WITH_CUDA)
  pdcn::check_cuda(
      pdcn::cuda::deform_roi_pool_forward(pdcn::cuda_dtype(x.dtype(), kRoi), g, x.data(), b.data(),
                                          roi_batch.data<int32_t>(), data_or_null(offset),
                                          out.data(), pdcn::stream_of(x)),
      kRoi, "forward");
  return {out};
#else
  PDCN_RAISE(InvalidArgument, kRoi, ": unsupported place (built without CUDA?)");
#endif
}

// Returns {grad_x, grad_offset (if offset)}.
std::vector<paddle::Tensor> roi_backward(const paddle::Tensor& x_in, const paddle::Tensor& boxes,
                                         const paddle::Tensor& boxes_num,
                                         const paddle::Tensor* offset_in,
                                         const paddle::Tensor& grad_out_in,
                                         const std::vector<int>& output_size,
                                         float spatial_scale, int sampling_ratio, float gamma,
                                         bool aligned, bool deterministic) {
  const paddle::Tensor x = pdcn::plain_layout(x_in);
  paddle::Tensor offset_storage;
  const paddle::Tensor* offset = pdcn::plain_layout(offset_in, &offset_storage);
  const paddle::Tensor grad_out = pdcn::plain_layout(grad_out_in);
  check_dtype(x, kRoi);
  pdcn::check_same_place(kRoi, {{"x", &x}, {"offset", offset}, {"grad_out", &grad_out}});
  pdcn::check_same_dtype(kRoi, {{"x", &x}, {"offset", offset}, {"grad_out", &grad_out}});
#if defined(PADDLE_WITH_CUDA)
  const pdcn::DeviceScope device(x, kRoi);
#endif
  const DeformRoiPoolGeometry g =
      roi_geometry(x, boxes, output_size, spatial_scale, sampling_ratio, gamma, aligned);
  check_roi_offset(g, offset);
  check_grad_out(grad_out, {g.num_rois, g.channels, g.pooled_h, g.pooled_w}, kRoi);
  paddle::Tensor grad_x = paddle::empty(x.shape(), x.dtype(), x.place());
  paddle::Tensor grad_offset;
  if (offset) grad_offset = paddle::empty(offset->shape(), offset->dtype(), offset->place());
  const paddle::Tensor roi_batch = roi_batch_index(boxes_num, g.batch, g.num_rois, x, kRoi);
  const paddle::Tensor b = boxes_in_acc_type(boxes, x, kRoi);
  if (x.is_cpu()) {
    auto run = [&](auto tag) {
      using T = decltype(tag);
      const T* off = offset ? offset->data<T>() : nullptr;
      pdcn::cpu::deform_roi_pool_backward_x<T>(g, grad_out.data<T>(), b.data<T>(),
                                               roi_batch.data<int32_t>(), off, grad_x.data<T>());
      if (offset) {
        pdcn::cpu::deform_roi_pool_backward_offset<T>(g, grad_out.data<T>(), x.data<T>(),
                                                      b.data<T>(), roi_batch.data<int32_t>(), off,
                                                      grad_offset.data<T>());
      }
    };
    if (x.dtype() == paddle::DataType::FLOAT64) {
      run(double{});
    } else {
      run(float{});
    }
  } else {
#if defined(PADDLE_WITH_CUDA)
    const auto dtype = pdcn::cuda_dtype(x.dtype(), kRoi);
    paddle::Tensor scratch =
        scratch_tensor(pdcn::cuda::deform_roi_pool_backward_scratch_bytes(dtype, g, deterministic),
                       x.place());
    pdcn::check_cuda(
        pdcn::cuda::deform_roi_pool_backward(dtype, g, grad_out.data(), x.data(), b.data(),
                                             roi_batch.data<int32_t>(), data_or_null(offset),
                                             grad_x.data(), offset ? grad_offset.data() : nullptr,
                                             scratch_data(scratch), deterministic,
                                             pdcn::stream_of(x)),
        kRoi, deterministic ? "backward (deterministic)" : "backward");
#else
    PDCN_RAISE(InvalidArgument, kRoi, ": unsupported place (built without CUDA?)");
#endif
  }
  if (offset) return {grad_x, grad_offset};
  return {grad_x};
}

std::vector<paddle::Tensor> RoiPoolForward(const paddle::Tensor& x, const paddle::Tensor& boxes,
                                           const paddle::Tensor& boxes_num,
                                           const paddle::Tensor& offset,
                                           const std::vector<int>& output_size,
                                           float spatial_scale, int sampling_ratio, float gamma,
                                           bool aligned, bool deterministic) {
  (void)deterministic;
  return roi_forward(x, boxes, boxes_num, &offset, output_size, spatial_scale, sampling_ratio,
                     gamma, aligned);
}

std::vector<paddle::Tensor> RoiPoolBackward(const paddle::Tensor& x, const paddle::Tensor& boxes,
                                            const paddle::Tensor& boxes_num,
                                            const paddle::Tensor& offset,
                                            const paddle::Tensor& grad_out,
                                            const std::vector<int>& output_size,
                                            float spatial_scale, int sampling_ratio, float gamma,
                                            bool aligned, bool deterministic) {
  return roi_backward(x, boxes, boxes_num, &offset, grad_out, output_size, spatial_scale,
                      sampling_ratio, gamma, aligned, deterministic);
}

std::vector<paddle::Tensor> RoiPoolPlainForward(const paddle::Tensor& x,
                                                const paddle::Tensor& boxes,
                                                const paddle::Tensor& boxes_num,
                                                const std::vector<int>& output_size,
                                                float spatial_scale, int sampling_ratio,
                                                float gamma, bool aligned, bool deterministic) {
  (void)deterministic;
  return roi_forward(x, boxes, boxes_num, nullptr, output_size, spatial_scale, sampling_ratio,
                     gamma, aligned);
}

std::vector<paddle::Tensor> RoiPoolPlainBackward(
    const paddle::Tensor& x, const paddle::Tensor& boxes, const paddle::Tensor& boxes_num,
    const paddle::Tensor& grad_out, const std::vector<int>& output_size, float spatial_scale,
    int sampling_ratio, float gamma, bool aligned, bool deterministic) {
  return roi_backward(x, boxes, boxes_num, nullptr, grad_out, output_size, spatial_scale,
                      sampling_ratio, gamma, aligned, deterministic);
}

// Static graphs may carry -1 (unknown) dimensions.
std::vector<std::vector<int64_t>> RoiPoolInferShape(const std::vector<int64_t>& x_shape,
                                                    const std::vector<int64_t>& boxes_shape,
                                                    const std::vector<int64_t>&,
                                                    const std::vector<int64_t>&,
                                                    const std::vector<int>& output_size, float,
                                                    int, float, bool, bool) {
  return {{boxes_shape[0], x_shape[1], output_size[0], output_size[1]}};
}

std::vector<std::vector<int64_t>> RoiPoolPlainInferShape(const std::vector<int64_t>& x_shape,
                                                         const std::vector<int64_t>& boxes_shape,
                                                         const std::vector<int64_t>&,
                                                         const std::vector<int>& output_size,
                                                         float, int, float, bool, bool) {
  return {{boxes_shape[0], x_shape[1], output_size[0], output_size[1]}};
}

std::vector<paddle::DataType> RoiPoolInferDtype(const paddle::DataType& x_dtype,
                                                const paddle::DataType&, const paddle::DataType&,
                                                const paddle::DataType&) {
  return {x_dtype};
}

std::vector<paddle::DataType> RoiPoolPlainInferDtype(const paddle::DataType& x_dtype,
                                                     const paddle::DataType&,
                                                     const paddle::DataType&) {
  return {x_dtype};
}

// ---- position-sensitive -------------------------------------------------------

constexpr const char* kPs = "pdcn deform_psroi_pool";

DeformPSRoiPoolGeometry ps_geometry(const paddle::Tensor& x, const paddle::Tensor& boxes,
                                    const paddle::Tensor* offset, int output_channels,
                                    const std::vector<int>& output_size,
                                    const std::vector<int>& part_size, float spatial_scale,
                                    int sample_per_part, float trans_std) {
  check_x_boxes(x, boxes, kPs);
  const auto pooled = pair_of(output_size, "output_size", kPs);
  const auto parts = pair_of(part_size, "part_size", kPs);
  PDCN_CHECK(output_channels > 0 && sample_per_part > 0, kPs,
           ": output_channels and sample_per_part must be positive, got ", output_channels, " and ",
           sample_per_part);
  DeformPSRoiPoolGeometry g;
  g.batch = x.shape()[0];
  g.in_channels = x.shape()[1];
  g.in_h = x.shape()[2];
  g.in_w = x.shape()[3];
  g.num_rois = boxes.shape()[0];
  g.out_channels = output_channels;
  g.pooled_h = pooled[0];
  g.pooled_w = pooled[1];
  g.part_h = parts[0];
  g.part_w = parts[1];
  g.sample_per_part = sample_per_part;
  PDCN_CHECK(sample_per_part <= pdcn::default_max_grid(g.in_h, g.in_w), kPs,
           ": sample_per_part must be at most ", pdcn::default_max_grid(g.in_h, g.in_w),
           " (max(64, 2 * max(H, W) + 2)) for this feature map, got ", sample_per_part);
  g.spatial_scale = spatial_scale;
  g.trans_std = trans_std;
  PDCN_CHECK(g.in_channels == g.out_channels * g.pooled_h * g.pooled_w, kPs,
           ": x must have output_channels * PH * PW = ", g.out_channels * g.pooled_h * g.pooled_w,
           " channels, got ", g.in_channels);
  g.offset_groups = 1;
  if (offset) {
    const auto& s = offset->shape();
    PDCN_CHECK(s.size() == 4 && s[0] == g.num_rois && s[1] > 0 && s[1] % 2 == 0 &&
                 s[2] == g.part_h && s[3] == g.part_w,
             kPs, ": offset must be [", g.num_rois, ", 2 * G, ", g.part_h, ", ", g.part_w,
             "] [K, 2 * G, PART_H, PART_W], got ", shape_str(s));
    g.offset_groups = s[1] / 2;
    PDCN_CHECK(g.out_channels % g.offset_groups == 0, kPs,
             ": output_channels (", g.out_channels, ") must divide by the offset groups (",
             g.offset_groups, ")");
  }
  return g;
}

std::vector<paddle::Tensor> ps_forward(const paddle::Tensor& x_in, const paddle::Tensor& boxes,
                                       const paddle::Tensor& boxes_num,
                                       const paddle::Tensor* offset_in, int output_channels,
                                       const std::vector<int>& output_size,
                                       const std::vector<int>& part_size, float spatial_scale,
                                       int sample_per_part, float trans_std) {
  const paddle::Tensor x = pdcn::plain_layout(x_in);
  paddle::Tensor offset_storage;
  const paddle::Tensor* offset = pdcn::plain_layout(offset_in, &offset_storage);
  check_dtype(x, kPs);
  pdcn::check_same_place(kPs, {{"x", &x}, {"offset", offset}});
  pdcn::check_same_dtype(kPs, {{"x", &x}, {"offset", offset}});
#if defined(PADDLE_WITH_CUDA)
  const pdcn::DeviceScope device(x, kPs);
#endif
  const DeformPSRoiPoolGeometry g = ps_geometry(x, boxes, offset, output_channels, output_size,
                                                part_size, spatial_scale, sample_per_part,
                                                trans_std);
  paddle::Tensor out =
      paddle::empty({g.num_rois, g.out_channels, g.pooled_h, g.pooled_w}, x.dtype(), x.place());
  const paddle::Tensor roi_batch = roi_batch_index(boxes_num, g.batch, g.num_rois, x, kPs);
  if (g.out_elements() == 0) return {out};
  const paddle::Tensor b = boxes_in_acc_type(boxes, x, kPs);
  if (x.is_cpu()) {
    if (x.dtype() == paddle::DataType::FLOAT64) {
      pdcn::cpu::deform_psroi_pool_forward<double>(
          g, x.data<double>(), b.data<double>(), roi_batch.data<int32_t>(),
          offset ? offset->data<double>() : nullptr, out.data<double>());
    } else {
      pdcn::cpu::deform_psroi_pool_forward<float>(
          g, x.data<float>(), b.data<float>(), roi_batch.data<int32_t>(),
          offset ? offset->data<float>() : nullptr, out.data<float>());
    }
    return {out};
  }
#if defined(PADDLE_WITH_CUDA)
  pdcn::check_cuda(
      pdcn::cuda::deform_psroi_pool_forward(pdcn::cuda_dtype(x.dtype(), kPs), g, x.data(),
                                            b.data(), roi_batch.data<int32_t>(),
                                            data_or_null(offset), out.data(), pdcn::stream_of(x)),
      kPs, "forward");
  return {out};
#else
  PDCN_RAISE(InvalidArgument, kPs, ": unsupported place (built without CUDA?)");
#endif
}

std::vector<paddle::Tensor> ps_backward(const paddle::Tensor& x_in, const paddle::Tensor& boxes,
                                        const paddle::Tensor& boxes_num,
                                        const paddle::Tensor* offset_in,
                                        const paddle::Tensor& grad_out_in, int output_channels,
                                        const std::vector<int>& output_size,
                                        const std::vector<int>& part_size, float spatial_scale,
                                        int sample_per_part, float trans_std,
                                        bool deterministic) {
  const paddle::Tensor x = pdcn::plain_layout(x_in);
  paddle::Tensor offset_storage;
  const paddle::Tensor* offset = pdcn::plain_layout(offset_in, &offset_storage);
  const paddle::Tensor grad_out = pdcn::plain_layout(grad_out_in);
  check_dtype(x, kPs);
  pdcn::check_same_place(kPs, {{"x", &x}, {"offset", offset}, {"grad_out", &grad_out}});
  pdcn::check_same_dtype(kPs, {{"x", &x}, {"offset", offset}, {"grad_out", &grad_out}});
#if defined(PADDLE_WITH_CUDA)
  const pdcn::DeviceScope device(x, kPs);
#endif
  const DeformPSRoiPoolGeometry g = ps_geometry(x, boxes, offset, output_channels, output_size,
                                                part_size, spatial_scale, sample_per_part,
                                                trans_std);
  check_grad_out(grad_out, {g.num_rois, g.out_channels, g.pooled_h, g.pooled_w}, kPs);
  paddle::Tensor grad_x = paddle::empty(x.shape(), x.dtype(), x.place());
  paddle::Tensor grad_offset;
  if (offset) grad_offset = paddle::empty(offset->shape(), offset->dtype(), offset->place());
  const paddle::Tensor roi_batch = roi_batch_index(boxes_num, g.batch, g.num_rois, x, kPs);
  const paddle::Tensor b = boxes_in_acc_type(boxes, x, kPs);
  if (x.is_cpu()) {
    auto run = [&](auto tag) {
      using T = decltype(tag);
      const T* off = offset ? offset->data<T>() : nullptr;
      pdcn::cpu::deform_psroi_pool_backward_x<T>(g, grad_out.data<T>(), b.data<T>(),
                                                 roi_batch.data<int32_t>(), off, grad_x.data<T>());
      if (offset) {
        pdcn::cpu::deform_psroi_pool_backward_offset<T>(g, grad_out.data<T>(), x.data<T>(),
                                                        b.data<T>(), roi_batch.data<int32_t>(),
                                                        off, grad_offset.data<T>());
      }
    };
    if (x.dtype() == paddle::DataType::FLOAT64) {
      run(double{});
    } else {
      run(float{});
    }
  } else {
#if defined(PADDLE_WITH_CUDA)
    const auto dtype = pdcn::cuda_dtype(x.dtype(), kPs);
    paddle::Tensor scratch =
        scratch_tensor(pdcn::cuda::deform_psroi_pool_backward_scratch_bytes(dtype, g, deterministic),
                       x.place());
    pdcn::check_cuda(
        pdcn::cuda::deform_psroi_pool_backward(dtype, g, grad_out.data(), x.data(), b.data(),
                                               roi_batch.data<int32_t>(), data_or_null(offset),
                                               grad_x.data(),
                                               offset ? grad_offset.data() : nullptr,
                                               scratch_data(scratch), deterministic,
                                               pdcn::stream_of(x)),
        kPs, deterministic ? "backward (deterministic)" : "backward");
#else
    PDCN_RAISE(InvalidArgument, kPs, ": unsupported place (built without CUDA?)");
#endif
  }
  if (offset) return {grad_x, grad_offset};
  return {grad_x};
}

std::vector<paddle::Tensor> PsRoiPoolForward(const paddle::Tensor& x, const paddle::Tensor& boxes,
                                             const paddle::Tensor& boxes_num,
                                             const paddle::Tensor& offset, int output_channels,
                                             const std::vector<int>& output_size,
                                             const std::vector<int>& part_size,
                                             float spatial_scale, int sample_per_part,
                                             float trans_std, bool deterministic) {
  (void)deterministic;
  return ps_forward(x, boxes, boxes_num, &offset, output_channels, output_size, part_size,
                    spatial_scale, sample_per_part, trans_std);
}

std::vector<paddle::Tensor> PsRoiPoolBackward(
    const paddle::Tensor& x, const paddle::Tensor& boxes, const paddle::Tensor& boxes_num,
    const paddle::Tensor& offset, const paddle::Tensor& grad_out, int output_channels,
    const std::vector<int>& output_size, const std::vector<int>& part_size, float spatial_scale,
    int sample_per_part, float trans_std, bool deterministic) {
  return ps_backward(x, boxes, boxes_num, &offset, grad_out, output_channels, output_size,
                     part_size, spatial_scale, sample_per_part, trans_std, deterministic);
}

std::vector<paddle::Tensor> PsRoiPoolPlainForward(
    const paddle::Tensor& x, const paddle::Tensor& boxes, const paddle::Tensor& boxes_num,
    int output_channels, const std::vector<int>& output_size, const std::vector<int>& part_size,
    float spatial_scale, int sample_per_part, float trans_std, bool deterministic) {
  (void)deterministic;
  return ps_forward(x, boxes, boxes_num, nullptr, output_channels, output_size, part_size,
                    spatial_scale, sample_per_part, trans_std);
}

std::vector<paddle::Tensor> PsRoiPoolPlainBackward(
    const paddle::Tensor& x, const paddle::Tensor& boxes, const paddle::Tensor& boxes_num,
    const paddle::Tensor& grad_out, int output_channels, const std::vector<int>& output_size,
    const std::vector<int>& part_size, float spatial_scale, int sample_per_part,
    float trans_std, bool deterministic) {
  return ps_backward(x, boxes, boxes_num, nullptr, grad_out, output_channels, output_size,
                     part_size, spatial_scale, sample_per_part, trans_std, deterministic);
}

std::vector<std::vector<int64_t>> PsRoiPoolInferShape(
    const std::vector<int64_t>&, const std::vector<int64_t>& boxes_shape,
    const std::vector<int64_t>&, const std::vector<int64_t>&, int output_channels,
    const std::vector<int>& output_size, const std::vector<int>&, float, int, float, bool) {
  return {{boxes_shape[0], output_channels, output_size[0], output_size[1]}};
}

std::vector<std::vector<int64_t>> PsRoiPoolPlainInferShape(
    const std::vector<int64_t>&, const std::vector<int64_t>& boxes_shape,
    const std::vector<int64_t>&, int output_channels, const std::vector<int>& output_size,
    const std::vector<int>&, float, int, float, bool) {
  return {{boxes_shape[0], output_channels, output_size[0], output_size[1]}};
}

}  // namespace

#define PDCN_ROI_ATTRS                                                               \
  {"output_size: std::vector<int>", "spatial_scale: float", "sampling_ratio: int", \
   "gamma: float", "aligned: bool", "deterministic: bool"}

#define PDCN_PSROI_ATTRS                                                                 \
  {"output_channels: int", "output_size: std::vector<int>", "part_size: std::vector<int>", \
   "spatial_scale: float", "sample_per_part: int", "trans_std: float", "deterministic: bool"}

PD_BUILD_OP(pdcn_deform_roi_pool)
    .Inputs({"X", "Boxes", "BoxesNum", "Offset"})
    .Outputs({"Out"})
    .Attrs(PDCN_ROI_ATTRS)
    .SetKernelFn(PD_KERNEL(RoiPoolForward))
    .SetInferShapeFn(PD_INFER_SHAPE(RoiPoolInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(RoiPoolInferDtype));

PD_BUILD_GRAD_OP(pdcn_deform_roi_pool)
    .Inputs({"X", "Boxes", "BoxesNum", "Offset", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Offset")})
    .Attrs(PDCN_ROI_ATTRS)
    .SetKernelFn(PD_KERNEL(RoiPoolBackward));

PDCN_NO_DOUBLE_GRAD_KERNEL(RoiPoolNoDoubleGrad, "pdcn_deform_roi_pool",
                           PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_O, PDCN_DG_O)
PD_BUILD_DOUBLE_GRAD_OP(pdcn_deform_roi_pool)
    .Inputs({"X", "Offset", paddle::Grad("Out"),
             paddle::Optional(paddle::Grad(paddle::Grad("X"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Offset")))})
    .Outputs({paddle::Grad("X"), paddle::Grad("Offset"), paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(RoiPoolNoDoubleGrad));

PD_BUILD_OP(pdcn_deform_roi_pool_plain)
    .Inputs({"X", "Boxes", "BoxesNum"})
    .Outputs({"Out"})
    .Attrs(PDCN_ROI_ATTRS)
    .SetKernelFn(PD_KERNEL(RoiPoolPlainForward))
    .SetInferShapeFn(PD_INFER_SHAPE(RoiPoolPlainInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(RoiPoolPlainInferDtype));

PD_BUILD_GRAD_OP(pdcn_deform_roi_pool_plain)
    .Inputs({"X", "Boxes", "BoxesNum", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .Attrs(PDCN_ROI_ATTRS)
    .SetKernelFn(PD_KERNEL(RoiPoolPlainBackward));

PDCN_NO_DOUBLE_GRAD_KERNEL(RoiPoolPlainNoDoubleGrad, "pdcn_deform_roi_pool_plain",
                           PDCN_DG_T, PDCN_DG_T, PDCN_DG_O)
PD_BUILD_DOUBLE_GRAD_OP(pdcn_deform_roi_pool_plain)
    .Inputs({"X", paddle::Grad("Out"), paddle::Optional(paddle::Grad(paddle::Grad("X")))})
    .Outputs({paddle::Grad("X"), paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(RoiPoolPlainNoDoubleGrad));

PD_BUILD_OP(pdcn_deform_psroi_pool)
    .Inputs({"X", "Boxes", "BoxesNum", "Offset"})
    .Outputs({"Out"})
    .Attrs(PDCN_PSROI_ATTRS)
    .SetKernelFn(PD_KERNEL(PsRoiPoolForward))
    .SetInferShapeFn(PD_INFER_SHAPE(PsRoiPoolInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(RoiPoolInferDtype));

PD_BUILD_GRAD_OP(pdcn_deform_psroi_pool)
    .Inputs({"X", "Boxes", "BoxesNum", "Offset", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Offset")})
    .Attrs(PDCN_PSROI_ATTRS)
    .SetKernelFn(PD_KERNEL(PsRoiPoolBackward));

PDCN_NO_DOUBLE_GRAD_KERNEL(PsRoiPoolNoDoubleGrad, "pdcn_deform_psroi_pool",
                           PDCN_DG_T, PDCN_DG_T, PDCN_DG_T, PDCN_DG_O, PDCN_DG_O)
PD_BUILD_DOUBLE_GRAD_OP(pdcn_deform_psroi_pool)
    .Inputs({"X", "Offset", paddle::Grad("Out"),
             paddle::Optional(paddle::Grad(paddle::Grad("X"))),
             paddle::Optional(paddle::Grad(paddle::Grad("Offset")))})
    .Outputs({paddle::Grad("X"), paddle::Grad("Offset"), paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(PsRoiPoolNoDoubleGrad));

PD_BUILD_OP(pdcn_deform_psroi_pool_plain)
    .Inputs({"X", "Boxes", "BoxesNum"})
    .Outputs({"Out"})
    .Attrs(PDCN_PSROI_ATTRS)
    .SetKernelFn(PD_KERNEL(PsRoiPoolPlainForward))
    .SetInferShapeFn(PD_INFER_SHAPE(PsRoiPoolPlainInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(RoiPoolPlainInferDtype));

PD_BUILD_GRAD_OP(pdcn_deform_psroi_pool_plain)
    .Inputs({"X", "Boxes", "BoxesNum", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X")})
    .Attrs(PDCN_PSROI_ATTRS)
    .SetKernelFn(PD_KERNEL(PsRoiPoolPlainBackward));

PDCN_NO_DOUBLE_GRAD_KERNEL(PsRoiPoolPlainNoDoubleGrad, "pdcn_deform_psroi_pool_plain",
                           PDCN_DG_T, PDCN_DG_T, PDCN_DG_O)
PD_BUILD_DOUBLE_GRAD_OP(pdcn_deform_psroi_pool_plain)
    .Inputs({"X", paddle::Grad("Out"), paddle::Optional(paddle::Grad(paddle::Grad("X")))})
    .Outputs({paddle::Grad("X"), paddle::Grad(paddle::Grad("Out"))})
    .SetKernelFn(PD_KERNEL(PsRoiPoolPlainNoDoubleGrad));
