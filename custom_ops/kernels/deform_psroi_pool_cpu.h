// CPU driver of deformable position-sensitive RoI pooling: OpenMP loops over
// the sample geometry of deform_psroi_pool.h.
//
// The samples of bin (i, j) of a box are the same for every output channel of
// an offset group, so the CPU builds them once ("taps": in-plane indices,
// bilinear weights and their derivatives, in the order for_each_psroi_sample
// visits them) and sweeps the group's channels. Every output element is owned
// by one thread, so the backward pass is deterministic and atomic-free:
//   forward      parallel over boxes
//   grad x       parallel over (bin, offset group): input channel (c, i, j)
//                only feeds output bin (c, i, j) of each box, so the task
//                owning bin (i, j) of group g owns the planes of its channels
//                and visits the boxes in order
//   grad offset  parallel over boxes
#pragma once

#include <cstring>
#include <vector>

#include "deform_psroi_pool.h"

namespace pdcn {
namespace cpu {

// The kept samples of one bin of one box for one offset group.
template <typename Acc>
struct PSRoiTaps {
  struct Tap {
    int32_t idx[4];
    Acc w[4], dy[4], dx[4];
  };
  std::vector<Tap> taps;

  template <typename T>
  void build(const DeformPSRoiPoolGeometry& g, const PSRoiBox<Acc>& b, const T* offset,
             int64_t k, int64_t group, int64_t i, int64_t j) {
    taps.clear();
    Acc oy, ox;
    psroi_bin_origin(g, b, offset, k, group * g.channels_per_group(), i, j, &oy, &ox);
    for_each_psroi_sample(g, b, oy, ox, [&](const ClampedStencil<Acc>& s) {
      Tap t;
      int64_t idx[4];
      clamped_indices(s, g.in_w, idx);
      clamped_weights(s, t.w);
      clamped_weight_derivatives(s, t.dy, t.dx);
      for (int q = 0; q < 4; ++q) t.idx[q] = static_cast<int32_t>(idx[q]);
      taps.push_back(t);
    });
  }
};

// Offset groups that the geometry uses: all channels share one without offset.
inline int64_t psroi_groups(const DeformPSRoiPoolGeometry& g, const void* offset) {
  return offset != nullptr ? g.offset_groups : 1;
}

// out [K, OC, PH, PW]. offset may be nullptr. Requires H * W < 2^31.
template <typename T>
void deform_psroi_pool_forward(const DeformPSRoiPoolGeometry& g, const T* x,
                               const acc_t<T>* boxes, const int* roi_batch, const T* offset,
                               T* out) {
  using Acc = acc_t<T>;
  const int64_t groups = psroi_groups(g, offset), cpg = g.out_channels / groups;
  const int64_t hw = g.in_plane(), bins = g.bins();
  cpu_parallel_for(g.num_rois, [&](int64_t k) {
    const PSRoiBox<Acc> b = psroi_box(g, boxes, roi_batch, k);
    PSRoiTaps<Acc> rt;
    for (int64_t i = 0; i < g.pooled_h; ++i) {
      for (int64_t j = 0; j < g.pooled_w; ++j) {
        for (int64_t grp = 0; grp < groups; ++grp) {
          rt.build(g, b, offset, k, grp, i, j);
          const int64_t kept = static_cast<int64_t>(rt.taps.size());
          for (int64_t c = grp * cpg; c < (grp + 1) * cpg; ++c) {
            const T* plane = x + (b.image * g.in_channels + psroi_input_channel(g, c, i, j)) * hw;
            Acc sum = 0;
            for (const auto& tp : rt.taps) {
              sum += tp.w[0] * static_cast<Acc>(plane[tp.idx[0]]) +
                     tp.w[1] * static_cast<Acc>(plane[tp.idx[1]]) +
                     tp.w[2] * static_cast<Acc>(plane[tp.idx[2]]) +
                     tp.w[3] * static_cast<Acc>(plane[tp.idx[3]]);
            }
            out[(k * g.out_channels + c) * bins + i * g.pooled_w + j] =
                static_cast<T>(kept > 0 ? sum / static_cast<Acc>(kept) : Acc(0));
          }
        }
      }
    }
  });
}

// grad_x [N, OC * PH * PW, H, W] is overwritten.
template <typename T>
void deform_psroi_pool_backward_x(const DeformPSRoiPoolGeometry& g, const T* grad_out,
                                  const acc_t<T>* boxes, const int* roi_batch, const T* offset,
                                  T* grad_x) {
  using Acc = acc_t<T>;
  const int64_t groups = psroi_groups(g, offset), cpg = g.out_channels / groups;
  const int64_t hw = g.in_plane(), bins = g.bins();
  cpu_parallel_for(bins * groups, [&](int64_t task) {
    const int64_t grp = task % groups, bin = task / groups;
    const int64_t i = bin / g.pooled_w, j = bin % g.pooled_w;
    for (int64_t n = 0; n < g.batch; ++n) {
      for (int64_t c = grp * cpg; c < (grp + 1) * cpg; ++c) {
        std::memset(grad_x + (n * g.in_channels + psroi_input_channel(g, c, i, j)) * hw, 0,
                    sizeof(T) * hw);
      }
    }
    PSRoiTaps<Acc> rt;
    for (int64_t k = 0; k < g.num_rois; ++k) {
      const PSRoiBox<Acc> b = psroi_box(g, boxes, roi_batch, k);
      rt.build(g, b, offset, k, grp, i, j);
      if (rt.taps.empty()) continue;
      const Acc inv_kept = Acc(1) / static_cast<Acc>(rt.taps.size());
      for (int64_t c = grp * cpg; c < (grp + 1) * cpg; ++c) {
        const Acc gb = static_cast<Acc>(grad_out[(k * g.out_channels + c) * bins + bin]) * inv_kept;
        if (gb == Acc(0)) continue;
        T* plane = grad_x + (b.image * g.in_channels + psroi_input_channel(g, c, i, j)) * hw;
        for (const auto& tp : rt.taps) {
          for (int q = 0; q < 4; ++q) {
            plane[tp.idx[q]] = static_cast<T>(static_cast<Acc>(plane[tp.idx[q]]) + tp.w[q] * gb);
          }
        }
      }
    }
  });
}

// grad_offset [K, 2 * G, PART_H, PART_W] is overwritten.
template <typename T>
void deform_psroi_pool_backward_offset(const DeformPSRoiPoolGeometry& g, const T* grad_out,
                                       const T* x, const acc_t<T>* boxes, const int* roi_batch,
                                       const T* offset, T* grad_offset) {
  using Acc = acc_t<T>;
  const int64_t groups = g.offset_groups, cpg = g.channels_per_group(), parts = g.parts();
  const int64_t hw = g.in_plane(), bins = g.bins();
  const Acc ts = static_cast<Acc>(g.trans_std);
  cpu_parallel_for(g.num_rois, [&](int64_t k) {
    const PSRoiBox<Acc> b = psroi_box(g, boxes, roi_batch, k);
    std::vector<Acc> gx(groups * parts, Acc(0)), gy(groups * parts, Acc(0));
    PSRoiTaps<Acc> rt;
    for (int64_t i = 0; i < g.pooled_h; ++i) {
      for (int64_t j = 0; j < g.pooled_w; ++j) {
        const int64_t cell = (i * g.part_h / g.pooled_h) * g.part_w + j * g.part_w / g.pooled_w;
        for (int64_t grp = 0; grp < groups; ++grp) {
          rt.build(g, b, offset, k, grp, i, j);
          if (rt.taps.empty()) continue;
          const Acc inv_kept = Acc(1) / static_cast<Acc>(rt.taps.size());
          Acc ex = 0, ey = 0;
          for (int64_t c = grp * cpg; c < (grp + 1) * cpg; ++c) {
            const Acc go = static_cast<Acc>(grad_out[(k * g.out_channels + c) * bins +
                                                     i * g.pooled_w + j]);
            if (go == Acc(0)) continue;
            const T* plane =
                x + (b.image * g.in_channels + psroi_input_channel(g, c, i, j)) * hw;
            Acc sx = 0, sy = 0;
            for (const auto& tp : rt.taps) {
              for (int q = 0; q < 4; ++q) {
                const Acc v = static_cast<Acc>(plane[tp.idx[q]]);
                sy += tp.dy[q] * v;
                sx += tp.dx[q] * v;
              }
            }
            ex += sx * go * inv_kept;
            ey += sy * go * inv_kept;
          }
          gx[grp * parts + cell] += ex;
          gy[grp * parts + cell] += ey;
        }
      }
    }
    // An entry that no kept sample uses has a zero gradient, even for a NaN box.
    for (int64_t grp = 0; grp < groups; ++grp) {
      T* o = grad_offset + (k * groups + grp) * 2 * parts;
      for (int64_t p = 0; p < parts; ++p) {
        const Acc ex = gx[grp * parts + p], ey = gy[grp * parts + p];
        o[p] = static_cast<T>(ex == Acc(0) ? Acc(0) : ex * ts * b.width);
        o[parts + p] = static_cast<T>(ey == Acc(0) ? Acc(0) : ey * ts * b.height);
      }
    }
  });
}

}  // namespace cpu
}  // namespace pdcn
