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
// The winner is decided by k, then by the double, then by the smaller value, so points
// may also be offered out of order (the CPU kernel of unsorted samples does); a merge
// offers them in order, where the value never decides.
struct KsSide {
  int64_t k;
  double d, loc;
  bool set;
};

MIAKIT_HD void ks_update_max(KsSide& s, int64_t k, int64_t i, int64_t j, double dn, double dm,
                             double v) {
  if (s.set && k < s.k) return;
  const double d = static_cast<double>(i) / dn - static_cast<double>(j) / dm;
  if (!s.set || k > s.k || d > s.d || (d == s.d && v < s.loc)) {
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
  if (!s.set || k < s.k || d < s.d || (d == s.d && v < s.loc)) {
    s.k = k;
    s.d = d;
    s.loc = v;
    s.set = true;
  }
}

// The running state of one merge: the best over the values of a, and over those of b,
// kept apart for the location rule.
struct KsState {
  KsSide max_a, min_a, max_b, min_b;
};

MIAKIT_HD KsState ks_state() {
  KsState s;
  s.max_a = s.min_a = s.max_b = s.min_b = KsSide{0, 0.0, NAN, false};
  return s;
}

// Merges a run of the two samples: a[0..na) and b[0..nb), sorted, are the values of a
// and b in one interval of values (every value equal to one of them is in it), i0 and j0
// the counts of a and b below the interval, n and m the full sample sizes. The whole
// samples are one run with i0 = j0 = 0; ks_extremes is that call.
MIAKIT_HD void ks_merge_run(const double* a, int64_t na, const double* b, int64_t nb,
                            int64_t i0, int64_t j0, int64_t n, int64_t m, KsState& s) {
  int64_t i = 0, j = 0;
  const double dn = static_cast<double>(n), dm = static_cast<double>(m);
  while (i < na || j < nb) {
    const double v = (j >= nb || (i < na && a[i] <= b[j])) ? a[i] : b[j];
    const bool in_a = i < na && a[i] == v, in_b = j < nb && b[j] == v;
    while (i < na && a[i] <= v) ++i;
    while (j < nb && b[j] <= v) ++j;
    const int64_t gi = i0 + i, gj = j0 + j;
    const int64_t k = gi * m - gj * n;
    if (in_a) {
      ks_update_max(s.max_a, k, gi, gj, dn, dm, v);
      ks_update_min(s.min_a, k, gi, gj, dn, dm, v);
    }
    if (in_b) {
      ks_update_max(s.max_b, k, gi, gj, dn, dm, v);
      ks_update_min(s.min_b, k, gi, gj, dn, dm, v);
    }
  }
}

// The extremes from the final state: an unset side (a sample never reached) loses every
// comparison, and a wins ties.
MIAKIT_HD KsExtremes ks_finish(const KsState& s) {
  KsExtremes r;
  const bool amax = s.max_a.set && (!s.max_b.set || s.max_a.d >= s.max_b.d);
  r.d_max = amax ? s.max_a.d : s.max_b.d;
  r.loc_max = amax ? s.max_a.loc : s.max_b.loc;
  const bool amin = s.min_a.set && (!s.min_b.set || s.min_a.d <= s.min_b.d);
  r.d_min = amin ? s.min_a.d : s.min_b.d;
  r.loc_min = amin ? s.min_a.loc : s.min_b.loc;
  return r;
}

MIAKIT_HD KsExtremes ks_extremes(const double* a, int64_t n, const double* b, int64_t m) {
  KsState s = ks_state();
  ks_merge_run(a, n, b, m, 0, 0, n, m, s);
  return ks_finish(s);
}

// Exact p-value of the two-sided statistic h / n of two samples of n values each:
// P(D_{n,n} >= h / n) = 2 (A0 - A0 A1 + A0 A1 A2 - ...), the terms binom(2n, n - k h) /
// binom(2n, n) nested as in Horner's rule. Operation for operation scipy's
// _compute_prob_outside_square (scipy.stats._stats_py), so the doubles are the same;
// 1 <= h <= n.
MIAKIT_HD double ks_prob_outside_square(int64_t n, int64_t h) {
  double P = 0.0;
  int64_t k = static_cast<int64_t>(floor(static_cast<double>(n) / static_cast<double>(h)));
  while (k >= 0) {
    double p1 = 1.0;
    for (int64_t j = 0; j < h; ++j) {
      p1 = static_cast<double>(n - k * h - j) * p1 / static_cast<double>(n + k * h + j + 1);
    }
    P = p1 * (1.0 - P);
    --k;
  }
  return 2 * P;
}

}  // namespace miakit
