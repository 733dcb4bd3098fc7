// Exact nearest neighbours (docs/methods/generative.md), shared by the CPU and CUDA kernels:
// the float64 distance every kernel reports and the margin that makes the float32 screen
// safe.
#pragma once

#include "miakit/common.h"

namespace miakit {

// sum_d (q_d - r_d)^2 in float64, in feature order, each step rounded separately (no fused
// multiply-add), so that every kernel returns the same bits.
template <class T>
MIAKIT_HD double sq_distance(const T* q, int64_t q_step, const T* r, int64_t r_step,
                             int64_t D) {
  double s = 0.0;
  for (int64_t d = 0; d < D; ++d) {
    const double t = Load<T>::get(q + d * q_step) - Load<T>::get(r + d * r_step);
#if defined(__CUDA_ARCH__)
    s = __dadd_rn(s, __dmul_rn(t, t));
#else
    s += t * t;
#endif
  }
  return s;
}

// The screen compares 2 q.r - |r|^2 (= |q|^2 - d^2) computed in float32 from inputs rounded
// to float32 against a threshold. Its error is at most (2 D + 6) u (|q| + |r|)^2 with
// u = 2^-24 (the dot product's D + 2 roundings, doubled, plus rounding |r|^2 and the
// final fused step); the margin is twice that, with |r| bounded by the largest row norm.
MIAKIT_HD double knn_margin(int64_t D, double q_norm, double r_norm_max) {
  const double s = q_norm + r_norm_max;
  return static_cast<double>(D + 8) * 2.4e-7 * s * s;
}

}  // namespace miakit
