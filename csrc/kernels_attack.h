// Entry points of the attack kernels beyond LiRA (docs/methods/rmia.md). As in kernels.h,
// each has a CPU implementation (cpu/NAME.cpp) and a CUDA one (cuda/NAME.cu) with the
// same signature, and the caller allocates every output.
#pragma once

#include <cstdint>

#include "tensor.h"

namespace miakit {

// RMIA counting over R independent rows (targets, or target x query view):
// out[r, i] = share of the population of row r that x_ratio[r, i] beats
// (x / z > gamma; include/miakit/rmia.h). pop_ratio [R, Z] float64 holds each row's
// population ratios, NaN where an entry is not in that row's population. self [R, N]
// uint8 (optional: data == nullptr) marks the x whose own ratio is in the population
// (the same value sits in pop_ratio): it does not count against itself. x_ratio [R, N]
// float64, out [R, N] float64, sorted [R, Z] float64 scratch the caller allocates.
struct RmiaCountArgs {
  Tensor x_ratio, pop_ratio, self, sorted, out;
  double gamma = 1.0;
};

struct RmiaStatus {
  int64_t empty_rows = 0;  // rows whose population is empty (their scores are NaN)
};

// Two-sample K-S extremes of B pairs of sorted samples (include/miakit/ks.h). Samples are
// stored back to back: pair r's sample a is a_values[a_offsets[r] .. a_offsets[r + 1]),
// sorted ascending and non-empty, likewise b. Outputs [B] float64: the max and min of
// F_a - F_b and where they are attained.
struct KsMergeArgs {
  Tensor a_values, a_offsets, b_values, b_offsets;  // float64 [Ta], int64 [B + 1], ...
  Tensor d_max, d_min, loc_max, loc_min;            // float64 [B]
};

namespace cpu {
RmiaStatus rmia_count(const RmiaCountArgs& a);
void ks_merge(const KsMergeArgs& a);
}  // namespace cpu

#if defined(MIAKIT_WITH_CUDA)
namespace cuda {
RmiaStatus rmia_count(const RmiaCountArgs& a, std::uintptr_t stream);
void ks_merge(const KsMergeArgs& a, std::uintptr_t stream);
}  // namespace cuda
#endif

}  // namespace miakit
