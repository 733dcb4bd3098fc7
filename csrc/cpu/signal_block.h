// Signals of a block of logit rows at once (CPU). The row-at-a-time loop of
// compute_signal() is a chain of dependent, data-dependent steps that a CPU runs at a
// fraction of its width; here the rows of a block sit in the lanes of vector registers:
// the logits are first transposed into zt[class][row] (as double), then every reduction
// runs over classes in the outer loop and rows in the inner loop, which compilers
// vectorize. The per-element steps and finish_signal() are the shared ones, so the
// values are the same as compute_signal()'s.
#pragma once

#include <cstdint>
#include <vector>

#include "miakit/signals.h"
#include "isa.h"

namespace miakit {
namespace cpu {

constexpr int kRowBlock = 64;

// The signals one pass evaluates on every row (the reductions they share are computed
// once).
struct SignalSet {
  Signal kinds[kMaxSignalOuts];
  int n = 0;

  SignalSet() = default;
  explicit SignalSet(Signal kind) : n(1) { kinds[0] = kind; }
};

// Scratch of one thread: the transposed block and the per-row reductions.
struct SignalBlock {
  std::vector<double> zt;  // [C][kRowBlock]
  int64_t y[kRowBlock];
  double out[kMaxSignalOuts][kRowBlock];  // out[s][i]: signal s of the set, row i
  int status[kRowBlock];

  explicit SignalBlock(int C) : zt(static_cast<size_t>(C) * kRowBlock) {}

  // Load rows[i] (i < nb), each C logits apart by `cstride`, with labels ys[i].
  template <class T>
  void load(const T* const* rows, const int64_t* ys, int nb, int C, int64_t cstride) {
    for (int i = 0; i < nb; ++i) {
      const T* r = rows[i];
      y[i] = ys[i];
      for (int j = 0; j < C; ++j) zt[static_cast<size_t>(j) * kRowBlock + i] = Load<T>::get(r + j * cstride);
    }
    for (int i = nb; i < kRowBlock; ++i) {  // padding lanes: a harmless finite row
      y[i] = 0;
      for (int j = 0; j < C; ++j) zt[static_cast<size_t>(j) * kRowBlock + i] = 0.0;
    }
  }
};

// Evaluate the set on the loaded block; fills b.out[s] for s < set.n and b.status for
// every lane, with the code compiled for `isa` (isa.h; signal_block.cpp).
void evaluate_block(Isa isa, const SignalSet& set, SignalBlock& b, int C);

}  // namespace cpu
}  // namespace miakit
