// The vectorized block evaluation behind signal_block.h.
#include "signal_block.h"

#include <cmath>

namespace miakit {
namespace cpu {

MIAKIT_CPU_CLONES void evaluate_block(Signal kind, SignalBlock& b, int C) {
  constexpr int B = kRowBlock;
  const double* zt = b.zt.data();
  double max_all[B], max_other[B], bad[B], sum[B], zy[B];
  int64_t y[B], first_max[B];
  for (int i = 0; i < B; ++i) {
    const bool ok = b.y[i] >= 0 && b.y[i] < C;
    b.status[i] = ok ? 0 : 2;
    y[i] = ok ? b.y[i] : 0;  // keeps the loads below in bounds; the lane is rejected
    max_all[i] = -INFINITY;
    max_other[i] = -INFINITY;
    bad[i] = 0.0;
    sum[i] = 0.0;
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
  if (kind == Signal::correct) {
    // argmax as numpy defines it: the first index holding the maximum.
    for (int j = C - 1; j >= 0; --j) {
      const double* row = zt + static_cast<size_t>(j) * B;
      for (int i = 0; i < B; ++i) first_max[i] = row[i] == max_all[i] ? j : first_max[i];
    }
  }
  if (needs_sum(kind)) {
    const bool others = sum_over_others(kind);
    for (int j = 0; j < C; ++j) {
      const double* row = zt + static_cast<size_t>(j) * B;
      for (int i = 0; i < B; ++i) {
        const double anchor = others ? max_other[i] : max_all[i];
        const double e = exp_nonpos(row[i] - anchor);
        sum[i] += (others && j == y[i]) ? 0.0 : e;
      }
    }
  }
  for (int i = 0; i < B; ++i) {
    if (b.status[i] == 0 && !(bad[i] == 0.0)) b.status[i] = 1;
    b.out[i] = b.status[i] ? NAN
                           : finish_signal(kind, zy[i], max_all[i], max_other[i],
                                           first_max[i] == y[i], sum[i]);
  }
}

}  // namespace cpu
}  // namespace miakit
