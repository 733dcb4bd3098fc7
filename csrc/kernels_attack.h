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

// The same extremes from unsorted samples (CPU only): pair r's sample a is
// a_values[a_begin[r] .. a_end[r]), in any order and non-empty, likewise b (pairs may
// share a sample); a pair with a NaN or infinite value gets NaN results. sides says
// which extremes must be exact: both, the max (alternative 'greater'), the min ('less'),
// or the one of larger magnitude (two-sided; both when they tie); an extreme not asked
// for holds some difference attained (d_max no larger than the true maximum, d_min no
// smaller than the true minimum).
enum class KsSides : int { both = 0, max = 1, min = 2, larger = 3 };

struct KsUnsortedArgs {
  Tensor a_values, a_begin, a_end, b_values, b_begin, b_end;  // float64 [Ta], int64 [B], ...
  Tensor d_max, d_min, loc_max, loc_min;                      // float64 [B]
  KsSides sides = KsSides::both;
};

namespace cpu {
RmiaStatus rmia_count(const RmiaCountArgs& a);
void ks_merge(const KsMergeArgs& a);
void ks_unsorted(const KsUnsortedArgs& a);

// Pieces of scipy.stats.kstwo.sf computed here (cpu/ks.cpp), count entries each:
// out = smirnov(n, x) (one-sided sf; only where ks_smirnov_supported(n)), and
// out = P(D_n <= x) by Durbin's matrix.
constexpr int64_t kKsSmirnovMaxN = 100000;
bool ks_smirnov_supported(int64_t n);
void ks_smirnov_sf(const int64_t* n, const double* x, double* out, int64_t count);
void ks_kolmogorov_dmtw(const int64_t* n, const double* x, double* out, int64_t count);
}  // namespace cpu

#if defined(MIAKIT_WITH_CUDA)
namespace cuda {
RmiaStatus rmia_count(const RmiaCountArgs& a, std::uintptr_t stream);
void ks_merge(const KsMergeArgs& a, std::uintptr_t stream);
}  // namespace cuda
#endif

}  // namespace miakit
