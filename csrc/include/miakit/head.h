// Linear-softmax head on features x (docs/methods/gradients.md and curvature.md), shared
// by the CPU and CUDA kernels: logits z = W x + b, softmax p, the per-example gradient
// norm of the cross-entropy loss with respect to (W, b), and the exact trace of its
// Hessian with respect to x. Everything is double precision; W is a contiguous [C, d] array.
#pragma once

#include "miakit/common.h"
#include "miakit/signals.h"

namespace miakit {

// z[c] = W[c, :] . x + b[c] (b may be null); returns ||x||^2.
MIAKIT_HD double head_logits(const double* x, const double* W, const double* b, int64_t C,
                             int64_t d, double* z) {
  double xsq = 0.0;
  for (int64_t e = 0; e < d; ++e) xsq += x[e] * x[e];
  for (int64_t c = 0; c < C; ++c) {
    const double* w = W + c * d;
    // four partial sums: independent chains the compiler can keep in flight
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int64_t e = 0;
    for (; e + 4 <= d; e += 4) {
      s0 += w[e] * x[e];
      s1 += w[e + 1] * x[e + 1];
      s2 += w[e + 2] * x[e + 2];
      s3 += w[e + 3] * x[e + 3];
    }
    for (; e < d; ++e) s0 += w[e] * x[e];
    z[c] = (s0 + s1) + (s2 + s3) + (b ? b[c] : 0.0);
  }
  return xsq;
}

// Softmax in place: z -> p = exp(z - max z) / sum.
MIAKIT_HD void softmax_inplace(double* z, int64_t C) {
  double mx = z[0];
  for (int64_t c = 1; c < C; ++c) mx = z[c] > mx ? z[c] : mx;
  double s = 0.0;
  for (int64_t c = 0; c < C; ++c) {
    z[c] = exp(z[c] - mx);
    s += z[c];
  }
  const double inv = 1.0 / s;
  for (int64_t c = 0; c < C; ++c) z[c] *= inv;
}

// ||d loss / d (W, b)|| for the cross-entropy loss of label y (in [0, C)), from the
// logits z: g = (p - e_y) (x, 1)^T, so ||g|| = ||p - e_y|| sqrt(||x||^2 + [bias]), the
// first factor the grad_norm signal (signals.h: no cancellation when p_y ~ 1, no
// underflow however confident the head). NaN when a logit is not finite.
MIAKIT_HD double head_grad_norm(const double* z, int64_t C, int64_t y, double xsq,
                                bool has_bias) {
  const SignalValue g = compute_signal<double>(Signal::grad_norm, z, 1, static_cast<int>(C), y);
  return g.value * sqrt(xsq + (has_bias ? 1.0 : 0.0));
}

// tr(d^2 loss / dx^2) = tr(W^T (diag p - p p^T) W) = sum_k p_k ||w_k||^2 - ||sum_k p_k w_k||^2,
// evaluated as the p-weighted spread sum_k p_k ||w_k - wbar||^2 around wbar = W^T p, which
// is never negative and does not cancel. wbar is caller scratch of length d.
MIAKIT_HD double head_hessian_trace(const double* p, const double* W, int64_t C, int64_t d,
                                    double* wbar) {
  for (int64_t e = 0; e < d; ++e) wbar[e] = 0.0;
  for (int64_t c = 0; c < C; ++c) {
    const double* w = W + c * d;
    for (int64_t e = 0; e < d; ++e) wbar[e] += p[c] * w[e];
  }
  double tr = 0.0;
  for (int64_t c = 0; c < C; ++c) {
    const double* w = W + c * d;
    double s = 0.0;
    for (int64_t e = 0; e < d; ++e) {
      const double t = w[e] - wbar[e];
      s += t * t;
    }
    tr += p[c] * s;
  }
  return tr;
}

}  // namespace miakit
