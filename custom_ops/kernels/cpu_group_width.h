// Compile-time group widths for the CPU drivers: with few channels per group
// the per-sample work is a handful of multiply-adds over a channel run, and a
// run whose length is a constant unrolls into whole vector operations (no
// loop counter, no remainder). dispatch_group_width picks the compiled width
// or W = 0, the same code with the width at run time. Used by the DCNv3/v4
// aggregation (deform_aggregate_cpu.h) and the channels-last deformable conv
// (deform_conv_cpu_cl.h). Host only.
#pragma once

#include <cstdint>

namespace pdcn {
namespace cpu {

template <int W>
struct GroupWidth {
  static constexpr int value = W;
};

// Calls f(GroupWidth<W>{}) with W = group_channels when it is one of the
// compiled widths (2, 4, 8, 16, 32, 64), with W = 0 otherwise.
template <typename F>
void dispatch_group_width(int64_t group_channels, const F& f) {
  switch (group_channels) {
    case 2: return f(GroupWidth<2>{});
    case 4: return f(GroupWidth<4>{});
    case 8: return f(GroupWidth<8>{});
    case 16: return f(GroupWidth<16>{});
    case 32: return f(GroupWidth<32>{});
    case 64: return f(GroupWidth<64>{});
    default: return f(GroupWidth<0>{});
  }
}

}  // namespace cpu
}  // namespace pdcn
