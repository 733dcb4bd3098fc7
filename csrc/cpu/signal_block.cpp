// The vectorized block evaluation behind signal_block.h.
#include "signal_block.h"

#include <cmath>

namespace miakit {
namespace cpu {

namespace {

MIAKIT_ISA_BODY void evaluate_block_body(const SignalSet& set, SignalBlock& b, int C) {
  constexpr int B = kRowBlock;
  // The reductions the set reads, each computed once for all of its signals.
  bool want_first = false, want_all = false, want_others = false, want_squares = false;
  for (int s = 0; s < set.n; ++s) {
    want_first = want_first || set.kinds[s] == Signal::correct;
    want_all = want_all || needs_sum_all(set.kinds[s]);
    want_others = want_others || needs_sum_others(set.kinds[s]);
    want_squares = want_squares || needs_squares(set.kinds[s]);
  }
  const double* zt = b.zt.data();
  double max_all[B], max_other[B], bad[B], zy[B];
  double s_all[B], s_others[B], s_sq[B];
  int64_t y[B], first_max[B];
  for (int i = 0; i < B; ++i) {
    const bool ok = b.y[i] >= 0 && b.y[i] < C;
    b.status[i] = ok ? 0 : 2;
    y[i] = ok ? b.y[i] : 0;  // keeps the loads below in bounds; the lane is rejected
    max_all[i] = -INFINITY;
    max_other[i] = -INFINITY;
    bad[i] = 0.0;
    s_all[i] = s_others[i] = s_sq[i] = 0.0;
    first_max[i] = C;
  }
  for (int j = 0; j < C; ++j) {
    const double* row = zt + static_cast<size_t>(j) * B;
    for (int i = 0; i < B; ++i) {
      const double v = row[i];
      bad[i] += v - v;  // NaN once any logit is NaN or infinite
      max_all[i] = v > max_all[i] ? v : max_all[i];
      max_other[i] = (j != y[i] && v > max_other[i]) ? v : max_other[i];
    }
  }
  for (int i = 0; i < B; ++i) zy[i] = zt[static_cast<size_t>(y[i]) * B + i];
  if (want_first) {
    // argmax as numpy defines it: the first index holding the maximum.
    for (int j = C - 1; j >= 0; --j) {
      const double* row = zt + static_cast<size_t>(j) * B;
      for (int i = 0; i < B; ++i) first_max[i] = row[i] == max_all[i] ? j : first_max[i];
    }
  }
  // The sums in class order, as compute_signal's (adding 0.0 for the class y leaves a
  // sum of non-negative terms unchanged, so skipping it and adding 0.0 agree).
  if (want_all) {
    for (int j = 0; j < C; ++j) {
      const double* row = zt + static_cast<size_t>(j) * B;
      for (int i = 0; i < B; ++i) s_all[i] += exp_nonpos(row[i] - max_all[i]);
    }
  }
  if (want_squares) {
    for (int j = 0; j < C; ++j) {
      const double* row = zt + static_cast<size_t>(j) * B;
      for (int i = 0; i < B; ++i) {
        const double f = j == y[i] ? 0.0 : exp_nonpos(row[i] - max_other[i]);
        s_others[i] += f;
        s_sq[i] = add_square(s_sq[i], f);
      }
    }
  } else if (want_others) {
    for (int j = 0; j < C; ++j) {
      const double* row = zt + static_cast<size_t>(j) * B;
      for (int i = 0; i < B; ++i) {
        const double f = exp_nonpos(row[i] - max_other[i]);
        s_others[i] += j == y[i] ? 0.0 : f;
      }
    }
  }
  for (int i = 0; i < B; ++i) {
    if (b.status[i] == 0 && !(bad[i] == 0.0)) b.status[i] = 1;
    SignalSums sums;
    sums.all = s_all[i];
    sums.others = s_others[i];
    sums.others_squares = s_sq[i];
    for (int s = 0; s < set.n; ++s)
      b.out[s][i] = b.status[i] ? NAN
                                : finish_signal(set.kinds[s], zy[i], max_all[i], max_other[i],
                                                first_max[i] == y[i], sums);
  }
}

}  // namespace

MIAKIT_ISA_DISPATCH(void, evaluate_block, (const SignalSet& set, SignalBlock& b, int C),
                    (set, b, C))

}  // namespace cpu
}  // namespace miakit
