// Signals derived from one logit row z[0..C) (stride `stride`) and its true label y.
// docs/methods/signals.md. All arithmetic is in double; inputs of any float type are
// widened on load, so CPU and CUDA give the same value for the same input.
//
// A signal is computed in two steps that both devices share: the reductions of the row
// (maxima, argmax, a finiteness flag, the anchored sum of exponentials), then
// finish_signal(), which turns them into the value.
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

// Whether the anchored sum of exponentials runs over the other classes (anchored at
// their maximum) rather than over all classes (anchored at the overall maximum).
MIAKIT_HD bool sum_over_others(Signal kind) { return kind == Signal::scaled_confidence; }
MIAKIT_HD bool needs_sum(Signal kind) {
  return kind != Signal::hinge && kind != Signal::correct;
}

// The signal from the row's reductions. `sum` is sum_{j != y} exp(z_j - max_other) when
// sum_over_others(kind), else sum_j exp(z_j - max_all); it is at least 1.
MIAKIT_HD double finish_signal(Signal kind, double zy, double max_all, double max_other,
                               bool argmax_is_y, double sum) {
  switch (kind) {
    case Signal::scaled_confidence: return zy - (max_other + log(sum));
    case Signal::hinge: return zy - max_other;
    case Signal::correct: return argmax_is_y ? 1.0 : 0.0;
    case Signal::loss: return (max_all + log(sum)) - zy;
    case Signal::confidence: return exp(zy - (max_all + log(sum)));
    default: return 1.0 / sum;  // max_confidence: exp(max - lse) = 1 / sum
  }
}

// One row, one thread: the CUDA kernels' form (the CPU evaluates blocks of rows with the
// same reductions, in csrc/cpu/signal_block.h).
template <class T>
MIAKIT_HD SignalValue compute_signal(Signal kind, const T* z, int64_t stride, int C, int64_t y) {
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
  double sum = 0.0;
  if (needs_sum(kind)) {
    const bool others = sum_over_others(kind);
    const double anchor = others ? max_other : max_all;
    for (int j = 0; j < C; ++j) {
      if (!(others && j == y)) sum += exp_nonpos(Load<T>::get(z + j * stride) - anchor);
    }
  }
  return {finish_signal(kind, zy, max_all, max_other, argmax == y, sum), 0};
}

}  // namespace miakit
