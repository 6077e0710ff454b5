// CPU driver of deformable RoI pooling (RoIAlign-based): OpenMP loops over
// the sample geometry of deform_roi_pool.h.
//
// The sample stencils of one box do not depend on the channel, so the CPU
// builds them once per box ("taps": in-plane indices and weights of the valid
// samples, bin by bin, in the order for_each_roi_sample visits them) and then
// sweeps the channels. Every output element is owned by exactly one thread:
//   forward      parallel over boxes
//   grad x       parallel over channel blocks (each block owns its channel
//                planes of every image; boxes are visited in order), so the
//                result is deterministic and independent of the thread count
//   grad offset  parallel over boxes
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "deform_roi_pool.h"

namespace pdcn {
namespace cpu {

inline int64_t max_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Valid samples of one box, grouped by bin: bin b owns taps [begin[b], begin[b + 1]).
template <typename Acc>
struct RoiTaps {
  struct Tap {
    int32_t idx[4];
    Acc w[4];
  };
  std::vector<Tap> taps;
  std::vector<int64_t> begin;

  template <typename T>
  void build(const DeformRoiPoolGeometry& g, const RoiAlignBox<Acc>& b, const T* offset,
             int64_t k) {
    taps.clear();
    begin.assign(g.bins() + 1, 0);
    for (int64_t i = 0; i < g.pooled_h; ++i) {
      for (int64_t j = 0; j < g.pooled_w; ++j) {
        Acc oy, ox;
        roi_bin_origin(g, b, offset, k, i, j, &oy, &ox);
        for_each_roi_sample(g, b, oy, ox, i, j, [&](const ClampedStencil<Acc>& s) {
          if (!s.valid) return;
          Tap t;
          int64_t idx[4];
          clamped_indices(s, g.in_w, idx);
          clamped_weights(s, t.w);
          for (int q = 0; q < 4; ++q) t.idx[q] = static_cast<int32_t>(idx[q]);
          taps.push_back(t);
        });
        begin[i * g.pooled_w + j + 1] = static_cast<int64_t>(taps.size());
      }
    }
  }
};

// Valid samples of one box with a free axis, with the derivative weights.
template <typename Acc>
struct RoiGradTaps {
  struct Tap {
    int32_t idx[4];
    Acc dy[4], dx[4];
  };
  std::vector<Tap> taps;
  std::vector<int64_t> begin;

  template <typename T>
  void build(const DeformRoiPoolGeometry& g, const RoiAlignBox<Acc>& b, const T* offset,
             int64_t k) {
    taps.clear();
    begin.assign(g.bins() + 1, 0);
    for (int64_t i = 0; i < g.pooled_h; ++i) {
      for (int64_t j = 0; j < g.pooled_w; ++j) {
        Acc oy, ox;
        roi_bin_origin(g, b, offset, k, i, j, &oy, &ox);
        for_each_roi_sample(g, b, oy, ox, i, j, [&](const ClampedStencil<Acc>& s) {
          if (!s.valid || !(s.y_free || s.x_free)) return;
          Tap t;
          int64_t idx[4];
          clamped_indices(s, g.in_w, idx);
          clamped_weight_derivatives(s, t.dy, t.dx);
          for (int q = 0; q < 4; ++q) t.idx[q] = static_cast<int32_t>(idx[q]);
          taps.push_back(t);
        });
        begin[i * g.pooled_w + j + 1] = static_cast<int64_t>(taps.size());
      }
    }
  }
};

// out [K, C, PH, PW]. offset may be nullptr. Requires H * W < 2^31.
template <typename T>
void deform_roi_pool_forward(const DeformRoiPoolGeometry& g, const T* x, const acc_t<T>* boxes,
                             const int* roi_batch, const T* offset, T* out) {
  using Acc = acc_t<T>;
  const int64_t bins = g.bins();
  cpu_parallel_for(g.num_rois, [&](int64_t k) {
    const RoiAlignBox<Acc> b = roi_align_box(g, boxes, roi_batch, k);
    RoiTaps<Acc> rt;
    rt.build(g, b, offset, k);
    const auto* taps = rt.taps.data();
    for (int64_t c = 0; c < g.channels; ++c) {
      const T* plane = x + (b.image * g.channels + c) * g.in_plane();
      T* o = out + (k * g.channels + c) * bins;
      for (int64_t bin = 0; bin < bins; ++bin) {
        Acc sum = 0;
        for (int64_t t = rt.begin[bin]; t < rt.begin[bin + 1]; ++t) {
          const auto& tp = taps[t];
          sum += tp.w[0] * static_cast<Acc>(plane[tp.idx[0]]) +
                 tp.w[1] * static_cast<Acc>(plane[tp.idx[1]]) +
                 tp.w[2] * static_cast<Acc>(plane[tp.idx[2]]) +
                 tp.w[3] * static_cast<Acc>(plane[tp.idx[3]]);
        }
        o[bin] = static_cast<T>(sum * b.inv_count);
      }
    }
  });
}

// grad_x [N, C, H, W] is overwritten.
template <typename T>
void deform_roi_pool_backward_x(const DeformRoiPoolGeometry& g, const T* grad_out,
                                const acc_t<T>* boxes, const int* roi_batch, const T* offset,
                                T* grad_x) {
  using Acc = acc_t<T>;
  const int64_t bins = g.bins(), hw = g.in_plane();
  std::memset(grad_x, 0, sizeof(T) * g.batch * g.channels * hw);
  if (g.num_rois == 0 || g.channels == 0) return;
  // One channel block per thread: every channel costs the same, and each block
  // rebuilds the taps of every box once. The result does not depend on it.
  const int64_t blocks = std::min<int64_t>(g.channels, max_threads());
  const int64_t per_block = (g.channels + blocks - 1) / blocks;
  const int64_t num_blocks = (g.channels + per_block - 1) / per_block;
  cpu_parallel_for(num_blocks, [&](int64_t blk) {
    const int64_t c0 = blk * per_block, c1 = std::min(g.channels, c0 + per_block);
    RoiTaps<Acc> rt;
    for (int64_t k = 0; k < g.num_rois; ++k) {
      const RoiAlignBox<Acc> b = roi_align_box(g, boxes, roi_batch, k);
      rt.build(g, b, offset, k);
      if (rt.taps.empty()) continue;
      const auto* taps = rt.taps.data();
      for (int64_t c = c0; c < c1; ++c) {
        T* plane = grad_x + (b.image * g.channels + c) * hw;
        const T* go = grad_out + (k * g.channels + c) * bins;
        for (int64_t bin = 0; bin < bins; ++bin) {
          const Acc gb = static_cast<Acc>(go[bin]) * b.inv_count;
          if (gb == Acc(0)) continue;
          for (int64_t t = rt.begin[bin]; t < rt.begin[bin + 1]; ++t) {
            const auto& tp = taps[t];
            for (int q = 0; q < 4; ++q) {
              plane[tp.idx[q]] = static_cast<T>(static_cast<Acc>(plane[tp.idx[q]]) + tp.w[q] * gb);
            }
          }
        }
      }
    }
  });
}

// grad_offset [K, 2, PH, PW] is overwritten.
template <typename T>
void deform_roi_pool_backward_offset(const DeformRoiPoolGeometry& g, const T* grad_out,
                                     const T* x, const acc_t<T>* boxes, const int* roi_batch,
                                     const T* offset, T* grad_offset) {
  using Acc = acc_t<T>;
  const int64_t bins = g.bins(), hw = g.in_plane();
  cpu_parallel_for(g.num_rois, [&](int64_t k) {
    const RoiAlignBox<Acc> b = roi_align_box(g, boxes, roi_batch, k);
    RoiGradTaps<Acc> rt;
    rt.build(g, b, offset, k);
    std::vector<Acc> gy(bins, Acc(0)), gx(bins, Acc(0));
    const auto* taps = rt.taps.data();
    if (!rt.taps.empty()) {
      for (int64_t c = 0; c < g.channels; ++c) {
        const T* plane = x + (b.image * g.channels + c) * hw;
        const T* go = grad_out + (k * g.channels + c) * bins;
        for (int64_t bin = 0; bin < bins; ++bin) {
          const Acc gc = static_cast<Acc>(go[bin]);
          if (gc == Acc(0)) continue;
          Acc vy = 0, vx = 0;
          for (int64_t t = rt.begin[bin]; t < rt.begin[bin + 1]; ++t) {
            const auto& tp = taps[t];
            for (int q = 0; q < 4; ++q) {
              const Acc v = static_cast<Acc>(plane[tp.idx[q]]);
              vy += tp.dy[q] * v;
              vx += tp.dx[q] * v;
            }
          }
          gy[bin] += gc * vy;
          gx[bin] += gc * vx;
        }
      }
    }
    T* o = grad_offset + k * 2 * bins;
    for (int64_t bin = 0; bin < bins; ++bin) {
      o[bin] = static_cast<T>(roi_offset_grad_scale(g, gx[bin], b.width, b.inv_count));
      o[bins + bin] = static_cast<T>(roi_offset_grad_scale(g, gy[bin], b.height, b.inv_count));
    }
  });
}

}  // namespace cpu
}  // namespace pdcn
