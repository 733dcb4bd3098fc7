// Kernels of shadow-model training (python/miakit/shadow/_linear.py).
#pragma once

#include <cstdint>

#include "tensor.h"

namespace miakit {

// Softmax cross-entropy of K heads on a block of R rows, fused into one pass per row.
// z [R, C, K] float32 contiguous: the logits z[r, c, k] of head k. With implied_last the
// last class is not read: the logits are taken to sum to zero over the classes (heads
// whose weights are centred over the classes, as the penalised optimum is), so
// z[r, C-1, k] is written as -sum_{c < C-1} z[r, c, k] and a product that fills z needs
// only C - 1 of every C columns.
// bias (optional) [C * K] float32: added to z first (z[r, c, k] += bias[c * K + k]; with
// implied_last, to the first C - 1 classes), so the product that fills z needs no bias.
// res: where the weighted residual w[r, k] * (softmax_c(z[r, :, k]) - [c == y[r]]) goes:
// z itself (z then no longer holds logits), or a separate float32 [R, C, K] contiguous
// array (z keeps the logits).
// y [R] int64 in [0, C); w [R, K] float32 contiguous: row weights per head.
// loss [K] float64: += sum_r w[r, k] * (logsumexp_c z[r, :, k] - z[r, y[r], k]).
// gbias [C * K] float32: += sum_r of the residual (the gradient of a bias row).
// out (optional) [M, N, C] float32 contiguous, with out_heads [K] int64: the logits of
// head k (the last class filled in) are also written to out[out_heads[k], row0 + r, :],
// heads with out_heads[k] < 0 are not -- the solver's final logits, taken from the
// evaluation that finishes a head instead of from another pass over the rows.
// Returns the number of labels outside [0, C): their rows are left out (a separate res
// gets zeros there, in place they are left as they were).
struct SoftmaxCEArgs {
  Tensor z, y, w, loss, gbias, res, out, out_heads, bias;
  bool implied_last = false;
  int64_t row0 = 0;
};

namespace cpu {
int64_t softmax_ce(const SoftmaxCEArgs& a);
}  // namespace cpu

#if defined(MIAKIT_WITH_CUDA)
namespace cuda {
int64_t softmax_ce(const SoftmaxCEArgs& a, std::uintptr_t stream);
}  // namespace cuda
#endif

}  // namespace miakit
