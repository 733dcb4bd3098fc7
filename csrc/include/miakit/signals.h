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
  grad_norm = 6,          // ||p - e_y||_2, the norm of the loss's gradient in the logits
};
constexpr int kSignalKinds = 7;
// The most signals one kernel call computes together (SignalArgs).
constexpr int kMaxSignalOuts = 8;

// Result of evaluating a signal on a row. status: 0 ok, 1 a NaN/inf logit, 2 label
// outside [0, C). Callers count the failures and raise; they never use the value then.
struct SignalValue {
  double value;
  int status;
};

// The anchored sums of exponentials a row's signals read (each at least 1 where used):
// - all: sum_j exp(z_j - max_all) (loss, confidence, max_confidence, grad_norm);
// - others: sum_{j != y} f_j with f_j = exp(z_j - max_other) (scaled_confidence,
//   grad_norm), and others_squares: sum_{j != y} f_j^2 (grad_norm).
struct SignalSums {
  double all = 0.0, others = 0.0, others_squares = 0.0;
};

MIAKIT_HD bool needs_sum_all(Signal kind) {
  return kind == Signal::loss || kind == Signal::confidence || kind == Signal::max_confidence ||
         kind == Signal::grad_norm;
}
MIAKIT_HD bool needs_sum_others(Signal kind) {
  return kind == Signal::scaled_confidence || kind == Signal::grad_norm;
}
MIAKIT_HD bool needs_squares(Signal kind) { return kind == Signal::grad_norm; }

// acc + f * f, the product rounded on its own (no fused multiply-add on a GPU either), so
// that the devices agree.
MIAKIT_HD double add_square(double acc, double f) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(acc, __dmul_rn(f, f));
#else
  return acc + f * f;
#endif
}

// ||p - e_y||_2. With p_j = e_j / S (e_j = exp(z_j - max_all), S = all) the class y
// contributes (1 - p_y)^2 = (sum_{j != y} e_j)^2 / S^2 and every other class e_j^2 / S^2.
// The others' terms are taken relative to their largest, e_j = m f_j with
// m = exp(max_other - max_all): ||p - e_y|| = m sqrt(others^2 + others_squares) / S. That
// never forms 1 - p_y by cancellation, and both sums lie in [1, C], so nothing underflows
// however confident the model (m itself is as exact as exp_nonpos).
MIAKIT_HD double grad_norm_of(double max_all, double max_other, const SignalSums& s) {
  return exp_nonpos(max_other - max_all) * sqrt(add_square(s.others_squares, s.others)) / s.all;
}

// The signal from the row's reductions.
MIAKIT_HD double finish_signal(Signal kind, double zy, double max_all, double max_other,
                               bool argmax_is_y, const SignalSums& s) {
  switch (kind) {
    case Signal::scaled_confidence: return zy - (max_other + log(s.others));
    case Signal::hinge: return zy - max_other;
    case Signal::correct: return argmax_is_y ? 1.0 : 0.0;
    case Signal::loss: return (max_all + log(s.all)) - zy;
    case Signal::confidence: return exp(zy - (max_all + log(s.all)));
    case Signal::grad_norm: return grad_norm_of(max_all, max_other, s);
    default: return 1.0 / s.all;  // max_confidence: exp(max - lse) = 1 / sum
  }
}

// One row, one thread: the CUDA kernels' form (the CPU evaluates blocks of rows with the
// same reductions, in csrc/cpu/signal_block.h). The sums run over the classes in order,
// as the CPU's do.
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
  SignalSums s;
  if (needs_sum_all(kind)) {
    for (int j = 0; j < C; ++j) s.all += exp_nonpos(Load<T>::get(z + j * stride) - max_all);
  }
  if (needs_sum_others(kind)) {
    const bool squares = needs_squares(kind);
    for (int j = 0; j < C; ++j) {
      if (j == y) continue;
      const double f = exp_nonpos(Load<T>::get(z + j * stride) - max_other);
      s.others += f;
      if (squares) s.others_squares = add_square(s.others_squares, f);
    }
  }
  return {finish_signal(kind, zy, max_all, max_other, argmax == y, s), 0};
}

}  // namespace miakit
