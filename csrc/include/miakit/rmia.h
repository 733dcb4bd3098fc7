// RMIA's pairwise test (docs/methods/rmia.md), shared by the CPU and CUDA kernels.
//
// A scored example x beats a population example z when ratio(x) / ratio(z) > gamma,
// evaluated exactly so, in double precision. For a fixed x >= 0 the test is monotone in
// z: correctly rounded division is monotone, so x / z is non-increasing in z (z = 0 gives
// +inf, or NaN when x = 0, which fails the test as every z does then). Over population
// ratios sorted ascending, the z that x beats are therefore a prefix, and its length,
// found by binary search with the very same test, equals the dense count over all z.
#pragma once

#include "miakit/common.h"

namespace miakit {

MIAKIT_HD bool rmia_beats(double x, double z, double gamma) { return x / z > gamma; }

// Number of sorted[0..n) that x beats: the first index where the test fails.
MIAKIT_HD int64_t rmia_count_beaten(const double* sorted, int64_t n, double x, double gamma) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (rmia_beats(x, sorted[mid], gamma)) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// Score of x from the count of the n_valid population entries it beats: the share of its
// population it beats, leaving out its own entry when x is a member of that population
// (`self`): its own comparison x / x > gamma is removed from the count and it leaves the
// denominator. NaN for an empty population.
MIAKIT_HD double rmia_share_of(int64_t count, int64_t n_valid, double x, bool self,
                               double gamma) {
  int64_t denom = n_valid;
  if (self) {
    count -= rmia_beats(x, x, gamma) ? 1 : 0;
    denom -= 1;
  }
  return denom > 0 ? static_cast<double>(count) / static_cast<double>(denom) : NAN;
}

// The same from the sorted population, by binary search.
MIAKIT_HD double rmia_share(const double* sorted, int64_t n_valid, double x, bool self,
                            double gamma) {
  return rmia_share_of(rmia_count_beaten(sorted, n_valid, x, gamma), n_valid, x, self, gamma);
}

}  // namespace miakit
