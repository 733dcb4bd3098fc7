// The kernel entry points. Each family has a CPU implementation (cpu/NAME.cpp) and a
// CUDA implementation (cuda/NAME.cu) with the same signature; bindings.cpp dispatches
// on the device of the arrays. Callers allocate every output.
#pragma once

#include <cstdint>
#include <vector>

#include "miakit/lira_math.h"
#include "miakit/signals.h"
#include "tensor.h"

namespace miakit {

// Counts of rejected rows, so that the Python layer can name the problem.
struct SignalStatus {
  int64_t nonfinite = 0;   // rows with a NaN or inf logit
  int64_t bad_label = 0;   // rows whose label is outside [0, C)
};

// logits [R..., C] (any strides), labels broadcast to the same leading shape (strides may
// be 0); n_out signals computed in one pass, kinds[s] into outs[s] [R...] float32 or
// float64 (any strides). The status counts each bad row once.
struct SignalArgs {
  Tensor logits, labels;
  int n_out = 0;
  Signal kinds[kMaxSignalOuts];
  Tensor outs[kMaxSignalOuts];
};

struct LiraOptions {
  Center center = Center::median;
  Variance variance = Variance::per_example;
  Mode mode = Mode::online;
  Offline offline = Offline::one_sided;
  double min_std = 1e-6;
  References references = References::balanced;  // leave-one-out only
  Signal signal = Signal::scaled_confidence;  // used when the source is logits
};

// Where the per-model observations come from: precomputed scores [M, N, A], or logits
// [M, N, A, C] with labels [N] (the fused path: scores are computed tile by tile and
// never stored).
struct LiraSource {
  bool from_logits = false;
  Tensor scores;  // [M, N, A]
  Tensor logits;  // [M, N, A, C]
  Tensor labels;  // [N]
};

// Fit: statistics from every model, [N, A] float64 outputs, counts [N] int64.
struct LiraFitArgs {
  LiraSource source;
  Tensor keep;  // [M, N] uint8/bool
  Tensor mu_in, mu_out, sd_in, sd_out;  // [N, A] float64, sd before clamping
  Tensor n_in, n_out;                    // [N] int64
  LiraOptions opt;
};

// Score a target's observations [N, A] against fitted statistics: out [N] float64.
struct LiraScoreArgs {
  Tensor target;  // [N, A]
  Tensor mu_in, mu_out, sd_in, sd_out;  // [N, A] float64 (clamped by the caller's min_std)
  Tensor out;     // [N] float64
  LiraOptions opt;
};

// Leave-one-out: targets [K] int64 model indices, out [K, N] float64.
struct LiraLooArgs {
  LiraSource source;
  Tensor keep;
  Tensor targets;
  Tensor out;
  LiraOptions opt;
};

struct LiraStatus {
  SignalStatus signal;
  // NaN/inf in precomputed scores; from logits, signal values whose magnitude exceeds
  // kLiraMaxAbsObservation (lira_math.h), which the fused path does not rescale
  int64_t nonfinite_scores = 0;
  std::vector<int64_t> clamped;          // per target (LOO) or [1] (fit): clamped spreads
  std::vector<int64_t> empty;            // per target: examples lacking IN/OUT models
};

namespace cpu {
SignalStatus signal(const SignalArgs& a);
LiraStatus lira_fit(const LiraFitArgs& a);
LiraStatus lira_score(const LiraScoreArgs& a);
LiraStatus lira_loo(const LiraLooArgs& a);
int num_threads();
}  // namespace cpu

#if defined(MIAKIT_WITH_CUDA)
namespace cuda {
SignalStatus signal(const SignalArgs& a, std::uintptr_t stream);
LiraStatus lira_fit(const LiraFitArgs& a, std::uintptr_t stream);
LiraStatus lira_score(const LiraScoreArgs& a, std::uintptr_t stream);
LiraStatus lira_loo(const LiraLooArgs& a, std::uintptr_t stream);
// Number of visible devices, 0 when there is no driver or device (never throws).
int device_count();
}  // namespace cuda
#endif

}  // namespace miakit
