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

// Masked evaluation of K linear heads on shared features (CPU only: on a GPU the dense
// products of softmax_ce are the faster way). Head k reads only the rows it trains on:
// loss, gradient and bias gradient of
//   f_k = sum_{r in rows(k)} val_r * CE(z_r, y_r),   z_r[c] = x_r . wt[k, c] + bias[k, c]
// for c < C - 1 and z_r[C - 1] = -sum_{c < C - 1} z_r[c] (heads centred over the classes,
// as in softmax_ce's implied_last).
// x [R, Dx] float32, rows contiguous (their stride may exceed Dx).
// wt [K, C - 1, Dp] float32 contiguous, Dp = Dx rounded up to 16, zero beyond Dx.
// bias [K, C - 1] float32 contiguous.
// ptr [M + 1] int64, idx [nnz] int32, val [nnz] float32: the rows of every head m of a
// run (increasing) and their weights, idx[ptr[m]:ptr[m + 1]]; heads [K] int64 says which
// head of the run each column is.
// y [R] int64; loss [K] float64 (+=); gw [K, C - 1, Dp] float32 (+=, zero beyond Dx);
// gbias [K, C] float32 (+=): sums of the residual w (softmax - onehot) over the rows.
// out (optional) [M, R, C] float32 with out_heads [K] int64: as in softmax_ce, the logits
// of every row (its own and the others) of head k go to out[out_heads[k]].
// Returns the number of the heads' rows whose label is outside [0, C) (left out).
struct MaskedHeadsArgs {
  Tensor x, wt, bias, ptr, idx, val, heads, y, loss, gw, gbias, out, out_heads;
};

// The gradient part of masked_heads_ce when every head shares one residual per row (all
// heads at one point): gw[k] += sum_{r in rows(k)} val_r res[r] x_r^T, res [R, C - 1]
// float32 contiguous; x, ptr, idx, val, heads and gw as in masked_heads_ce (CPU only).
struct MaskedHeadsGradArgs {
  Tensor x, res, ptr, idx, val, heads, gw;
};

namespace cpu {
int64_t softmax_ce(const SoftmaxCEArgs& a);
int64_t masked_heads_ce(const MaskedHeadsArgs& a);
void masked_heads_grad(const MaskedHeadsGradArgs& a);
const char* masked_heads_ce_kernel();  // "avx512", "avx2" or "generic"
}  // namespace cpu

#if defined(MIAKIT_WITH_CUDA)
namespace cuda {
int64_t softmax_ce(const SoftmaxCEArgs& a, std::uintptr_t stream);
}  // namespace cuda
#endif

}  // namespace miakit
