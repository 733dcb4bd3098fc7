// Per-example squared gradient norms of a linear map y_t = W a_t + b applied at T
// positions (docs/methods/gradients.md), shared by the CPU and CUDA kernels: with activations
// A [T, d] and output gradients B [T, p] of one example, the weight gradient is B^T A and
//   ||B^T A||_F^2 = sum_{t,s} (A A^T)_{ts} (B B^T)_{ts}     (the "ghost" form),
// the bias gradient is sum_t B_t. The ghost form costs T^2 (d + p), the direct one T d p;
// ghost_use_gram makes the same choice as the Python code did. Everything is double.
#pragma once

#include "miakit/common.h"

namespace miakit {

// True when the Gram (ghost) form is cheaper than materializing B^T A.
MIAKIT_HD bool ghost_use_gram(int64_t T, int64_t d, int64_t p) { return T * (d + p) <= d * p; }

// x . y over n contiguous doubles (four independent partial sums).
MIAKIT_HD double ghost_dot(const double* x, const double* y, int64_t n) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int64_t e = 0;
  for (; e + 4 <= n; e += 4) {
    s0 += x[e] * y[e];
    s1 += x[e + 1] * y[e + 1];
    s2 += x[e + 2] * y[e + 2];
    s3 += x[e + 3] * y[e + 3];
  }
  for (; e < n; ++e) s0 += x[e] * y[e];
  return (s0 + s1) + (s2 + s3);
}

// Ghost form on contiguous A [T, d], B [T, p]: sum_t |a_t|^2 |b_t|^2 + 2 sum_{s<t} ...
MIAKIT_HD double ghost_gram_sq(const double* A, const double* B, int64_t T, int64_t d,
                               int64_t p) {
  double diag = 0.0, off = 0.0;
  for (int64_t t = 0; t < T; ++t) {
    const double* at = A + t * d;
    const double* bt = B + t * p;
    diag += ghost_dot(at, at, d) * ghost_dot(bt, bt, p);
    for (int64_t s = 0; s < t; ++s) off += ghost_dot(at, A + s * d, d) * ghost_dot(bt, B + s * p, p);
  }
  return diag + 2.0 * off;
}

// Rows of B^T A computed together by ghost_direct_sq (each a_t is read once per block).
constexpr int64_t kGhostRows = 8;

// Direct form on contiguous A [T, d], B [T, p]: ||B^T A||_F^2, kGhostRows rows of B^T A at
// a time in caller scratch `row` of length kGhostRows * d.
MIAKIT_HD double ghost_direct_sq(const double* A, const double* B, int64_t T, int64_t d,
                                 int64_t p, double* row) {
  double total = 0.0;
  for (int64_t i0 = 0; i0 < p; i0 += kGhostRows) {
    const int64_t nb = p - i0 < kGhostRows ? p - i0 : kGhostRows;
    for (int64_t j = 0; j < nb * d; ++j) row[j] = 0.0;
    for (int64_t t = 0; t < T; ++t) {
      const double* __restrict__ at = A + t * d;
      for (int64_t r = 0; r < nb; ++r) {
        const double bi = B[t * p + i0 + r];
        double* __restrict__ rr = row + r * d;
        for (int64_t j = 0; j < d; ++j) rr[j] += bi * at[j];
      }
    }
    for (int64_t r = 0; r < nb; ++r) total += ghost_dot(row + r * d, row + r * d, d);
  }
  return total;
}

// ||sum_t B_t||^2 on contiguous B [T, p].
MIAKIT_HD double ghost_bias_sq(const double* B, int64_t T, int64_t p) {
  double total = 0.0;
  for (int64_t i = 0; i < p; ++i) {
    double s = 0.0;
    for (int64_t t = 0; t < T; ++t) s += B[t * p + i];
    total += s * s;
  }
  return total;
}

// Hutchinson statistics from per-probe values q_k (k < P): mean and standard error
// std_k(q) / sqrt(P) with ddof 1 (NaN for P = 1); two passes (no cancellation).
MIAKIT_HD void probe_mean_stderr(const double* q, int64_t P, double* mean, double* se) {
  double s = 0.0;
  for (int64_t k = 0; k < P; ++k) s += q[k];
  const double m = s / static_cast<double>(P);
  double ss = 0.0;
  for (int64_t k = 0; k < P; ++k) ss += (q[k] - m) * (q[k] - m);
  *mean = m;
  *se = P > 1 ? sqrt(ss / static_cast<double>(P - 1)) / sqrt(static_cast<double>(P)) : NAN;
}

}  // namespace miakit
