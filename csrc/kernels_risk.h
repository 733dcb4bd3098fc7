// Entry points of the per-example risk kernels (docs/methods/memorization.md, gradients.md, curvature.md):
// memorization, influence top-k, linear-softmax head gradient norms and Hessian traces,
// and counter-based Rademacher probes. As in kernels.h, each has a CPU implementation
// (cpu/NAME.cpp) and a CUDA one (cuda/NAME.cu) with the same signature, and the caller
// allocates every output.
#pragma once

#include <cstdint>

#include "tensor.h"

namespace miakit {

// Counts of rejected input, so that the Python layer can name the problem.
struct RiskStatus {
  int64_t nonfinite = 0;  // NaN/inf values (after conversion to the compute precision)
  int64_t empty = 0;      // examples without an IN or without an OUT model
  int64_t bad_label = 0;  // labels outside [0, C)
  const char* kernel = "";  // which implementation ran (influence: "avx512", "avx2", ...)
};

// mem[n] = mean_{keep} signal[m, n] - mean_{not keep} signal[m, n].
// signal [M, N] (float16/bfloat16/float32/float64/uint8, any strides), keep [M, N] uint8,
// out [N] float64 (NaN where a side is empty), n_in [N] int64.
struct MemorizationArgs {
  Tensor signal, keep, out, n_in;
};

// Top-k influence per test example j over training examples i:
// infl[i, j] = mean_{keep[m, i]} c[m, j] - mean_{not keep[m, i]} c[m, j].
// keep [M, N] uint8, c [M, T] (float16/bfloat16/float32/float64/uint8), vals [T, k]
// float64 and idx [T, k] int64 (rows sorted best first; NaN/-1 where fewer than k
// examples qualify). Examples with an empty side never qualify; `empty` counts them.
struct InfluenceArgs {
  Tensor keep, c, vals, idx;
};

// Exact k nearest neighbours: queries [Q, D] and reference [R, D] of one floating dtype
// (float16/bfloat16/float32/float64, any strides); vals [Q, k] float64 squared Euclidean
// distances, ascending, the lower reference index first on ties; idx [Q, k] int64.
// exclude_self skips reference row j for query j (Q == R). Inputs that are not finite in
// float32 are counted (status.nonfinite) and nothing is computed.
struct KnnArgs {
  Tensor queries, reference, vals, idx;
  bool exclude_self = false;
};

// Linear-softmax head on features x [N, d]: logits z = W x + b, W [C, d], b [C] (absent
// when has_bias is false). head_norms: out[n] = ||d loss / d (W, b)||_2 for labels [N]
// int64. head_trace: out[n] = tr(d^2 loss / d x^2) (does not depend on the label).
struct HeadArgs {
  Tensor x, labels, w, b, out;
  bool has_bias = false;
};

// Rademacher probes: out[r, p, e] = +-1 for example examples[r], probe probe0 + p and
// element e, from the counter-based generator of include/miakit/rng.h.
// out [R, P, D] float16/bfloat16/float32/float64, contiguous; examples [R] int64.
struct RademacherArgs {
  Tensor examples, out;
  uint64_t seed = 0;
  int64_t probe0 = 0;
};

// Per-example squared gradient norms of a linear layer applied at T positions
// (include/miakit/ghost.h): a [N, T, d] activations, g [N, T, p] output gradients
// (float16/bfloat16/float32/float64, any strides), out [N] float64:
// out[n] = [want_w] ||g_n^T a_n||_F^2 + [want_b] ||sum_t g_n[t]||^2 (NaN for an example
// with a non-finite value, counted in `nonfinite`).
struct GhostArgs {
  Tensor a, g, out;
  bool want_w = true, want_b = false;
};

// Per-example reductions over curvature probes (docs/methods/curvature.md); x [N, P, D].
// probe_quad: y [N, P, D] (H v); mean[n] = mean_k x[n,k].y[n,k], se[n] its standard error
// (ddof 1; NaN for P = 1). probe_diff: y [N, D]; mean[n] = mean_k ||x[n,k] - y[n]||_2
// (squared when `squared`); se unused. Outputs float64 [N]; NaN rows counted in nonfinite.
struct ProbeArgs {
  Tensor x, y, mean, se;
  bool squared = false;
};

namespace cpu {
RiskStatus ghost_norms(const GhostArgs& a);
RiskStatus probe_quad(const ProbeArgs& a);
RiskStatus probe_diff(const ProbeArgs& a);
RiskStatus memorization(const MemorizationArgs& a);
RiskStatus influence(const InfluenceArgs& a);
RiskStatus knn(const KnnArgs& a);
RiskStatus head_norms(const HeadArgs& a);
RiskStatus head_trace(const HeadArgs& a);
void rademacher(const RademacherArgs& a);
}  // namespace cpu

#if defined(MIAKIT_WITH_CUDA)
namespace cuda {
RiskStatus ghost_norms(const GhostArgs& a, std::uintptr_t stream);
RiskStatus probe_quad(const ProbeArgs& a, std::uintptr_t stream);
RiskStatus probe_diff(const ProbeArgs& a, std::uintptr_t stream);
RiskStatus memorization(const MemorizationArgs& a, std::uintptr_t stream);
RiskStatus influence(const InfluenceArgs& a, std::uintptr_t stream);
RiskStatus knn(const KnnArgs& a, std::uintptr_t stream);
RiskStatus head_norms(const HeadArgs& a, std::uintptr_t stream);
RiskStatus head_trace(const HeadArgs& a, std::uintptr_t stream);
void rademacher(const RademacherArgs& a, std::uintptr_t stream);
}  // namespace cuda
#endif

}  // namespace miakit
