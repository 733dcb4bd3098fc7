// Signals derived from one logit row z[0..C) (stride `stride`) and its true label y.
// SCIENCE.md section 1. All arithmetic is in double; inputs of any float type are
// widened on load, so CPU and CUDA give the same value for the same input.
#pragma once

#include "miakit/common.h"

namespace miakit {

enum class Signal : int {
  scaled_confidence = 0,  // z_y - logsumexp_{j != y} z_j
  hinge = 1,              // z_y - max_{j != y} z_j
  loss = 2,               // -log p_y
  confidence = 3,         // p_y
  max_confidence = 4,     // max_j p_j
  correct = 5,            // argmax z == y (first maximum wins, as numpy.argmax)
};

// Result of evaluating a signal on a row. status: 0 ok, 1 a NaN/inf logit, 2 label
// outside [0, C). Callers count the failures and raise; they never use the value then.
struct SignalValue {
  double value;
  int status;
};

template <class T>
MIAKIT_HD SignalValue compute_signal(Signal kind, const T* z, int64_t stride, int C, int64_t y) {
  // Pass 1: the maximum over all classes, the maximum over the other classes, argmax,
  // and a finiteness check (any NaN/inf makes `finite` false).
  if (y < 0 || y >= C) return {NAN, 2};
  const double zy = Load<T>::get(z + y * stride);
  double max_all = -INFINITY, max_other = -INFINITY;
  int argmax = 0;
  bool finite = true;
  for (int j = 0; j < C; ++j) {
    const double v = Load<T>::get(z + j * stride);
    finite = finite && is_finite(v);
    if (v > max_all) { max_all = v; argmax = j; }
    if (j != y && v > max_other) max_other = v;
  }
  if (!finite) return {NAN, 1};
  switch (kind) {
    case Signal::hinge: return {zy - max_other, 0};
    case Signal::correct: return {argmax == y ? 1.0 : 0.0, 0};
    default: break;
  }
  if (kind == Signal::scaled_confidence) {
    // logsumexp over j != y, anchored at the largest of those logits: no cancellation
    // even when p_y is within rounding of 1.
    double s = 0.0;
    for (int j = 0; j < C; ++j) {
      if (j != y) s += exp(Load<T>::get(z + j * stride) - max_other);
    }
    return {zy - (max_other + log(s)), 0};
  }
  double s = 0.0;
  for (int j = 0; j < C; ++j) s += exp(Load<T>::get(z + j * stride) - max_all);
  const double lse = max_all + log(s);
  switch (kind) {
    case Signal::loss: return {lse - zy, 0};
    case Signal::confidence: return {exp(zy - lse), 0};
    default: return {1.0 / s, 0};  // max_confidence: exp(max - lse) = 1 / s
  }
}

}  // namespace miakit
