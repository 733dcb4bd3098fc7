// The two-sample Kolmogorov-Smirnov statistic by a merge of sorted samples
// (docs/methods/ks.md), shared by the CPU and CUDA kernels.
//
// The empirical CDFs are compared at every value of either sample, exactly as
// F_a(v) - F_b(v) = i / n - j / m with i, j the counts of values <= v (ties move together).
// The largest and smallest differences are kept with where they are attained: the
// smallest value of sample a attaining them if any does, else the smallest value of b
// (the first attainment over the concatenation [sorted a, sorted b], scipy's rule).
#pragma once

#include "miakit/common.h"

namespace miakit {

struct KsExtremes {
  double d_max, d_min;        // max and min of F_a - F_b over the values
  double loc_max, loc_min;    // where they are attained
};

// The extremes are found on exact integers, k = i m - j n (= n m (F_a - F_b)), and the
// double F_a - F_b = i / n - j / m, computed exactly as the reference does, is evaluated
// only where k ties the best so far: two points with one k may still round differently,
// and the larger double wins (the first attainment of it), as an argmax over doubles does.
struct KsSide {
  int64_t k;
  double d, loc;
  bool set;
};

MIAKIT_HD void ks_update_max(KsSide& s, int64_t k, int64_t i, int64_t j, double dn, double dm,
                             double v) {
  if (s.set && k < s.k) return;
  const double d = static_cast<double>(i) / dn - static_cast<double>(j) / dm;
  if (!s.set || k > s.k || d > s.d) {
    s.k = k;
    s.d = d;
    s.loc = v;
    s.set = true;
  }
}

MIAKIT_HD void ks_update_min(KsSide& s, int64_t k, int64_t i, int64_t j, double dn, double dm,
                             double v) {
  if (s.set && k > s.k) return;
  const double d = static_cast<double>(i) / dn - static_cast<double>(j) / dm;
  if (!s.set || k < s.k || d < s.d) {
    s.k = k;
    s.d = d;
    s.loc = v;
    s.set = true;
  }
}

MIAKIT_HD KsExtremes ks_extremes(const double* a, int64_t n, const double* b, int64_t m) {
  // best over the values of a, and over those of b, kept apart for the location rule
  KsSide max_a{0, 0.0, NAN, false}, min_a{0, 0.0, NAN, false};
  KsSide max_b{0, 0.0, NAN, false}, min_b{0, 0.0, NAN, false};
  int64_t i = 0, j = 0;
  const double dn = static_cast<double>(n), dm = static_cast<double>(m);
  while (i < n || j < m) {
    const double v = (j >= m || (i < n && a[i] <= b[j])) ? a[i] : b[j];
    const bool in_a = i < n && a[i] == v, in_b = j < m && b[j] == v;
    while (i < n && a[i] <= v) ++i;
    while (j < m && b[j] <= v) ++j;
    const int64_t k = i * m - j * n;
    if (in_a) {
      ks_update_max(max_a, k, i, j, dn, dm, v);
      ks_update_min(min_a, k, i, j, dn, dm, v);
    }
    if (in_b) {
      ks_update_max(max_b, k, i, j, dn, dm, v);
      ks_update_min(min_b, k, i, j, dn, dm, v);
    }
  }
  // an unset side (a sample never reached) loses every comparison
  KsExtremes r;
  const bool amax = max_a.set && (!max_b.set || max_a.d >= max_b.d);
  r.d_max = amax ? max_a.d : max_b.d;
  r.loc_max = amax ? max_a.loc : max_b.loc;
  const bool amin = min_a.set && (!min_b.set || min_a.d <= min_b.d);
  r.d_min = amin ? min_a.d : min_b.d;
  r.loc_min = amin ? min_a.loc : min_b.loc;
  return r;
}

}  // namespace miakit
