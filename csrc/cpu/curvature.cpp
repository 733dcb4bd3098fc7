// CPU kernel for the curvature estimators' probes (docs/methods/curvature.md): Rademacher
// vectors from the counter-based generator of include/miakit/rng.h, so that a probe
// depends only on (seed, example index, probe index), never on batching or device.
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels_risk.h"
#include "miakit/ghost.h"
#include "miakit/rng.h"
#include "parallel.h"
#include "scratch.h"

namespace miakit {
namespace cpu {

namespace {

template <class Store>
void fill(const RademacherArgs& a, Store store) {
  const Tensor& o = a.out;
  const int64_t R = o.shape[0], P = o.shape[1], D = o.shape[2];
  const int64_t* ex = a.examples.ptr<int64_t>();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t p = 0; p < P; ++p) {
      const uint64_t key = probe_key(a.seed, static_cast<uint64_t>(ex[r * a.examples.strides[0]]),
                                     static_cast<uint64_t>(a.probe0 + p));
      const int64_t base = r * o.strides[0] + p * o.strides[1];
      for (int64_t w = 0; w * 64 < D; ++w) {
        const uint64_t bits = probe_word(key, static_cast<uint64_t>(w));
        const int64_t e1 = (w + 1) * 64 < D ? (w + 1) * 64 : D;
        for (int64_t e = w * 64; e < e1; ++e) {
          store(base + e * o.strides[2], sign_from_word(bits, e));
        }
      }
    }
  }
}

}  // namespace

void rademacher(const RademacherArgs& a) {
  void* data = a.out.data;
  switch (a.out.dtype) {
    case DType::f64:
      fill(a, [data](int64_t i, double v) { static_cast<double*>(data)[i] = v; });
      break;
    case DType::f32:
      fill(a, [data](int64_t i, double v) { static_cast<float*>(data)[i] = static_cast<float>(v); });
      break;
    case DType::f16:  // +1 = 0x3c00, -1 = 0xbc00
      fill(a, [data](int64_t i, double v) {
        static_cast<uint16_t*>(data)[i] = v > 0 ? 0x3c00u : 0xbc00u;
      });
      break;
    case DType::bf16:  // +1 = 0x3f80, -1 = 0xbf80
      fill(a, [data](int64_t i, double v) {
        static_cast<uint16_t*>(data)[i] = v > 0 ? 0x3f80u : 0xbf80u;
      });
      break;
    default:
      throw InputError("out: Rademacher probes need a float16/bfloat16/float32/float64 array");
  }
}

// Per-example reductions over probes (kernels_risk.h ProbeArgs), in double: OpenMP over
// examples, probes and elements in order, so the result does not depend on threads.
RiskStatus probe_quad(const ProbeArgs& a) {
  const int64_t N = a.x.shape[0], P = a.x.shape[1], D = a.x.shape[2];
  const Tensor &x = a.x, &y = a.y;
  int64_t nonfinite = 0;
  const int threads = team_for(N);
  ThreadBuffers<double> qs(threads, {P}, "probes");
#pragma omp parallel num_threads(threads) reduction(+ : nonfinite)
  {
    double* q = qs.of(thread_id());
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      bool finite = true;
      for (int64_t k = 0; k < P; ++k) {
        const int64_t bx = n * x.strides[0] + k * x.strides[1];
        const int64_t by = n * y.strides[0] + k * y.strides[1];
        double s0 = 0.0, s1 = 0.0;
        int64_t e = 0;
        for (; e + 2 <= D; e += 2) {
          s0 += load_as_double(x.data, x.dtype, bx + e * x.strides[2]) *
                load_as_double(y.data, y.dtype, by + e * y.strides[2]);
          s1 += load_as_double(x.data, x.dtype, bx + (e + 1) * x.strides[2]) *
                load_as_double(y.data, y.dtype, by + (e + 1) * y.strides[2]);
        }
        for (; e < D; ++e)
          s0 += load_as_double(x.data, x.dtype, bx + e * x.strides[2]) *
                load_as_double(y.data, y.dtype, by + e * y.strides[2]);
        q[k] = s0 + s1;
        finite &= is_finite(q[k]);
      }
      double& m = a.mean.ptr<double>()[n * a.mean.strides[0]];
      double& se = a.se.ptr<double>()[n * a.se.strides[0]];
      if (!finite) {
        ++nonfinite;
        m = se = NAN;
        continue;
      }
      probe_mean_stderr(q, P, &m, &se);
    }
  }
  RiskStatus st;
  st.nonfinite = nonfinite;
  return st;
}

RiskStatus probe_diff(const ProbeArgs& a) {
  const int64_t N = a.x.shape[0], P = a.x.shape[1], D = a.x.shape[2];
  const Tensor &x = a.x, &y = a.y;
  int64_t nonfinite = 0;
  const int threads = team_for(N);
  ThreadBuffers<double> g0s(threads, {D}, "grad0");
#pragma omp parallel num_threads(threads) reduction(+ : nonfinite)
  {
    double* g0 = g0s.of(thread_id());
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      bool finite = true;
      for (int64_t e = 0; e < D; ++e) {
        g0[e] = load_as_double(y.data, y.dtype, n * y.strides[0] + e * y.strides[1]);
        finite &= is_finite(g0[e]);
      }
      double acc = 0.0;
      for (int64_t k = 0; k < P && finite; ++k) {
        const int64_t bx = n * x.strides[0] + k * x.strides[1];
        double sq = 0.0;
        for (int64_t e = 0; e < D; ++e) {
          const double t = load_as_double(x.data, x.dtype, bx + e * x.strides[2]) - g0[e];
          sq += t * t;
        }
        finite &= is_finite(sq);
        acc += a.squared ? sq : std::sqrt(sq);
      }
      double& m = a.mean.ptr<double>()[n * a.mean.strides[0]];
      if (!finite) {
        ++nonfinite;
        m = NAN;
        continue;
      }
      m = acc / static_cast<double>(P);
    }
  }
  RiskStatus st;
  st.nonfinite = nonfinite;
  return st;
}

}  // namespace cpu
}  // namespace miakit
