// LiRA statistics and per-observation scores (docs/methods/lira.md), shared by the CPU
// and CUDA kernels. Everything is double precision.
#pragma once

#include "miakit/common.h"

namespace miakit {

enum class Center : int { median = 0, mean = 1 };
enum class Variance : int { per_example = 0, global = 1 };
enum class Mode : int { online = 0, offline = 1 };
enum class Offline : int { one_sided = 0, two_sided = 1 };
// Leave-one-out references: `balanced` leaves out the target and one model from the
// other side of every example (balanced_partner), so an example's IN and OUT reference
// counts do not depend on whether the target trained on it; `all` leaves out the target
// only (the counts then differ by one with the target's membership, which biases the
// score against members when the sides are small).
enum class References : int { balanced = 0, all = 1 };

constexpr double kLogSqrt2Pi = 0.91893853320467274178;  // log(sqrt(2 pi))

// The largest magnitude of an observation (shadow or target score) that the statistics
// take as it is: 2^256. Below it no sum, mean, squared deviation (M2) or pooled total can
// overflow, whatever the counts of models, examples and augmentations. Larger finite
// observations are scaled by a power of two first (miakit/lira.py), which changes no
// digit of the statistics; the fused path from logits counts them instead
// (LiraStatus::nonfinite_scores) so that the caller takes the path that scales.
constexpr double kLiraMaxAbsObservation = 1.15792089237316195424e77;
constexpr double kInvSqrt2 = 0.70710678118654752440;

MIAKIT_HD double log_normal_pdf(double x, double mu, double sigma) {
  const double z = (x - mu) / sigma;
  return -0.5 * z * z - log(sigma) - kLogSqrt2Pi;
}

// log Phi(z), accurate in both tails. Above -1, log1p(-Phi(-z)) avoids rounding Phi to
// 1; between -20 and -1, erfc keeps full relative accuracy; below, the asymptotic series log Phi(z) = -z^2/2 - log(-z) - log sqrt(2 pi)
// + log(1 - 1/z^2 + 3/z^4 - 15/z^6 + 105/z^8) has a relative error under 1e-10.
MIAKIT_HD double log_ndtr(double z) {
  if (z > -1.0) return log1p(-0.5 * erfc(z * kInvSqrt2));
  if (z > -20.0) return log(0.5 * erfc(-z * kInvSqrt2));
  const double r = 1.0 / (z * z);
  const double series = 1.0 + r * (-1.0 + r * (3.0 + r * (-15.0 + r * 105.0)));
  return -0.5 * z * z - log(-z) - kLogSqrt2Pi + log(series);
}

// Median of sorted[0..n) with the element at rank r removed (r = -1: nothing removed).
// Even counts average the two middle values, as numpy.median does.
MIAKIT_HD double median_without(const double* sorted, int n, int r) {
  const int m = (r >= 0) ? n - 1 : n;
  const int lo = (m - 1) / 2, hi = m / 2;
  const int ilo = (r >= 0 && lo >= r) ? lo + 1 : lo;
  const int ihi = (r >= 0 && hi >= r) ? hi + 1 : hi;
  return 0.5 * (sorted[ilo] + sorted[ihi]);
}

// The model that balanced leave-one-out drops from the side opposite to target k on one
// example (member[m] != 0: model m trained on it): the target's pair partner k ^ 1 when it
// is on the other side (always, for keep matrices drawn in complementary pairs), else the
// first model after k, cyclically, that is. -1 when the other side is empty.
MIAKIT_HD int balanced_partner(int k, int M, const uint8_t* member) {
  const bool side = member[k] != 0;
  const int pair = k ^ 1;
  if (pair < M && (member[pair] != 0) != side) return pair;
  for (int i = 1; i < M; ++i) {
    const int j = k + i < M ? k + i : k + i - M;
    if ((member[j] != 0) != side) return j;
  }
  return -1;
}

// Running statistics of one side (IN or OUT) of one column: count, mean and the sum of
// squared deviations from the mean (M2), from which the statistics without one
// observation follow exactly.
struct SideStats {
  int n;
  double mean;
  double m2;
};

// Mean and M2 after removing observation x (remove = false: the side as it is).
// With one observation left, M2 is exactly 0. Otherwise the subtraction leaves a rounding
// residue of order 1e-16 * M2; when the result is not far above it (m2_needs_recompute),
// the caller recomputes that side directly from its values, so a side whose remaining
// values are all equal gets spread 0, as a refit would.
MIAKIT_HD void stats_without(const SideStats& s, double x, bool remove, double* mean,
                             double* m2, int* n) {
  if (!remove) {
    *n = s.n;
    *mean = s.mean;
    *m2 = s.m2;
    return;
  }
  *n = s.n - 1;
  if (*n <= 0) {
    *mean = NAN;
    *m2 = 0.0;
    return;
  }
  const double mean_new = (s.n * s.mean - x) / (*n);
  const double m2_new = s.m2 - (x - s.mean) * (x - mean_new);
  *mean = mean_new;
  *m2 = (*n == 1 || m2_new < 0.0) ? 0.0 : m2_new;
}

// The subtraction's rounding error is about 1e-16 * M2 before the removal, so M2 after it
// keeps a relative error of 1e-16 / (after / before). Recomputed whenever the removed
// model held more than 1 - 2^-10 of the side's M2 (a diverged model, an outlier): the
// error stays below 2.3e-13 (it reached 7e-5 in the scores with a bound of 1e-10), and
// ordinary columns, where no single model holds 99.9% of M2, never pay for it.
constexpr double kM2RecomputeRatio = 1.0 / 1024.0;

MIAKIT_HD bool m2_needs_recompute(double m2_before, double m2_after, int n_after) {
  return n_after >= 2 && m2_after <= kM2RecomputeRatio * m2_before;
}

// The per-observation LiRA score (before the mean over augmentations).
MIAKIT_HD double lira_observation(Mode mode, Offline offline, double s, double mu_in,
                                  double sd_in, double mu_out, double sd_out) {
  if (mode == Mode::online) {
    const double r = log_normal_pdf(s, mu_in, sd_in) - log_normal_pdf(s, mu_out, sd_out);
    if (r == r) return r;  // not NaN
    // Both squared distances overflowed (inf - inf), or an input is NaN: the difference of
    // the squares in factored form, finite or of the right sign (NaN stays NaN).
    const double zi = (s - mu_in) / sd_in, zo = (s - mu_out) / sd_out;
    return 0.5 * (zo - zi) * (zo + zi) - log(sd_in) + log(sd_out);
  }
  if (offline == Offline::one_sided) return log_ndtr((s - mu_out) / sd_out);
  return -log_normal_pdf(s, mu_out, sd_out);
}

}  // namespace miakit
