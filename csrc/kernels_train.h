// Kernels of shadow-model training (python/miakit/shadow/_linear.py).
#pragma once

#include <cstdint>

#include "tensor.h"

namespace miakit {

// Softmax cross-entropy of K heads on a block of R rows, fused into one pass per row.
// z [R, C, K] float32 contiguous: the logits z[r, c, k] of head k; overwritten with the
// weighted residual w[r, k] * (softmax_c(z[r, :, k]) - [c == y[r]]).
// y [R] int64 in [0, C); w [R, K] float32 contiguous: row weights per head.
// loss [K] float64: += sum_r w[r, k] * (logsumexp_c z[r, :, k] - z[r, y[r], k]).
// gbias [C * K] float32: += sum_r of the residual (the gradient of a bias row).
// Returns the number of labels outside [0, C) (their rows are left out).
struct SoftmaxCEArgs {
  Tensor z, y, w, loss, gbias;
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
