// CPU kernel for per-example squared gradient norms of linear layers (include/miakit/
// ghost.h, docs/methods/gradients.md). OpenMP over examples; each thread copies one example's
// A [T, d] and B [T, p] to contiguous float64 scratch, then takes the ghost (Gram) or the
// direct form, whichever costs less, so no T x T Gram is ever stored.
#include <cmath>
#include <vector>

#include "kernels_risk.h"
#include "miakit/ghost.h"
#include "parallel.h"
#include "scratch.h"

namespace miakit {
namespace cpu {

namespace {

// Copies x[n] ([R, C], any strides) to dst; false when a value is not finite.
bool load_example(const Tensor& x, int64_t n, double* dst) {
  const int64_t R = x.shape[1], C = x.shape[2];
  const int64_t base = n * x.strides[0];
  bool finite = true;
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t c = 0; c < C; ++c) {
      const double v = load_as_double(x.data, x.dtype, base + r * x.strides[1] + c * x.strides[2]);
      finite &= is_finite(v);
      dst[r * C + c] = v;
    }
  }
  return finite;
}

}  // namespace

RiskStatus ghost_norms(const GhostArgs& a) {
  const int64_t N = a.a.shape[0], T = a.a.shape[1], d = a.a.shape[2], p = a.g.shape[2];
  const bool gram = ghost_use_gram(T, d, p);
  double* out = a.out.ptr<double>();
  int64_t nonfinite = 0;
  const int threads = team_for(N);
  ThreadBuffers<double> As(threads, {a.want_w ? T : 0, d}, "activations");
  ThreadBuffers<double> Bs(threads, {T, p}, "grads");
  ThreadBuffers<double> rows(threads, {a.want_w && !gram ? kGhostRows : 0, d}, "activations");
#pragma omp parallel num_threads(threads) reduction(+ : nonfinite)
  {
    const int tid = thread_id();
    double* A = As.of(tid);
    double* B = Bs.of(tid);
    double* row = rows.of(tid);
#pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < N; ++n) {
      bool finite = load_example(a.g, n, B);
      if (a.want_w) finite &= load_example(a.a, n, A);
      double& o = out[n * a.out.strides[0]];
      if (!finite) {
        ++nonfinite;
        o = NAN;
        continue;
      }
      double s = 0.0;
      if (a.want_w && T > 0) {
        s += gram ? ghost_gram_sq(A, B, T, d, p) : ghost_direct_sq(A, B, T, d, p, row);
      }
      if (a.want_b) s += ghost_bias_sq(B, T, p);
      o = s;
    }
  }
  RiskStatus st;
  st.nonfinite = nonfinite;
  return st;
}

}  // namespace cpu
}  // namespace miakit
