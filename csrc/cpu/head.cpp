// CPU kernels for the linear-softmax head (include/miakit/head.h): per-example gradient
// norms of the cross-entropy loss (docs/methods/gradients.md) and exact Hessian traces with
// respect to the input (docs/methods/curvature.md). One pass per example: logits, softmax, then the norm
// or the trace; W is converted once to a contiguous float64 copy shared by all threads.
#include <cmath>
#include <vector>

#include "kernels_risk.h"
#include "miakit/head.h"
#include "parallel.h"
#include "scratch.h"

namespace miakit {
namespace cpu {

namespace {

enum class HeadOut { norm, trace };

RiskStatus head_run(const HeadArgs& a, HeadOut what) {
  const int64_t N = a.x.shape[0], d = a.x.shape[1], C = a.w.shape[0];
  ThreadBuffers<double> Wbuf(1, {C, d}, "weight");
  std::vector<double> b(a.has_bias ? C : 0);
  double* W = Wbuf.of(0);
  int64_t bad_param = 0;
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t e = 0; e < d; ++e) {
      const double v = load_as_double(a.w.data, a.w.dtype, c * a.w.strides[0] + e * a.w.strides[1]);
      bad_param += !is_finite(v);
      W[c * d + e] = v;
    }
    if (a.has_bias) {
      b[c] = load_as_double(a.b.data, a.b.dtype, c * a.b.strides[0]);
      bad_param += !is_finite(b[c]);
    }
  }
  RiskStatus st;
  if (bad_param) {
    st.nonfinite = bad_param;
    return st;
  }
  int64_t nonfinite = 0, bad_label = 0;
  double* out = a.out.ptr<double>();
  const int threads = team_for(N);
  ThreadBuffers<double> xs(threads, {d}, "features"), zs(threads, {C}, "weight"),
      wbars(threads, {what == HeadOut::trace ? d : 0}, "features");
#pragma omp parallel num_threads(threads) reduction(+ : nonfinite, bad_label)
  {
    const int tid = thread_id();
    double* x = xs.of(tid);
    double* z = zs.of(tid);
    double* wbar = wbars.of(tid);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      bool finite = true;
      for (int64_t e = 0; e < d; ++e) {
        x[e] = load_as_double(a.x.data, a.x.dtype, n * a.x.strides[0] + e * a.x.strides[1]);
        finite &= is_finite(x[e]);
      }
      double& o = out[n * a.out.strides[0]];
      if (!finite) {
        ++nonfinite;
        o = NAN;
        continue;
      }
      const double xsq = head_logits(x, W, a.has_bias ? b.data() : nullptr, C, d, z);
      if (what == HeadOut::norm) {
        const int64_t y = a.labels.ptr<int64_t>()[n * a.labels.strides[0]];
        if (y < 0 || y >= C) {
          ++bad_label;
          o = NAN;
          continue;
        }
        o = head_grad_norm(z, C, y, xsq, a.has_bias);
      } else {
        softmax_inplace(z, C);
        o = head_hessian_trace(z, W, C, d, wbar);
      }
    }
  }
  st.nonfinite = nonfinite;
  st.bad_label = bad_label;
  return st;
}

}  // namespace

RiskStatus head_norms(const HeadArgs& a) { return head_run(a, HeadOut::norm); }
RiskStatus head_trace(const HeadArgs& a) { return head_run(a, HeadOut::trace); }

}  // namespace cpu
}  // namespace miakit
